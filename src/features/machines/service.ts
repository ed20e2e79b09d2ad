/**
 * @module features/machines/service
 * The daemon's machine lifecycle inside tenant transactions: registration (upsert on the client
 * fingerprint, service-token exchange), heartbeats, the process snapshot and agent graphs.
 *
 * Which machine a credential may act on: any machine of its org, except that a service token
 * minted at registration is bound to its machine (`api_tokens.machine_id`), and a revoked deploy
 * token (retired, SPEC §3.2) keeps only the machines it registered (`machines.token_id`): every
 * other machine is absent to them (404). Another org's machine is always absent: RLS hides it.
 * A disabled machine is refused (403 `machine_disabled`) whatever the credential (issue 10).
 */
import type { RequestFacts } from '../../http/request-context.ts'
import type { Static } from '@sinclair/typebox'
import type { Metrics } from '../../infra/metrics.ts'
import { recordAck } from '../ingest/stats.ts'
import type { CredentialResolver, Principal, RevokedToken } from '../../auth/credentials.ts'
import { FORMATS } from '../../auth/opaque/format.ts'
import { ForbiddenError, MachineDisabledError, NotFoundError, TokenRetiredError, UnauthorizedError } from '../../errors.ts'
import { isUuid, withOrg, type Sql, type Tx } from '../../infra/db.ts'
import { recordAudit } from '../audit/repo.ts'
import { issueToken, revokeTokens } from '../api-tokens/repo.ts'
import { cleanJson, timestampOrNull } from './clean.ts'
import { machineConfig, notModified, policyDocument, type MachineConfig, type PolicyDocument } from '../policies/document.ts'
import { recordLive, type LiveRing } from '../live/repo.ts'
import { heartbeatUpdate, recordDeliveries } from './delivery.ts'
import type { AgentsBody, GraphsBody, HeartbeatBody, RegisterBody } from './schema.ts'

/** A machine sends events and reads its own policies, never the org's data (issue 9). */
export const SERVICE_SCOPES = ['ingest']
/** Credential kinds exchanged for a service token at registration (SPEC §3.2, §3.3). */
const EXCHANGED = new Set(['install', 'enrollment'])
const REGISTER_FIELDS = new Set(['machine_id', 'hostname', 'os', 'arch', 'agent_version'])

export interface MachineDeps {
  sql: Sql
  resolver: CredentialResolver
}

/**
 * The machine `rawId` names, if this credential may act on it; 404 otherwise (not a UUID, not in
 * the org, or not the machine a service token is bound to). `lock` serialises writers of one
 * machine (FOR NO KEY UPDATE: foreign-key checks elsewhere are not blocked).
 */
export async function machineOf(tx: Tx, principal: Principal, rawId: string, lock = false): Promise<string> {
  return (await machineRowOf(tx, principal, rawId, lock)).id
}

/** `machineOf`, with what the fleet stream also needs of the row (one read). */
export async function machineRowOf(
  tx: Tx,
  principal: Principal,
  rawId: string,
  lock = false,
): Promise<{ id: string; status: string; tags: string[]; token_id: string | null }> {
  const id = rawId.toLowerCase()
  if (isUuid(id)) {
    const [row] = await tx<{ id: string; status: string; tags: string[]; token_id: string | null }[]>`
      select m.id, m.status, m.tags, m.token_id from machines m
       where m.id = ${id}
         and not exists (select 1 from api_tokens t
                          where t.id = ${principal.tokenId} and t.machine_id is not null and t.machine_id <> m.id)
         ${isRetired(principal) ? tx`and m.token_id = ${principal.tokenId}` : tx``}
       ${lock ? tx`for no key update of m` : tx``}`
    if (row?.status === 'disabled') throw new MachineDisabledError()
    if (row) return row
  }
  throw new NotFoundError('No machine with that id in this organization.')
}

const isRetired = (p: Principal) => 'retired' in p && p.retired

/** What the audit log records of a machine's registration. */
interface MachineFacts {
  client_machine_id: string
  hostname: string | null
  os: string | null
  arch: string | null
  agent_version: string | null
  token_id: string | null
}

/**
 * Whether the presented opaque credential is retired, read from its row and locked for the
 * registration: a cached principal may predate a revocation (another instance, up to its cache
 * TTL), and a registration mints credentials. FOR SHARE lets one deploy token's registrations run
 * together while a revocation waits for them (and they for it); an enrollment token is taken FOR
 * NO KEY UPDATE at once, as its registration consumes it (two sharers upgrading would deadlock).
 * A credential revoked meanwhile that is not a deploy token is refused; one with no row (a JWT)
 * is as its principal says.
 */
