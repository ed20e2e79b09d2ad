/**
 * @module features/policies/routes
 * `POST`/`GET /v1/policies`, `GET`/`PATCH`/`DELETE /v1/policies/{id}`,
 * `GET /v1/policies/{id}/versions` (issue 11; docs/policies.md). Policies in the SPEC §11.1
 * format, scoped to every machine, some machines or machine tags. Reading needs `read`, changing
 * `manage`. Every change is a new version, kept after a deletion, and an audit-log entry with the
 * policy before and after; the daemons it applies to see a new `policy_hash` at their next
 * heartbeat.
 */
import type { Static } from '@sinclair/typebox'
import type { Principal } from '../../auth/credentials.ts'
import { NotFoundError, ValidationError, type FieldError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, paginate } from '../../http/pagination.ts'
import type { RequestFacts } from '../../http/request-context.ts'
import { uuidOr, withOrg, type Sql, type Tx } from '../../infra/db.ts'
import { INVISIBLE, requireName } from '../../lib/names.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { recordFleetEvent, type FleetRing } from '../fleet/repo.ts'
import {
  deletePolicy,
  getPolicy,
  insertPolicy,
  listPolicies,
  listVersions,
  lockOrgPolicies,
  orgTotals,
  policyView,
  recordVersion,
  unknownMachines,
  updatePolicy,
  type PolicyFields,
  type PolicyRow,
} from './repo.ts'
import {
  CreatePolicyBody,
  PolicyIdParams,
  PolicyList,
  PolicyListQuery,
  PolicyScope,
  PolicyVersionList,
  PolicyView,
  UpdatePolicyBody,
  type PolicyRule,
} from './schema.ts'

