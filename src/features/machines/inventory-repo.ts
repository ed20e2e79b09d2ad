/**
 * @module features/machines/inventory-repo
 * SQL of the fleet inventory (issue 9). Every function runs inside `withOrg`: RLS scopes each
 * statement, so another org's machine is simply absent. `online` is computed by Postgres from
 * its own `now()`, the same clock that stamped `last_seen_at`, so no app-server clock skew enters.
 */
import type { Keyset } from '../../http/pagination.ts'
import type { Tx } from '../../infra/db.ts'
import type { MachineListQuery } from './inventory-schema.ts'

/**
 * The public daemon heartbeats every 60 s (SPEC §13, PX:cmd/proxy/daemon.go) and our heartbeat
 * answer does not tell it otherwise; a machine is online when seen within two intervals (issue 9),
 * so one lost heartbeat does not flap it offline.
 */
export const HEARTBEAT_INTERVAL_S = 60
export const ONLINE_WINDOW_S = 2 * HEARTBEAT_INTERVAL_S

const PROCESS_LIMIT = 1000
const GRAPH_LIMIT = 10
const AGENT_LIMIT = 50

export interface MachineRow {
  id: string
  client_machine_id: string
  hostname: string | null
  os: string | null
  arch: string | null
  agent_version: string | null
  status: 'active' | 'disabled'
  tags: string[]
  registered_at: Date
  /** `registered_at` as Postgres printed it: the keyset cursor's sort key. */
  registered_key: string
  last_seen_at: Date | null
  online: boolean
  uptime_seconds: string | null
  metadata: Record<string, unknown>
  token_id: string | null
  token_kind: string | null
  token_name: string | null
  token_prefix: string | null
  token_revoked_at: Date | null
  policy_delivered_hash: string | null
  policy_delivered_at: Date | null
  policy_delivered_via: 'heartbeat' | 'policies' | 'stream' | null
}

/** The registering credential comes from api_tokens: its name and display prefix, never the hash. */
const MACHINE_SELECT = (tx: Tx) => tx`
  select m.id, m.client_machine_id, m.hostname, m.os, m.arch, m.agent_version, m.status, m.tags, m.registered_at,
         m.registered_at::text as registered_key, m.last_seen_at,
         coalesce(m.last_seen_at >= now() - make_interval(secs => ${ONLINE_WINDOW_S}), false) as online,
         m.uptime_seconds, m.metadata, t.id as token_id, t.kind as token_kind, t.name as token_name,
         t.token_prefix, t.revoked_at as token_revoked_at, m.policy_delivered_hash, m.policy_delivered_at,
         m.policy_delivered_via
    from machines m
    left join api_tokens t on t.org_id = m.org_id and t.id = m.token_id`

/** `%`, `_` and `\` in a filter are literal text, not LIKE wildcards. */
const likeLiteral = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`)

/**
 * Newest registered first, keyset on (registered_at, id). Not last_seen_at: it moves with every
 * heartbeat, and a keyset over a moving key repeats or skips machines between pages.
 */
export function listMachines(
  tx: Tx,
  f: Omit<MachineListQuery, 'limit' | 'cursor'>,
  limit: number,
  after: Keyset | null,
): Promise<MachineRow[]> {
  const window = tx`now() - make_interval(secs => ${ONLINE_WINDOW_S})`
  return tx<MachineRow[]>`
    ${MACHINE_SELECT(tx)}
     where true
       ${f.status !== undefined ? tx`and m.status = ${f.status}` : tx``}
       ${f.tag !== undefined ? tx`and ${f.tag} = any(m.tags)` : tx``}
       ${f.online === true ? tx`and m.last_seen_at >= ${window}` : tx``}
       ${f.online === false ? tx`and (m.last_seen_at is null or m.last_seen_at < ${window})` : tx``}
       ${f.os !== undefined ? tx`and m.os = ${f.os}` : tx``}
       ${f.hostname !== undefined ? tx`and m.hostname ilike ${`%${likeLiteral(f.hostname)}%`}` : tx``}
       ${f.client_machine_id !== undefined ? tx`and m.client_machine_id = ${f.client_machine_id}` : tx``}
       ${f.since !== undefined ? tx`and m.last_seen_at >= ${f.since}::text::timestamptz` : tx``}
       ${after ? tx`and (m.registered_at, m.id) < (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by m.registered_at desc, m.id desc
     limit ${limit}`
}