async function presentedState(tx: Tx, principal: Principal): Promise<{ retired: boolean; boundTo: string | null }> {
  if (principal.kind === 'member' || principal.kind === 'jwt') return { retired: false, boundTo: null }
  const [row] = await tx<{ kind: string; revoked_at: Date | null; expires_at: Date | null; machine_id: string | null }[]>`
    select kind, revoked_at, expires_at, machine_id from api_tokens where id = ${principal.tokenId}
    ${principal.kind === 'enrollment' ? tx`for no key update` : tx`for share`}`
  if (!row) return { retired: isRetired(principal), boundTo: null }
  const expired = row.expires_at !== null && row.expires_at.getTime() <= Date.now()
  if (expired || (row.revoked_at && row.kind !== 'install'))
    throw new UnauthorizedError('The token is invalid, expired or revoked.')
  return { retired: row.revoked_at !== null, boundTo: row.machine_id }
}

export interface Registration {
  created: boolean
  body: { machine_id: string; id: string; org_id: string; service_token?: string }
}

/**
 * Upserts the machine on (org, client fingerprint): the same host re-registering gets the same
 * row, with its details refreshed. An install or enrollment credential is exchanged for a service
 * token bound to the machine, minted again at every registration with such a credential (the raw
 * value cannot be shown twice) while the machine's previous service tokens are revoked, so each
 * machine holds at most one live service token. The presented credential is never consumed:
 * Gen-B daemons re-register with it at every start (SPEC §3.3).
 */
export async function registerMachine(
  deps: MachineDeps,
  principal: Principal,
  body: Static<typeof RegisterBody>,
  request: RequestFacts,
): Promise<Registration> {
  const extra = cleanJson(Object.fromEntries(Object.entries(body).filter(([k]) => !REGISTER_FIELDS.has(k))), '') as Record<
    string,
    unknown
  >
  const revoked: RevokedToken[] = []
  const result = await withOrg(deps.sql, principal.orgId, async (tx) => {
    const { retired, boundTo } = await presentedState(tx, principal)
    const [known] = await tx<MachineFacts[]>`
      select client_machine_id, hostname, os, arch, agent_version, token_id from machines where client_machine_id = ${body.machine_id}`
    // A retired deploy token re-registers its own machines (the daemon does at every start) only.
    if (retired && known?.token_id !== principal.tokenId) throw new TokenRetiredError()
    const [row] = await tx<{ id: string; inserted: boolean; status: string }[]>`
      insert into machines (org_id, client_machine_id, hostname, os, arch, agent_version, token_id, metadata, last_seen_at)
      values (app_current_org(), ${body.machine_id}, ${body.hostname ?? null}, ${body.os ?? null}, ${body.arch ?? null},
              ${body.agent_version ?? null}, ${principal.tokenId}, ${tx.json(extra as never)}, now())
      on conflict (org_id, client_machine_id) do update set
        hostname      = coalesce(excluded.hostname, machines.hostname),
        os            = coalesce(excluded.os, machines.os),
        arch          = coalesce(excluded.arch, machines.arch),
        agent_version = coalesce(excluded.agent_version, machines.agent_version),
        token_id      = excluded.token_id,
        metadata      = machines.metadata || excluded.metadata,
        last_seen_at  = now()
      returning id, (xmax = 0) as inserted, status`
    // Read under the row lock the upsert holds: a concurrent disable is either before or after.
    if (row!.status === 'disabled') throw new MachineDisabledError()
    const machineId = row!.id
    // A service token re-registering may only re-register its own machine (rolls back the upsert).
    if (boundTo && boundTo !== machineId) {
      throw new ForbiddenError('This service token belongs to another machine.')
    }
    // Audited when new, and when another credential takes the machine over (a daemon's restart,
    // which re-registers with the same one, is not an administrative change).
    if (row!.inserted || (known && known.token_id !== principal.tokenId)) {
      const [after] = await tx<MachineFacts[]>`
        select client_machine_id, hostname, os, arch, agent_version, token_id from machines where id = ${machineId}`
      await recordAudit(tx, {
        actorType: 'token',
        actorId: principal.tokenId,
        action: 'machine.register',
        targetType: 'machine',
        targetId: machineId,
        request,
        details: { before: row!.inserted ? null : known, after },
      })
    }
    let serviceToken: string | undefined
    // An enrollment token is single use: consumed by the registration it makes (issue 10).
    if (principal.kind === 'enrollment') {
      const [used] = await revokeTokens(tx, { kind: 'enrollment', id: principal.tokenId })
      // Row-locked: of two registrations racing with one token, the second finds it used.
      if (!used?.revokedNow) throw new UnauthorizedError('This enrollment token was already used.')
      revoked.push(used)
    }
    // A retired deploy token keeps its machines, and mints nothing: a fresh service token would
    // be a live credential made from a revoked one.
    if (EXCHANGED.has(principal.kind) && !retired) {
      // The upsert above holds the machine row lock: concurrent registrations of one machine
      // queue here, and each sees the token minted by the one before it.
      revoked.push(...(await revokeTokens(tx, { kind: FORMATS.serviceToken.kind, machineId })))
      const issued = await issueToken(tx, {
        format: FORMATS.serviceToken,
        name: `machine ${machineId}`,
        scopes: SERVICE_SCOPES,
        createdBy: principal.tokenId,
        machineId,
      })
      await recordAudit(tx, {
        actorType: 'token',
        actorId: principal.tokenId,
        action: 'service_token.issue',
        targetType: 'api_token',
        targetId: issued.id,
        request,
        details: { machine_id: machineId, revoked: revoked.map((r) => r.id) },
      })
      serviceToken = issued.token
    }
    return {
      created: row!.inserted,
      body: {
        machine_id: machineId,
        id: machineId,
        org_id: principal.orgId,
        ...(serviceToken ? { service_token: serviceToken } : {}),
      },
    }
  })
  // After commit: the revoked tokens are refused from the next request, on every instance.
  await deps.resolver.revoked(revoked)
  return result
}

