/**
 * @module features/machines/inventory-routes
 * The fleet inventory (issue 9): `GET /v1/machines` (filters, keyset pages, newest registered
 * first) and `GET /v1/machines/{id}` (the machine with its latest process snapshot, agent graphs,
 * agents and counts); each machine's `policy`: the hash it should hold and the one it was last
 * handed (issue 12, ./delivery.ts). `read` scope: people and read credentials, never a machine's own credential
 * (docs/rbac.md). Cutting one machine off (issue 10): `PATCH /v1/machines/{id}` with status
 * `disabled`, or `DELETE`, which does the same and keeps the row so that its events stay
 * attributed and it stays refused (`manage`; docs/machines.md). The daemon's own routes (`/v1/machines/{id}/heartbeat`, `/policies`, …) are in
 * ./routes.ts and keep machine auth; they never collide with these, which have one path segment
 * fewer or another method.
 */
import type { CredentialResolver, Principal } from '../../auth/credentials.ts'
import { NotFoundError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, paginate } from '../../http/pagination.ts'
import type { RequestFacts } from '../../http/request-context.ts'
import { isUuid, withOrg, type Sql, type Tx } from '../../infra/db.ts'
import { revokeTokens } from '../api-tokens/repo.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { recordFleetEvent, type FleetRing } from '../fleet/repo.ts'
import { configCache, machineConfig } from '../policies/document.ts'
import {
  getMachine,
  listMachines,
  machineSections,
  updateMachine,
  type MachineRow,
  type MachineSections,
} from './inventory-repo.ts'
import {
  MachineDetail,
  MachineIdParams,
  MachineList,
  MachineListQuery,
  MachineUpdateBody,
  MachineView,
  type MachineDetail as MachineDetailT,
} from './inventory-schema.ts'

/** `sql` may be the read pool; status changes go to `primary`. */
export function mountMachineInventory(
  routes: RouteRegistry,
  deps: { sql: Sql; primary: Sql; resolver: CredentialResolver; fleet: FleetRing },
): void {
  const { sql } = deps
  const writer = { sql: deps.primary, resolver: deps.resolver, fleet: deps.fleet }
  const tags = ['machines']

  routes.add(
    {
      method: 'get',
      path: '/v1/machines',
      operationId: 'listMachines',
      summary: 'List the fleet: newest registered first, with filters (status, online, os, hostname, client_machine_id, since)',
      tags,
      permission: 'read',
      query: MachineListQuery,
      responses: { 200: { description: 'A page of machines', schema: MachineList } },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const { limit: _l, cursor, ...filters } = query
      const { page, next, hashes } = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const rows = await listMachines(tx, filters, limit + 1, decodeCursor(cursor))
        const { page, next } = paginate(rows, limit, (r) => r.registered_key)
        return { page, next, hashes: await policyHashes(tx, page) }
      })
      return c.json({ machines: page.map((m) => machineView(m, hashes.get(m.id)!)), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/machines/:id',
      operationId: 'getMachine',
      summary: 'One machine: details, online, registering credential, process snapshot, agent graphs, agents, counts',
      tags,
      permission: 'read',
      params: MachineIdParams,
      responses: { 200: { description: 'The machine', schema: MachineDetail } },
    },
    async (c, { params }) => {
      const id = params.id.toLowerCase()
      if (!isUuid(id)) throw machineNotFound()
      const found = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const m = await getMachine(tx, id)
        if (!m) return null
        const hash = (await machineConfig(tx, id)).policy_hash
        return { m, hash, sections: await machineSections(tx, id) }
      })
      if (!found) throw machineNotFound()
      return c.json(machineDetail(found.m, found.hash, found.sections))
    },
  )

  routes.add(
    {
      method: 'patch',
      path: '/v1/machines/:id',
      operationId: 'updateMachine',
      summary: 'Disable a machine (refused from its next request, whatever credential) or enable it again; set its tags',
      tags,
      permission: 'manage',
      params: MachineIdParams,
      body: MachineUpdateBody,
      responses: { 200: { description: 'The machine after the change', schema: MachineView } },
    },
    async (c, { params, body }) => {
      // Tags once each, sorted: an order is no change.
      const tags = body.tags && [...new Set(body.tags)].sort()
      const { machine, hash } = await changeMachine(
        writer,
        c.get('principal'),
        params.id,
        { status: body.status, tags },
        c.get('request'),
      )
      return c.json(machineView(machine, hash))
    },
  )

  routes.add(
    {
      method: 'delete',
      path: '/v1/machines/:id',
      operationId: 'deleteMachine',
      summary: 'Cut a machine off: disabled, service tokens revoked; the row stays for its events (idempotent)',
      tags,
      permission: 'manage',
      params: MachineIdParams,
      responses: { 204: { description: 'Disabled' } },
    },
    async (c, { params }) => {
      await changeMachine(writer, c.get('principal'), params.id, { status: 'disabled' }, c.get('request'))
      return c.body(null, 204)
    },
  )
}