/** Sets a machine's status; returns its row before the change (locked), or null when there is none. */
/** Sets a machine's status and tags (those given); returns its row before the change (locked), or null. */
export async function updateMachine(
  tx: Tx,
  id: string,
  change: { status?: 'active' | 'disabled'; tags?: string[] },
): Promise<MachineRow | null> {
  const [before] = await tx<MachineRow[]>`${MACHINE_SELECT(tx)} where m.id = ${id} for no key update of m`
  if (!before) return null
  await tx`
    update machines set status = ${change.status ?? before.status}, tags = ${change.tags ?? before.tags}::text[]
     where id = ${id}`
  return before
}

export async function getMachine(tx: Tx, id: string): Promise<MachineRow | null> {
  const [row] = await tx<MachineRow[]>`${MACHINE_SELECT(tx)} where m.id = ${id}::uuid`
  return row ?? null
}

export interface ProcessRow {
  platform: string
  pid: string
  binary_path: string | null
  state: string
  cpu_percent: number | null
  memory_mb: number | null
  started_at: Date | null
  reported_at: Date
}

export interface GraphRow {
  graph_id: string
  root_agent_id: string | null
  root_agent_name: string | null
  status: string | null
  total_nodes: number | null
  graph: unknown
  started_at: Date | null
  completed_at: Date | null
  first_seen_at: Date
  updated_at: Date
}

export interface MachineAgentRow {
  id: string
  agent_key: string
  name: string | null
  platform: string | null
  event_count: string
  session_count: string
  first_seen_at: Date
  last_seen_at: Date
}

export interface MachineSections {
  processes: ProcessRow[]
  graphs: GraphRow[]
  agents: MachineAgentRow[]
  counts: { sessions: number; open_alerts: number; graphs: number; agents: number; last_event_at: Date | null }
}

/**
 * What the detail adds to the machine: each section bounded (a machine can push thousands of
 * graphs), each count from an index on (org_id, machine_id, …).
 */
export async function machineSections(tx: Tx, id: string): Promise<MachineSections> {
  const processes = await tx<ProcessRow[]>`
    select platform, pid, binary_path, state, cpu_percent, memory_mb, started_at, reported_at
      from machine_processes where machine_id = ${id}::uuid
     order by platform, pid
     limit ${PROCESS_LIMIT}`
  const graphs = await tx<GraphRow[]>`
    select graph_id, root_agent_id, root_agent_name, status, total_nodes, graph, started_at, completed_at,
           first_seen_at, updated_at
      from machine_graphs where machine_id = ${id}::uuid
     order by updated_at desc, graph_id
     limit ${GRAPH_LIMIT}`
  const agents = await tx<MachineAgentRow[]>`
    select id, agent_key, name, platform, event_count, session_count, first_seen_at, last_seen_at
      from agents where machine_id = ${id}::uuid
     order by last_seen_at desc, id
     limit ${AGENT_LIMIT}`
  const [counts] = await tx<
    { sessions: number; open_alerts: number; graphs: number; agents: number; last_event_at: Date | null }[]
  >`
    select (select count(*)::int from sessions where machine_id = ${id}::uuid) as sessions,
           (select count(*)::int from alerts where machine_id = ${id}::uuid and status = 'open') as open_alerts,
           (select count(*)::int from machine_graphs where machine_id = ${id}::uuid) as graphs,
           (select count(*)::int from agents where machine_id = ${id}::uuid) as agents,
           (select max(occurred_at) from actions where machine_id = ${id}::uuid) as last_event_at`
  return { processes, graphs, agents, counts: counts! }
}