/**
 * Records a heartbeat and answers with the current policy hash (the policies' ETag). Its
 * `dropped_events` (issue 9) is counted as the machine's edge drops for today, in the same
 * transaction. The hash it answers is recorded as delivered (issue 12, ./delivery.ts); when that
 * changed, the machine is named on the live log as the transaction's last statement (after the
 * `ingest_stats` row: the pipeline takes that row before the log's lock too), and the console's
 * live stream is rung after the commit.
 */
export async function heartbeat(
  deps: MachineDeps & { metrics: Pick<Metrics, 'ingestEdgeDropped'>; live: LiveRing },
  principal: Principal,
  rawId: string,
  body: Static<typeof HeartbeatBody>,
): Promise<MachineConfig> {
  const dropped = body.dropped_events ?? 0
  const { config, delivered } = await withOrg(deps.sql, principal.orgId, async (tx) => {
    const id = await machineOf(tx, principal, rawId)
    const uptime = body.uptime === undefined || body.uptime === null ? null : Math.floor(body.uptime)
    const config = await machineConfig(tx, id)
    const delivered = await heartbeatUpdate(tx, id, { agentVersion: body.agent_version ?? null, uptime }, config.policy_hash)
    if (dropped > 0) {
      await recordAck(tx, {
        day: new Date().toISOString().slice(0, 10),
        machineId: id,
        received: 0,
        accepted: 0,
        duplicates: 0,
        rejected: {},
        redactions: 0,
        edgeDropped: dropped,
      })
    }
    // Last: the live log's per-org lock is the last any writer takes (docs/live.md).
    if (delivered) await recordLive(tx, 'delivery', [id])
    return { config, delivered }
  })
  if (dropped > 0) deps.metrics.ingestEdgeDropped.inc({ report: 'heartbeat' }, dropped)
  if (delivered) deps.live.ring([principal.orgId])
  return config
}

/**
 * The policy document for a machine of the org (404 for any other id), and whether `ifNoneMatch`
 * names it (the route answers 304). A 200 hands the machine its hash: recorded as delivered
 * (issue 12, ./delivery.ts), the console's live stream rung when that changed.
 */
export async function machinePolicies(
  deps: MachineDeps & { live: LiveRing },
  principal: Principal,
  rawId: string,
  ifNoneMatch: string | undefined,
): Promise<PolicyDocument & { notModified: boolean }> {
  const out = await withOrg(deps.sql, principal.orgId, async (tx) => {
    const id = await machineOf(tx, principal, rawId)
    const doc = await policyDocument(tx, id)
    const unchanged = notModified(ifNoneMatch, doc.hash)
    const delivered = unchanged ? [] : await recordDeliveries(tx, 'policies', [{ machineId: id, policyHash: doc.hash }])
    return { ...doc, notModified: unchanged, delivered: delivered.length > 0 }
  })
  if (out.delivered) deps.live.ring([principal.orgId])
  return out
}

