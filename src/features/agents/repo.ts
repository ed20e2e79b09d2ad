/**
 * @module features/agents/repo
 * SQL of the agents read API (issue 9). `agents` holds one row per (machine, agent key); the API's
 * agent is the key, so every read groups those rows by key. Runs inside `withOrg` (RLS scopes it).
 * An org has agents in the hundreds or thousands, not millions, so grouping them per page is cheap.
 */
import { isUuid, type Tx } from '../../infra/db.ts'
import type { Keyset } from '../../http/pagination.ts'

export interface AgentFilters {
  platform?: string
  machine_id?: string
  since?: string
}

export interface AgentPageRow {
  agent_key: string
  /** The agent's latest `last_seen_at`, as Postgres printed it: the cursor's `at`. */
  last_seen_key: string
  /** The id of the agent row seen last (ties: the greatest id): the cursor's `id`. */
  cursor_id: string
}

/**
 * One page of agent keys, most recently seen first. The keyset is (latest last_seen_at, id of the
 * row that was seen then) rather than (last_seen_at, key): every row belongs to one key, so that
 * id orders agents seen at the same instant as well as the key would, and the shared cursor
 * format (`decodeCursor`: a timestamp and a UUID) then serves this list too, with the same
 * validation. The row need not exist when the cursor comes back: only its values are compared.
 *
 * Filters select agents, not rows: an agent seen on the given platform or machine is listed
 * with all its platforms and machines.
 */
export function pageAgents(tx: Tx, f: AgentFilters, limit: number, after: Keyset | null): Promise<AgentPageRow[]> {
  return tx<AgentPageRow[]>`
    select agent_key, last_seen_at::text as last_seen_key, cursor_id from (
      select g.agent_key, max(g.last_seen_at) as last_seen_at,
             (array_agg(g.id order by g.last_seen_at desc, g.id desc))[1] as cursor_id
        from agents g
       group by g.agent_key
      having true
        ${f.platform !== undefined ? tx`and bool_or(g.platform = ${f.platform})` : tx``}
        ${f.machine_id !== undefined ? tx`and bool_or(g.machine_id = ${f.machine_id}::uuid)` : tx``}
    ) k
     where true
       ${f.since !== undefined ? tx`and k.last_seen_at >= ${f.since}::text::timestamptz` : tx``}
       ${after ? tx`and (k.last_seen_at, k.cursor_id) < (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by k.last_seen_at desc, k.cursor_id desc
     limit ${limit}`
}

/**
 * The agent key an id names: the UUID of one of its rows, or the key itself; null when neither.
 * A server-assigned UUID wins over a client-chosen key that happens to look the same (as for
 * sessions, ../sessions/view.ts findSession).
 */
export async function resolveAgentKey(tx: Tx, idOrKey: string): Promise<string | null> {
  if (idOrKey.length === 0 || idOrKey.length > 256) return null
  const id = idOrKey.toLowerCase()
  const [row] = await tx<{ agent_key: string }[]>`
    select g.agent_key from agents g
     where ${isUuid(id) ? tx`g.id = ${id}::uuid or` : tx``} g.agent_key = ${idOrKey}
     order by (g.agent_key = ${idOrKey})
     limit 1`
  return row?.agent_key ?? null
}

export interface AgentRow {
  agent_key: string
  name: string | null
  platforms: string[]
  machines: { machine_id: string; hostname: string | null }[]
  first_seen_at: Date
  last_seen_at: Date
  event_count: string
  session_count: string
  risk_max: number | null
  risk_sum: string | null
  risk_count: string | null
  blocked_count: string | null
}

/**
 * The grouped agents for `keys`: their rows (platforms, machines, first and last seen, events)
 * and their sessions (`sessions.agent_id` → `agents.id`: count, risk, blocked events).
 */
export function agentsByKey(tx: Tx, keys: string[]): Promise<AgentRow[]> {
  return tx<AgentRow[]>`
    with r as (
      select g.agent_key, count(s.id) as session_count, max(s.risk_max) as risk_max, sum(s.risk_sum) as risk_sum,
             sum(s.risk_count) as risk_count, sum(s.blocked_count) as blocked_count
        from agents g join sessions s on s.org_id = g.org_id and s.agent_id = g.id
       where g.agent_key = any(${keys}::text[])
       group by g.agent_key
    )
    select g.agent_key, max(g.name) as name,
           coalesce(array_agg(distinct g.platform) filter (where g.platform is not null), '{}') as platforms,
           coalesce(jsonb_agg(distinct jsonb_build_object('machine_id', g.machine_id, 'hostname', m.hostname))
                      filter (where g.machine_id is not null), '[]') as machines,
           min(g.first_seen_at) as first_seen_at, max(g.last_seen_at) as last_seen_at, sum(g.event_count) as event_count,
           coalesce(max(r.session_count), 0) as session_count, max(r.risk_max) as risk_max, max(r.risk_sum) as risk_sum,
           max(r.risk_count) as risk_count, max(r.blocked_count) as blocked_count
      from agents g
      left join machines m on m.org_id = g.org_id and m.id = g.machine_id
      left join r on r.agent_key = g.agent_key
     where g.agent_key = any(${keys}::text[])
     group by g.agent_key`
}
