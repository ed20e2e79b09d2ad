/**
 * @module features/policies/document
 * The policy document served to daemons (SPEC §11.1) and its hash. The hash is the SHA-256 of
 * the exact bytes served, sent unquoted both as the `ETag` of `GET …/policies` and as the
 * heartbeat's `policy_hash`: the Gen-B daemon compares the two strings byte for byte and
 * refetches on every heartbeat when they differ (SPEC §7.1, "compatibility trap").
 *
 * Each machine gets its effective policies (issue 11): those scoped to every machine, to it by
 * id, or to one of its tags. So the hash is per machine, and a change to a policy changes the
 * hash of exactly the machines it applies to (before or after the change).
 */
import { createHash } from 'node:crypto'
import type { Tx } from '../../infra/db.ts'
import { hostOf, managedPolicies, type CompiledSignature } from '../signatures/compile.ts'

interface PolicyRow {
  id: string
  org_id: string
  name: string
  description: string | null
  enabled: boolean
  priority: number
  rules: unknown
  created_at: Date
  updated_at: Date
}

export interface PolicyDocument {
  /** The JSON array exactly as served. */
  text: string
  /** Hex SHA-256 of `text`. */
  hash: string
  /**
   * Hosts of the machine's domain and URL signatures: the daemon sees HTTP traffic only to hosts
   * its PAC file routes through its proxy, so they join the heartbeat's `domains`.
   */
  signatureHosts: string[]
}

/**
 * The enabled policies in force on `machineId` (runs inside `withOrg`). Priority descending as
 * the daemon evaluates them, then oldest first and by id so equal priorities keep a stable order
 * and hash. jsonb prints object keys in a canonical order, so the same rows give the same bytes.
 */
export async function policyDocument(tx: Tx, machineId: string): Promise<PolicyDocument> {
  const rows = await tx<PolicyRow[]>`
    select p.id, p.org_id, p.name, p.description, p.enabled, p.priority, p.rules, p.created_at, p.updated_at
      from enforcement_policies p
     where p.enabled
       and ((cardinality(p.scope_machine_ids) = 0 and cardinality(p.scope_tags) = 0)
            or ${machineId}::uuid = any(p.scope_machine_ids)
            or p.scope_tags && (select m.tags from machines m where m.id = ${machineId}::uuid))
     order by p.priority desc, p.created_at, p.id`
  // The org's active threat signatures in scope, as one managed policy above every other.
  const signatures = await tx<(CompiledSignature & { org_id: string })[]>`
    select s.org_id, s.id, s.kind, s.value, s.action, s.created_at, s.updated_at
      from threat_signatures s
     where s.status = 'active' and s.kind <> 'flow_shape' and (s.expires_at is null or s.expires_at > now())
       and ((cardinality(s.scope_machine_ids) = 0 and cardinality(s.scope_tags) = 0)
            or ${machineId}::uuid = any(s.scope_machine_ids)
            or s.scope_tags && (select m.tags from machines m where m.id = ${machineId}::uuid))`
  const managed = signatures.length > 0 ? managedPolicies(signatures[0]!.org_id, signatures) : { above: [], below: [] }
  const text = JSON.stringify([
    ...managed.above,
    ...rows.map((r) => ({
      id: r.id,
      org_id: r.org_id,
      name: r.name,
      description: r.description ?? '',
      enabled: r.enabled,
      priority: r.priority,
      rules: r.rules,
      created_at: r.created_at.toISOString(),
      updated_at: r.updated_at.toISOString(),
    })),
    ...managed.below,
  ])
  const hosts = [...new Set(signatures.map(hostOf).filter((h): h is string => h !== null))].sort()
  return { text, hash: createHash('sha256').update(text).digest('hex'), signatureHosts: hosts }
}

export interface MachineConfig {
  config_version: string
  policy_hash: string
  domains: string[]
}

/**
 * What a heartbeat answers and the fleet stream pushes (SPEC §7.1): the machine's policy hash,
 * the hosts its proxy must see (the org's proxied hosts and those its signatures block), and the
 * version of both together.
 */
export async function machineConfig(tx: Tx, machineId: string): Promise<MachineConfig> {
  const { hash, signatureHosts } = await policyDocument(tx, machineId)
  const [org] = await tx<{ proxy_domains: string[] }[]>`select proxy_domains from organizations where id = app_current_org()`
  const domains = [...new Set([...(org?.proxy_domains ?? []), ...signatureHosts])].sort()
  return { config_version: configVersion(hash, domains), policy_hash: hash, domains }
}

/** Configuration reads of many machines at once: one per group of machines that cannot differ. */
export type ConfigCache = (machineId: string, tags: readonly string[]) => Promise<MachineConfig>

/**
 * `machineConfig` for many machines in one transaction (the fleet stream's pump, the inventory's
 * `policy` block, issue 12): machines with the same tags that no scope names by id are served
 * the same document, so they share one computation.
 */
export async function configCache(tx: Tx): Promise<ConfigCache> {
  const named = await scopedMachines(tx)
  const cache = new Map<string, Promise<MachineConfig>>()
  return (machineId, tags) => {
    // A machine's document depends on its id only where a scope names it; otherwise on its tags.
    const key = named.has(machineId) ? `id:${machineId}` : `tags:${[...tags].sort().join('\n')}`
    let hit = cache.get(key)
    if (!hit) cache.set(key, (hit = machineConfig(tx, machineId)))
    return hit
  }
}

/** Machines some policy or signature scope names by id: their documents may differ from their tags'. */
async function scopedMachines(tx: Tx): Promise<Set<string>> {
  const rows = await tx<{ id: string }[]>`
    select distinct unnest(scope_machine_ids)::text as id from enforcement_policies
    union
    select distinct unnest(scope_machine_ids)::text from threat_signatures`
  return new Set(rows.map((r) => r.id))
}

/**
 * The heartbeat's `config_version`: changes whenever the machine's policies or the org's proxied
 * domains change (the daemon parses it but acts on `policy_hash` and `domains`).
 */
export function configVersion(policyHash: string, domains: readonly string[]): string {
  return createHash('sha256')
    .update(`${policyHash}\n${domains.join('\n')}`)
    .digest('hex')
}

/**
 * True when `If-None-Match` names `hash`: the daemon sends our unquoted value back; quoted,
 * weak (`W/"…"`), listed and `*` forms (RFC 9110 §13.1.2) are honoured too.
 */
export function notModified(ifNoneMatch: string | undefined, hash: string): boolean {
  if (!ifNoneMatch) return false
  return ifNoneMatch.split(',').some((raw) => {
    const tag = raw
      .trim()
      .replace(/^W\//, '')
      .replace(/^"(.*)"$/, '$1')
    return tag === '*' || tag === hash
  })
}