export function mountPolicies(routes: RouteRegistry, deps: { sql: Sql; fleet: FleetRing }): void {
  const { sql, fleet } = deps
  const tags = ['policies']

  routes.add(
    {
      method: 'post',
      path: '/v1/policies',
      operationId: 'createPolicy',
      summary: 'Create an enforcement policy (SPEC §11.1 rules) for every machine, some machines or machine tags',
      tags,
      permission: 'manage',
      body: CreatePolicyBody,
      idempotent: true,
      responses: { 201: { description: 'Created (version 1)', schema: PolicyView } },
    },
    async (c, { body }) => {
      const p = c.get('principal')
      const row = await withOrg(sql, p.orgId, async (tx) => {
        const fields = await checked(tx, null, {
          name: body.name,
          description: body.description ?? null,
          enabled: body.enabled ?? true,
          priority: body.priority ?? 0,
          rules: body.rules,
          ...scopeOf(body.scope ?? { all: true }),
        })
        const r = await insertPolicy(tx, fields)
        await changed(tx, p, c.get('request'), 'policy.create', null, r)
        return r
      })
      fleet.ring([p.orgId])
      return c.json(policyView(row), 201)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/policies',
      operationId: 'listPolicies',
      summary: 'List policies, newest first',
      tags,
      permission: 'read',
      query: PolicyListQuery,
      responses: { 200: { description: 'A page of policies', schema: PolicyList } },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const rows = await withOrg(sql, c.get('principal').orgId, (tx) =>
        listPolicies(tx, query.enabled, limit + 1, decodeCursor(query.cursor)),
      )
      const { page, next } = paginate(rows, limit)
      return c.json({ policies: page.map(policyView), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/policies/:id',
      operationId: 'getPolicy',
      summary: 'One policy',
      tags,
      permission: 'read',
      params: PolicyIdParams,
      responses: { 200: { description: 'The policy', schema: PolicyView } },
    },
    async (c, { params }) => {
      const row = await withOrg(sql, c.get('principal').orgId, (tx) => getPolicy(tx, policyId(params.id)))
      if (!row) throw policyNotFound()
      return c.json(policyView(row))
    },
  )

  routes.add(
    {
      method: 'patch',
      path: '/v1/policies/:id',
      operationId: 'updatePolicy',
      summary: 'Change a policy (fields given only): a new version, audited',
      tags,
      permission: 'manage',
      params: PolicyIdParams,
      body: UpdatePolicyBody,
      responses: { 200: { description: 'The policy after the change', schema: PolicyView } },
    },
    async (c, { params, body }) => {
      const id = policyId(params.id)
      const p = c.get('principal')
      const row = await withOrg(sql, p.orgId, async (tx) => {
        const before = await getPolicy(tx, id, true)
        if (!before) throw policyNotFound()
        const fields = await checked(tx, id, {
          name: body.name ?? before.name,
          description: body.description === undefined ? before.description : body.description,
          enabled: body.enabled ?? before.enabled,
          priority: body.priority ?? before.priority,
          rules: body.rules ?? before.rules,
          ...(body.scope ? scopeOf(body.scope) : { machineIds: before.scope_machine_ids, tags: before.scope_tags }),
        })
        // Nothing changes: no version, and no new hash for the fleet to fetch.
        if (same(before, fields)) return before
        const after = await updatePolicy(tx, id, fields)
        await changed(tx, p, c.get('request'), 'policy.update', before, after)
        return after
      })
      fleet.ring([p.orgId])
      return c.json(policyView(row))
    },
  )

  routes.add(
    {
      method: 'delete',
      path: '/v1/policies/:id',
      operationId: 'deletePolicy',
      summary: 'Delete a policy; its versions stay (the last one records the deletion)',
      tags,
      permission: 'manage',
      params: PolicyIdParams,
      responses: { 204: { description: 'Deleted' } },
    },
    async (c, { params }) => {
      const id = policyId(params.id)
      const p = c.get('principal')
      await withOrg(sql, p.orgId, async (tx) => {
        const before = await getPolicy(tx, id, true)
        if (!before) throw policyNotFound()
        await deletePolicy(tx, id)
        await changed(tx, p, c.get('request'), 'policy.delete', before, null)
      })
      fleet.ring([p.orgId])
      return c.body(null, 204)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/policies/:id/versions',
      operationId: 'listPolicyVersions',
      summary: "A policy's versions, newest first, also after it was deleted",
      tags,
      permission: 'read',
      params: PolicyIdParams,
      responses: { 200: { description: 'Its versions', schema: PolicyVersionList } },
    },
    async (c, { params }) => {
      const rows = await withOrg(sql, c.get('principal').orgId, (tx) => listVersions(tx, policyId(params.id)))
      if (rows.length === 0) throw policyNotFound()
      return c.json({
        versions: rows.map((v) => ({
          version: v.version,
          policy: v.snapshot,
          deleted: v.snapshot === null,
          changed_by: v.changed_by,
          changed_at: v.changed_at.toISOString(),
        })),
      })
    },
  )
}

/** The org's limits: every heartbeat serves its machine's whole document. */
export const POLICY_LIMITS = { policies: 500, ruleBytes: 1024 * 1024 } as const

/**
 * `all`, or machines (lower-cased, once each, in the order given: a 422 names them by it) and tags
 * (once each, sorted): never an empty scope meaning everything.
 */
export function scopeOf(s: Static<typeof PolicyScope>): { machineIds: string[]; tags: string[] } {
  const machineIds = [...new Set((s.machine_ids ?? []).map((m) => m.toLowerCase()))]
  const tags = [...new Set(s.tags ?? [])].sort()
  if (s.all === true) {
    if (machineIds.length > 0 || tags.length > 0) {
      throw new ValidationError([{ path: '/scope/all', message: 'every machine, or the machines and tags listed: not both' }])
    }
    return { machineIds, tags }
  }
  if (machineIds.length === 0 && tags.length === 0) {
    throw new ValidationError([{ path: '/scope', message: 'name machines or tags, or say {"all": true}' }])
  }
  return { machineIds, tags }
}

/**
 * What the daemon could never match, or would read otherwise than it looks, is refused (422
 * naming the field): SPEC §11.2 globs have `*` only at an end (one in the middle is a literal),
 * are compared untrimmed, and invisible characters make a rule look like another. Then the caps,
 * and the scope's machines must be the org's.
 */
async function checked(tx: Tx, id: string | null, f: PolicyFields): Promise<PolicyFields> {
  const name = requireName(f.name)
  const errors: FieldError[] = []
  if (f.description !== null && INVISIBLE.test(f.description)) {
    errors.push({ path: '/description', message: 'must not contain control, format or separator characters' })
  }
  f.rules.forEach((r, i) => {
    for (const field of ['tool', 'agent'] as const) {
      const value = r[field]
      const why = value === undefined ? null : globProblem(value)
      if (why) errors.push({ path: `/rules/${i}/${field}`, message: why })
    }
    r.conditions?.forEach((c, j) => {
      if (INVISIBLE.test(c))
        errors.push({ path: `/rules/${i}/conditions/${j}`, message: 'must not contain invisible characters' })
    })
  })
  if (errors.length > 0) throw new ValidationError(errors)
  const rules = f.rules.map(normalRule)
  await lockOrgPolicies(tx)
  const totals = await orgTotals(tx, id)
  if (id === null && totals.count >= POLICY_LIMITS.policies) {
    throw new ValidationError([{ path: '/', message: `an organization has at most ${POLICY_LIMITS.policies} policies` }])
  }
  if (totals.bytes + Buffer.byteLength(JSON.stringify(rules)) > POLICY_LIMITS.ruleBytes) {
    throw new ValidationError([
      { path: '/rules', message: `an organization's rules total at most ${POLICY_LIMITS.ruleBytes} bytes` },
    ])
  }
  await requireMachines(tx, f.machineIds)
  return { ...f, name, rules }
}

/** A scope's machines must be the org's: a 422 naming each that is not (by its place in the list). */
export async function requireMachines(tx: Tx, ids: readonly string[]): Promise<void> {
  const unknown = await unknownMachines(tx, ids)
  if (unknown.length > 0) {
    throw new ValidationError(
      unknown.map((m) => ({
        path: `/scope/machine_ids/${ids.indexOf(m)}`,
        message: 'no machine with this id in this organization',
      })),
    )
  }
}

/** Why the daemon would not read `glob` as it looks, or null. */
export function globProblem(glob: string): string | null {
  if (glob !== glob.trim()) return 'must not start or end with white space (the daemon compares it as is)'
  if (INVISIBLE.test(glob)) return 'must not contain control, format or separator characters'
  if (glob.slice(1, -1).includes('*')) return '`*` only at the start or the end: one in the middle matches a literal `*`'
  return null
}

function same(p: PolicyRow, f: PolicyFields): boolean {
  return (
    p.name === f.name &&
    p.description === f.description &&
    p.enabled === f.enabled &&
    p.priority === f.priority &&
    JSON.stringify(p.rules) === JSON.stringify(f.rules) &&
    [...p.scope_machine_ids].sort().join() === [...f.machineIds].sort().join() &&
    p.scope_tags.join() === f.tags.join()
  )
}

/** As the daemon reads it: `agent` defaults to any, `conditions` to none. */
function normalRule(r: Static<typeof PolicyRule>): Static<typeof PolicyRule> {
  return { tool: r.tool, agent: r.agent ?? '*', action: r.action, conditions: r.conditions ?? [] }
}

/**
 * One change: the version (the policy after it, or none for a deletion), the audit entry, and
 * the fleet event that makes every stream of the org check its machine's hash.
 */
async function changed(
  tx: Tx,
  p: Principal,
  request: RequestFacts,
  action: string,
  before: PolicyRow | null,
  after: PolicyRow | null,
): Promise<void> {
  const version = after ? after.version : before!.version + 1
  const id = (after ?? before)!.id
  await recordVersion(tx, id, version, after && policyView(after), p.tokenId)
  // Its scopes before and after: a machine in neither is told nothing of it.
  const scopes = [before, after].filter((r) => r !== null).map((r) => ({ machine_ids: r.scope_machine_ids, tags: r.scope_tags }))
  await recordFleetEvent(tx, { kind: 'policy', data: { type: 'policy', id, version, action, scopes } })
  await recordAudit(tx, {
    ...auditActor(p),
    action,
    targetType: 'policy',
    targetId: id,
    request,
    details: { version, before: before && policyView(before), after: after && policyView(after) },
  })
}

const policyId = (raw: string) => uuidOr(raw, policyNotFound)

const policyNotFound = () => new NotFoundError('No policy with that id in this organization.')
