/**
 * @module features/policies/repo
 * The `enforcement_policies` and `policy_versions` tables (sql/0025_policies.sql). Every function
 * runs inside `withOrg`. Each change bumps `version` and writes the policy as it then is into
 * `policy_versions` in the same transaction; a deletion writes a version with no policy.
 */
import type { Static } from '@sinclair/typebox'
import type { Keyset } from '../../http/pagination.ts'
import type { Tx } from '../../infra/db.ts'
import type { PolicyRule } from './schema.ts'

type Rule = Static<typeof PolicyRule>

export interface PolicyRow {
  id: string
  name: string
  description: string | null
  enabled: boolean
  priority: number
  rules: Rule[]
  scope_machine_ids: string[]
  scope_tags: string[]
  version: number
  created_at: Date
  updated_at: Date
  created_key: string
}

export interface PolicyFields {
  name: string
  description: string | null
  enabled: boolean
  priority: number
  rules: Rule[]
  machineIds: string[]
  tags: string[]
}

const COLUMNS = (tx: Tx) => tx`
  id, name, description, enabled, priority, rules, scope_machine_ids, scope_tags, version, created_at, updated_at,
  created_at::text as created_key`

/** The policy as the API shows it, and as its versions keep it. */
export function policyView(p: PolicyRow) {
  return {
    id: p.id,
    name: p.name,
    description: p.description,
    enabled: p.enabled,
    priority: p.priority,
    rules: p.rules,
    scope: {
      all: p.scope_machine_ids.length === 0 && p.scope_tags.length === 0,
      machine_ids: p.scope_machine_ids,
      tags: p.scope_tags,
    },
    version: p.version,
    created_at: p.created_at.toISOString(),
    updated_at: p.updated_at.toISOString(),
  }
}

export async function insertPolicy(tx: Tx, f: PolicyFields): Promise<PolicyRow> {
  const [row] = await tx<PolicyRow[]>`
    insert into enforcement_policies (org_id, name, description, enabled, priority, rules, scope_machine_ids, scope_tags)
    values (app_current_org(), ${f.name}, ${f.description}, ${f.enabled}, ${f.priority}, ${tx.json(f.rules as never)},
            ${f.machineIds}::uuid[], ${f.tags}::text[])
    returning ${COLUMNS(tx)}`
  return row!
}

/** The policy, locked for a change when `lock`. */
export async function getPolicy(tx: Tx, id: string, lock = false): Promise<PolicyRow | null> {
  const [row] = await tx<PolicyRow[]>`
    select ${COLUMNS(tx)} from enforcement_policies where id = ${id} ${lock ? tx`for no key update` : tx``}`
  return row ?? null
}

export async function updatePolicy(tx: Tx, id: string, f: PolicyFields): Promise<PolicyRow> {
  const [row] = await tx<PolicyRow[]>`
    update enforcement_policies set
      name = ${f.name}, description = ${f.description}, enabled = ${f.enabled}, priority = ${f.priority},
      rules = ${tx.json(f.rules as never)}, scope_machine_ids = ${f.machineIds}::uuid[], scope_tags = ${f.tags}::text[],
      version = version + 1, updated_at = now()
     where id = ${id}
    returning ${COLUMNS(tx)}`
  return row!
}

export async function deletePolicy(tx: Tx, id: string): Promise<void> {
  await tx`delete from enforcement_policies where id = ${id}`
}

/** Newest first; `enabled` filters. */
export function listPolicies(tx: Tx, enabled: boolean | undefined, limit: number, after: Keyset | null): Promise<PolicyRow[]> {
  return tx<PolicyRow[]>`
    select ${COLUMNS(tx)} from enforcement_policies
     where true
       ${enabled === undefined ? tx`` : tx`and enabled = ${enabled}`}
       ${after ? tx`and (created_at, id) < (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by created_at desc, id desc
     limit ${limit}`
}

/** Records `version` of the policy: its view after the change, or null for a deletion. */
export async function recordVersion(
  tx: Tx,
  policyId: string,
  version: number,
  snapshot: ReturnType<typeof policyView> | null,
  changedBy: string | null,
): Promise<void> {
  await tx`
    insert into policy_versions (org_id, policy_id, version, snapshot, changed_by)
    values (app_current_org(), ${policyId}, ${version}, ${snapshot === null ? null : tx.json(snapshot as never)}, ${changedBy})`
}

export interface VersionRow {
  version: number
  snapshot: ReturnType<typeof policyView> | null
  changed_by: string | null
  changed_at: Date
}

/** Newest first, deletions included (the history outlives the policy). */
export function listVersions(tx: Tx, policyId: string): Promise<VersionRow[]> {
  return tx<VersionRow[]>`
    select version, snapshot, changed_by, changed_at from policy_versions
     where policy_id = ${policyId}
     order by version desc
     limit 1000`
}

/**
 * Serialises the org's policy changes: the caps are checked against what is stored, and two
 * changes at once must not both fit under them.
 */
export async function lockOrgPolicies(tx: Tx): Promise<void> {
  await tx`select pg_advisory_xact_lock(hashtext('policies:' || app_current_org()::text))`
}

/** How many policies the org has and the bytes of their rules, leaving out `except`. */
export async function orgTotals(tx: Tx, except: string | null): Promise<{ count: number; bytes: number }> {
  const [row] = await tx<{ count: number; bytes: number }[]>`
    select count(*)::int as count, coalesce(sum(octet_length(rules::text)), 0)::int as bytes
      from enforcement_policies where ${except ? tx`id <> ${except}` : tx`true`}`
  return row!
}

/** Of `ids`, those that are not machines of this org. */
export async function unknownMachines(tx: Tx, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return []
  const rows = await tx<{ id: string }[]>`
    select x.id::text from unnest(${ids as string[]}::uuid[]) as x(id)
     where not exists (select 1 from machines m where m.id = x.id)`
  return rows.map((r) => r.id)
}
