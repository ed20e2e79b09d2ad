/**
 * The `query` bench's baselines (issue 9): the SQL each read endpoint sends, run raw by the table
 * owner on a plain postgres.js connection: no HTTP, no auth, no transaction, no RLS, the tenant
 * named by an explicit `org_id = $1` instead. Each mirrors the endpoint's repo statement
 * (src/features/events/repo.ts, events/stats.ts, chain/*, sessions/*) clause for clause, so the
 * ratio beside it is the price of the service around the same work.
 */
import type { Keyset } from '../../src/http/pagination.ts'
import { isUuid, type Sql, type Tx } from '../../src/infra/db.ts'
import { EVENT_COLUMNS, riskBandSql } from '../../src/features/events/view.ts'
import { SESSION_COLUMNS } from '../../src/features/sessions/view.ts'
import { CLOCK_WINDOW } from '../../src/features/ingest/events.ts'
import { HOUR_MS, hourOf } from '../../src/features/events/rollup.ts'
import { CLOCK_AHEAD_MS, LINK_HORIZON_MS } from '../../src/features/chain/lookups.ts'

const RECEIVED_BEFORE = `${Math.ceil(CLOCK_WINDOW.futureMs / HOUR_MS) + 1} hours`
const RECEIVED_AFTER = `${Math.ceil(CLOCK_WINDOW.pastMs / HOUR_MS) + 1} hours`

/** The service's own select list: a Tx and a pool build the same fragment. */
const columns = (sql: Sql, alias = 'a') => EVENT_COLUMNS(sql as unknown as Tx, alias)

/** `GET /v1/events?agent_id=…&action_type=…[&cursor=…]` (listEvents, one page + 1). */
export function rawEventsPage(
  sql: Sql,
  orgId: string,
  f: { agent_key?: string; action_type?: string; since?: string },
  limit: number,
  after: Keyset | null,
) {
  return sql`
    select ${columns(sql)} from actions a
     where a.org_id = ${orgId}
       ${f.agent_key !== undefined ? sql`and a.agent_key = ${f.agent_key}` : sql``}
       ${f.action_type !== undefined ? sql`and a.action_type = ${f.action_type}` : sql``}
       ${f.since !== undefined ? sql`and a.occurred_at >= ${f.since}::text::timestamptz` : sql``}
       ${f.since !== undefined ? sql`and a.created_at >= ${f.since}::text::timestamptz - ${RECEIVED_BEFORE}::interval` : sql``}
       ${after ? sql`and (a.occurred_at, a.id) < (${after.at}::text::timestamptz, ${after.id}::uuid)` : sql``}
       ${after ? sql`and a.created_at <= ${after.at}::text::timestamptz + ${RECEIVED_AFTER}::interval` : sql``}
     order by a.occurred_at desc, a.id desc
     limit ${limit + 1}`
}

const BAND_CASE = riskBandSql('a.risk_score')

/**
 * `GET /v1/events/stats` over [since, until) without filters (eventStats → fromRollup): whole
 * hours from the hourly counts, the partial edge hours from the actions, top 10s.
 */
export function rawStats(sql: Sql, orgId: string, since: string, until: string) {
  let fullFrom = Math.ceil(Date.parse(since) / HOUR_MS) * HOUR_MS
  let fullTo = hourOf(Date.parse(until))
  if (fullFrom >= fullTo) fullFrom = fullTo = Date.parse(since)
  const from = new Date(fullFrom).toISOString()
  const to = new Date(fullTo).toISOString()
  const edge = (lo: string, hi: string) => sql`
    select a.decision, a.blocked, a.tool_name, a.agent_key, a.machine_id, ${sql.unsafe(BAND_CASE)} as band,
           date_bin('1 hour', a.occurred_at, '2000-01-01T00:00:00Z'::timestamptz) as hour
      from actions a
     where a.org_id = ${orgId}
       and a.occurred_at >= ${lo}::text::timestamptz and a.occurred_at < ${hi}::text::timestamptz
       and a.created_at >= ${lo}::text::timestamptz - ${RECEIVED_BEFORE}::interval
       and a.created_at < ${hi}::text::timestamptz + ${RECEIVED_AFTER}::interval`
  return sql`
    with e as (${edge(since, from)} union all ${edge(to, until)}),
    h as (
      select x.hour, x.decision, x.blocked, x.band, x.n from event_hourly x
       where x.n > 0 and x.org_id = ${orgId} and x.hour >= ${from}::text::timestamptz and x.hour < ${to}::text::timestamptz
      union all
      select e.hour, coalesce(e.decision, ''), e.blocked, e.band, count(*) from e group by 1, 2, 3, 4
    ), t as (
      select u.dim, u.key, sum(u.n) as n from (
        select x.dim, x.key, x.n from event_hourly_top x
         where x.n > 0 and x.org_id = ${orgId} and x.hour >= ${from}::text::timestamptz and x.hour < ${to}::text::timestamptz
        union all select 'tool', e.tool_name, count(*) from e where e.tool_name is not null group by 2
        union all select 'agent', e.agent_key, count(*) from e where e.agent_key is not null group by 2
        union all select 'machine', e.machine_id::text, count(*) from e where e.machine_id is not null group by 2
      ) u group by 1, 2
    ), r as (
      select t.*, row_number() over (partition by t.dim order by t.n desc, t.key) as rank from t
    )
    select 'hour' as kind, nullif(h.decision, '') as decision, h.band, h.hour, h.blocked, null as key,
           null as hostname, sum(h.n)::int as n, 0::bigint as rank
      from h group by h.hour, h.decision, h.blocked, h.band
    union all
    select r.dim, null, null, null, null, r.key, m.hostname, r.n::int, r.rank
      from r left join machines m on r.dim = 'machine' and m.org_id = ${orgId} and m.id::text = r.key
     where r.rank <= 10
     order by kind, rank`
}