/** The machine id for a credential, in its own short transaction (events: checked before the body is read). */
export function resolveMachine(deps: MachineDeps, principal: Principal, rawId: string): Promise<string> {
  return withOrg(deps.sql, principal.orgId, (tx) => machineOf(tx, principal, rawId))
}

/**
 * Replaces the machine's process snapshot; an empty list clears it. The machine row is locked
 * so two snapshots of one machine never interleave. A repeated (platform, pid) keeps the first.
 */
export async function replaceProcesses(
  deps: MachineDeps,
  principal: Principal,
  rawId: string,
  body: Static<typeof AgentsBody>,
): Promise<{ machine_id: string; agents: number }> {
  const rows = body.agents.map((a, i) => ({
    platform: a.platform,
    pid: a.pid,
    binary_path: a.binary_path ?? null,
    state: a.state,
    cpu_percent: a.cpu_percent ?? null,
    memory_mb: a.memory_mb ?? null,
    started_at: timestampOrNull(a.started_at, `/agents/${i}/started_at`),
  }))
  return withOrg(deps.sql, principal.orgId, async (tx) => {
    const id = await machineOf(tx, principal, rawId, true)
    await tx`delete from machine_processes where machine_id = ${id}`
    if (rows.length === 0) return { machine_id: id, agents: 0 }
    const inserted = await tx`
      insert into machine_processes (org_id, machine_id, platform, pid, binary_path, state, cpu_percent, memory_mb, started_at)
      select app_current_org(), ${id}, r.platform, r.pid, r.binary_path, r.state, r.cpu_percent, r.memory_mb, r.started_at
        from jsonb_to_recordset(${tx.json(rows as never)}::jsonb)
             as r(platform text, pid bigint, binary_path text, state text, cpu_percent float8, memory_mb float8,
                  started_at timestamptz)
      on conflict do nothing`
    return { machine_id: id, agents: inserted.count }
  })
}

/**
 * Upserts graphs per (org, machine, graph id), latest copy wins. `created` counts graphs seen
 * for the first time (the route answers 201 when there is one).
 */
export async function upsertGraphs(
  deps: MachineDeps,
  principal: Principal,
  rawId: string,
  body: Static<typeof GraphsBody>,
): Promise<{ received: number; created: number; updated: number }> {
  // The last copy of a repeated id wins (one upsert may not touch a row twice).
  const byId = new Map<string, Record<string, unknown>>()
  body.graphs.forEach((g, i) => {
    byId.set(g.id, {
      graph_id: g.id,
      root_agent_id: g.root_agent_id ?? null,
      root_agent_name: g.root_agent_name ?? null,
      status: g.status ?? null,
      total_nodes: g.total_nodes ?? null,
      graph: g.nodes === undefined ? {} : cleanJson(g.nodes, `/graphs/${i}/nodes`),
      started_at: timestampOrNull(g.started_at, `/graphs/${i}/started_at`),
      completed_at: timestampOrNull(g.completed_at, `/graphs/${i}/completed_at`),
    })
  })
  return withOrg(deps.sql, principal.orgId, async (tx) => {
    const id = await machineOf(tx, principal, rawId)
    if (byId.size === 0) return { received: 0, created: 0, updated: 0 }
    const rows = await tx<{ inserted: boolean }[]>`
      insert into machine_graphs (org_id, machine_id, graph_id, root_agent_id, root_agent_name, status, total_nodes,
                                  graph, started_at, completed_at)
      select app_current_org(), ${id}, r.graph_id, r.root_agent_id, r.root_agent_name, r.status, r.total_nodes,
             coalesce(r.graph, '{}'::jsonb), r.started_at, r.completed_at
        from jsonb_to_recordset(${tx.json([...byId.values()] as never)}::jsonb)
             as r(graph_id text, root_agent_id text, root_agent_name text, status text, total_nodes integer,
                  graph jsonb, started_at timestamptz, completed_at timestamptz)
      on conflict (org_id, machine_id, graph_id) do update set
        root_agent_id   = excluded.root_agent_id,
        root_agent_name = excluded.root_agent_name,
        status          = excluded.status,
        total_nodes     = excluded.total_nodes,
        graph           = excluded.graph,
        started_at      = excluded.started_at,
        completed_at    = excluded.completed_at,
        updated_at      = now()
      returning (xmax = 0) as inserted`
    const created = rows.filter((r) => r.inserted).length
    return { received: body.graphs.length, created, updated: rows.length - created }
  })
}