/**
 * Disabling also revokes the machine's service tokens: a machine-bound token is refused on
 * every route, not only on the machine routes that check the status (issue 10). A change is
 * told to the machine's fleet streams: disabled ends them, new tags may change its policies.
 */
async function changeMachine(
  deps: { sql: Sql; resolver: CredentialResolver; fleet: FleetRing },
  p: Principal,
  rawId: string,
  change: { status?: 'active' | 'disabled'; tags?: string[] },
  request: RequestFacts,
): Promise<{ machine: MachineRow; hash: string }> {
  const id = rawId.toLowerCase()
  if (!isUuid(id)) throw machineNotFound()
  const out = await withOrg(deps.sql, p.orgId, async (tx) => {
    const before = await updateMachine(tx, id, change)
    if (!before) throw machineNotFound()
    const revoked = change.status === 'disabled' ? await revokeTokens(tx, { kind: 'service', machineId: id }) : []
    const after = (await getMachine(tx, id))!
    const statusChanged = before.status !== after.status
    if (statusChanged || before.tags.join('\n') !== after.tags.join('\n')) {
      await recordFleetEvent(tx, {
        kind: 'machine',
        machineId: id,
        data: { type: 'machine', status: after.status, tags: after.tags },
      })
      await recordAudit(tx, {
        ...auditActor(p),
        action: !statusChanged ? 'machine.update' : after.status === 'disabled' ? 'machine.disable' : 'machine.enable',
        targetType: 'machine',
        targetId: id,
        request,
        details: {
          before: { status: before.status, tags: before.tags },
          after: { status: after.status, tags: after.tags },
          revoked_tokens: revoked.map((r) => r.id),
        },
      })
    }
    // New tags may change the policies in force on it.
    return { machine: after, hash: (await machineConfig(tx, id)).policy_hash, revoked }
  })
  deps.fleet.ring([p.orgId])
  await deps.resolver.revoked(out.revoked)
  return out
}

const machineNotFound = () => new NotFoundError('No machine with that id in this organization.')
const iso = (d: Date | null) => d?.toISOString() ?? null

/**
 * Each machine's policy hash now (issue 12), as its heartbeat would answer: one computation per
 * group of machines that cannot differ, not one per machine of the page.
 */
async function policyHashes(tx: Tx, rows: readonly MachineRow[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  if (rows.length === 0) return out
  const configs = await configCache(tx)
  for (const m of rows) out.set(m.id, (await configs(m.id, m.tags)).policy_hash)
  return out
}

/** `hash`: the policy hash the machine should hold now (`policyHashes`, `machineConfig`). */
function machineView(m: MachineRow, hash: string): MachineView {
  return {
    id: m.id,
    client_machine_id: m.client_machine_id,
    hostname: m.hostname,
    os: m.os,
    arch: m.arch,
    daemon_version: m.agent_version,
    status: m.status,
    tags: m.tags,
    registered_at: m.registered_at.toISOString(),
    last_seen_at: iso(m.last_seen_at),
    online: m.online,
    uptime_seconds: m.uptime_seconds === null ? null : Number(m.uptime_seconds),
    registered_by:
      m.token_id === null
        ? null
        : {
            token_id: m.token_id,
            kind: m.token_kind!,
            name: m.token_name!,
            prefix: m.token_prefix!,
            revoked_at: iso(m.token_revoked_at),
          },
    policy: {
      hash,
      delivered_hash: m.policy_delivered_hash,
      delivered_at: iso(m.policy_delivered_at),
      delivered_via: m.policy_delivered_via,
      current: m.policy_delivered_hash === hash,
    },
  }
}

function machineDetail(m: MachineRow, hash: string, s: MachineSections): MachineDetailT {
  return {
    ...machineView(m, hash),
    metadata: m.metadata,
    session_count: s.counts.sessions,
    open_alert_count: s.counts.open_alerts,
    last_event_at: iso(s.counts.last_event_at),
    processes: s.processes.map((p) => ({
      platform: p.platform,
      pid: Number(p.pid),
      binary_path: p.binary_path,
      state: p.state,
      cpu_percent: p.cpu_percent,
      memory_mb: p.memory_mb,
      started_at: iso(p.started_at),
      reported_at: p.reported_at.toISOString(),
    })),
    graphs: s.graphs.map((g) => ({
      graph_id: g.graph_id,
      root_agent_id: g.root_agent_id,
      root_agent_name: g.root_agent_name,
      status: g.status,
      total_nodes: g.total_nodes,
      nodes: g.graph,
      started_at: iso(g.started_at),
      completed_at: iso(g.completed_at),
      first_seen_at: g.first_seen_at.toISOString(),
      updated_at: g.updated_at.toISOString(),
    })),
    graph_count: s.counts.graphs,
    agents: s.agents.map((a) => ({
      id: a.id,
      agent_id: a.agent_key,
      name: a.name,
      platform: a.platform,
      event_count: Number(a.event_count),
      session_count: Number(a.session_count),
      first_seen_at: a.first_seen_at.toISOString(),
      last_seen_at: a.last_seen_at.toISOString(),
    })),
    agent_count: s.counts.agents,
  }
}