const MAX_DEPTH = 32
const MAX_NODES = 1000

/** findSession: by UUID or by the edge's session key. */
function rawSession(sql: Sql, orgId: string, idOrKey: string) {
  const id = idOrKey.toLowerCase()
  return sql`
    select ${SESSION_COLUMNS(sql as unknown as Tx)} from sessions s
     where s.org_id = ${orgId} and (${isUuid(id) ? sql`s.id = ${id}::uuid or` : sql``} s.session_key = ${idOrKey})
     order by (s.session_key = ${idOrKey}) limit 1`
}

/** descendantsOf: what `rootIds` caused, breadth first, bounded. */
function rawDescendants(sql: Sql, orgId: string, rootIds: string[]) {
  return sql`
    with recursive down as (
      select ${columns(sql)}, 1 as depth from actions a
       where a.org_id = ${orgId} and a.parent_action_id = any(${rootIds}::uuid[])
      union all
      select ${columns(sql)}, d.depth + 1 from down d
        join actions a on a.org_id = ${orgId} and a.parent_action_id = d.id
       where d.depth < ${MAX_DEPTH}
    )
    select * from down limit ${MAX_NODES + 1}`
}

/** `GET /v1/sessions/{id}/timeline?limit=…`: the session, its top-level events, what they caused. */
export async function rawTimeline(sql: Sql, orgId: string, idOrKey: string, limit: number) {
  const [session] = await rawSession(sql, orgId, idOrKey)
  if (!session) throw new Error('rawTimeline: no such session')
  const key = session.session_key as string
  // timelinePage: a light scan and the parents outside it decide the roots.
  const scanned = await sql<{ id: string; occurred_key: string; parent_action_id: string | null }[]>`
    select a.id, a.occurred_at::text as occurred_key, a.parent_action_id from actions a
     where a.org_id = ${orgId} and a.session_key = ${key}
     order by a.occurred_at, a.id
     limit 2000`
  const ids = new Set(scanned.map((r) => r.id))
  const outside = scanned.map((r) => r.parent_action_id).filter((p): p is string => p !== null && !ids.has(p))
  if (outside.length > 0) {
    await sql`select a.id from actions a where a.org_id = ${orgId} and a.id = any(${outside}::uuid[]) and a.session_key = ${key}`
  }
  const picked = scanned.filter((r) => r.parent_action_id === null || !ids.has(r.parent_action_id)).slice(0, limit)
  // timelinePage: the roots' whole rows and the family's linked events from the earliest root on
  // (one range scan, nested in memory: src/features/chain/repo.ts), pipelined as the service does.
  const earliest = picked[0]!.occurred_key
  const [roots, family] = await Promise.all([
    sql`
      select ${columns(sql)} from actions a
       where a.org_id = ${orgId} and a.session_key = ${key} and a.id = any(${picked.map((r) => r.id)}::uuid[])
       order by a.occurred_at, a.id`.execute(),
    sql`
      select ${columns(sql)} from actions a
       where a.org_id = ${orgId} and a.chain_root = ${key.split(':sub:')[0]!} and a.parent_action_id is not null
         and a.occurred_at >= ${earliest}::text::timestamptz - ${`${LINK_HORIZON_MS / 1000} seconds`}::interval
         and a.created_at >= ${earliest}::text::timestamptz - ${`${(LINK_HORIZON_MS + CLOCK_AHEAD_MS) / 1000} seconds`}::interval
       order by a.occurred_at
       limit ${4 * MAX_NODES + 1}`.execute(),
  ])
  return roots.length + family.length
}

/** `GET /v1/events/{id}/chain`: the event, its causes up to the tool call, its effects, its session. */
export async function rawChain(sql: Sql, orgId: string, id: string) {
  const [event] = await sql<{ id: string; parent_action_id: string | null; session_key: string | null }[]>`
    select ${columns(sql)} from actions a where a.org_id = ${orgId} and a.id = ${id}::uuid`
  if (!event) throw new Error('rawChain: no such event')
  const ancestors = event.parent_action_id
    ? await sql`
        with recursive up as (
          select ${columns(sql)}, 1 as depth from actions a where a.org_id = ${orgId} and a.id = ${event.parent_action_id}::uuid
          union all
          select ${columns(sql)}, up.depth + 1 from up
            join actions a on a.org_id = ${orgId} and a.id = up.parent_action_id
           where up.depth < ${MAX_DEPTH}
        )
        select * from up order by depth desc`
    : []
  const effects = await rawDescendants(sql, orgId, [event.id])
  const session = event.session_key ? await rawSession(sql, orgId, event.session_key) : []
  return ancestors.length + effects.length + session.length
}
