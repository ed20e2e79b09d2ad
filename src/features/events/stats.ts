/**
 * @module features/events/stats
 * `GET /v1/events/stats` (issue 9): for one window of at most 30 days, the counts by decision and
 * by risk band (SPEC §16.1), an hourly series with every hour present, and the top tools, agents
 * and machines. One statement, one pass over the window: GROUPING SETS computes every breakdown
 * from the same rows, and only the top 10 of each ranking leave the database. Without a machine or
 * agent filter, whole hours come from the hourly counts of ./rollup.ts instead of the rows.
 */
import type { Tx } from '../../infra/db.ts'
import { CLOCK_WINDOW } from '../ingest/events.ts'
import { HOUR_MS, hourOf } from './rollup.ts'
import { riskBandSql } from './view.ts'
import type { EventStats } from './schema.ts'
import type { Static } from '@sinclair/typebox'

export const TOP_N = 10
// As in ./repo.ts: occurred_at bounds imply created_at (partition key) bounds, with an hour of slack.
const RECEIVED_BEFORE = `${Math.ceil(CLOCK_WINDOW.futureMs / HOUR_MS) + 1} hours`
const RECEIVED_AFTER = `${Math.ceil(CLOCK_WINDOW.pastMs / HOUR_MS) + 1} hours`

export interface StatsWindow {
  /** Inclusive. */
  since: Date
  /** Exclusive. */
  until: Date
  machine_id?: string
  agent_key?: string
}

type Stats = Static<typeof EventStats>
type BandCounts = Stats['by_risk_band']

interface StatsRow {
  kind: 'hour' | 'tool' | 'agent' | 'machine'
  decision: string | null
  band: keyof BandCounts | null
  hour: Date | null
  blocked: boolean | null
  key: string | null
  hostname: string | null
  n: number
}

/** The band of a score in SQL, from the one table of cut-offs (./view.ts). */
const BAND_CASE = riskBandSql('a.risk_score')

export async function eventStats(tx: Tx, w: StatsWindow): Promise<Stats> {
  const filtered = w.machine_id !== undefined || w.agent_key !== undefined
  return shape(w, filtered ? await fromActions(tx, w) : await fromRollup(tx, w))
}

/** A filtered window: the machine's or agent's own rows, through their narrow indexes. */
function fromActions(tx: Tx, w: StatsWindow): Promise<StatsRow[]> {
  const since = w.since.toISOString()
  const until = w.until.toISOString()
  return tx<StatsRow[]>`
    with w as (
      select a.decision, a.blocked, a.tool_name, a.agent_key, a.machine_id,
             ${tx.unsafe(BAND_CASE)} as band,
             -- date_bin is arithmetic on the instant; date_trunc with a zone converts every row.
             date_bin('1 hour', a.occurred_at, '2000-01-01T00:00:00Z'::timestamptz) as hour
        from actions a
       where a.occurred_at >= ${since}::text::timestamptz and a.occurred_at < ${until}::text::timestamptz
         and a.created_at >= ${since}::text::timestamptz - ${RECEIVED_BEFORE}::interval
         and a.created_at < ${until}::text::timestamptz + ${RECEIVED_AFTER}::interval
         ${w.machine_id !== undefined ? tx`and a.machine_id = ${w.machine_id}::uuid` : tx``}
         ${w.agent_key !== undefined ? tx`and a.agent_key = ${w.agent_key}` : tx``}
    ), g as (
      select case when grouping(w.hour) = 0 then 'hour' when grouping(w.tool_name) = 0 then 'tool'
                  when grouping(w.agent_key) = 0 then 'agent' else 'machine' end as kind,
             w.decision, w.band, w.hour, w.blocked,
             coalesce(w.tool_name, w.agent_key, w.machine_id::text) as key, w.machine_id, count(*)::int as n
        from w
       -- Four hash tables filled in one pass; the bands are summed from the hourly rows.
       group by grouping sets ((w.hour, w.decision, w.blocked, w.band), (w.tool_name), (w.agent_key), (w.machine_id))
    ), r as (
      select g.*, row_number() over (partition by g.kind order by g.n desc, g.key) as rank
        from g
       where g.kind = 'hour' or g.key is not null
    )
    select r.kind, r.decision, r.band, r.hour, r.blocked, r.key, m.hostname, r.n
      from r
      left join machines m on r.kind = 'machine' and m.org_id = app_current_org() and m.id = r.machine_id
     where r.kind = 'hour' or r.rank <= ${TOP_N}
     order by r.kind, r.rank`
}

/**
 * The org's whole traffic: the whole hours inside the window from the pipeline's hourly counts
 * (./rollup.ts), the partial hours at either edge from the actions themselves.
 */
function fromRollup(tx: Tx, w: StatsWindow): Promise<StatsRow[]> {
  let fullFrom = Math.ceil(w.since.getTime() / HOUR_MS) * HOUR_MS
  let fullTo = hourOf(w.until.getTime())
  if (fullFrom >= fullTo) fullFrom = fullTo = w.since.getTime()
  const [since, until, from, to] = [w.since, w.until, new Date(fullFrom), new Date(fullTo)].map((d) => d.toISOString()) as [
    string,
    string,
    string,
    string,
  ]
  const edge = (lo: string, hi: string) => tx`
    select a.decision, a.blocked, a.tool_name, a.agent_key, a.machine_id, ${tx.unsafe(BAND_CASE)} as band,
           date_bin('1 hour', a.occurred_at, '2000-01-01T00:00:00Z'::timestamptz) as hour
      from actions a
     where a.occurred_at >= ${lo}::text::timestamptz and a.occurred_at < ${hi}::text::timestamptz
       and a.created_at >= ${lo}::text::timestamptz - ${RECEIVED_BEFORE}::interval
       and a.created_at < ${hi}::text::timestamptz + ${RECEIVED_AFTER}::interval`
  return tx<StatsRow[]>`
    with e as (${edge(since, from)} union all ${edge(to, until)}),
    h as (
      select x.hour, x.decision, x.blocked, x.band, x.n from event_hourly x
       where x.n > 0 and x.hour >= ${from}::text::timestamptz and x.hour < ${to}::text::timestamptz
      union all
      select e.hour, coalesce(e.decision, ''), e.blocked, e.band, count(*) from e group by 1, 2, 3, 4
    ), t as (
      select u.dim, u.key, sum(u.n) as n from (
        select x.dim, x.key, x.n from event_hourly_top x
         where x.n > 0 and x.hour >= ${from}::text::timestamptz and x.hour < ${to}::text::timestamptz
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
    -- Compared as text: a tool or agent key is no UUID, and a cast could be tried on it.
    select r.dim, null, null, null, null, r.key, m.hostname, r.n::int, r.rank
      from r left join machines m on r.dim = 'machine' and m.org_id = app_current_org() and m.id::text = r.key
     where r.rank <= ${TOP_N}
     order by kind, rank`
}

function shape(w: StatsWindow, rows: StatsRow[]): Stats {
  const byBand: BandCounts = { none: 0, low: 0, medium: 0, high: 0, critical: 0, unscored: 0 }
  const byDecision: Record<string, number> = {}
  const hours = new Map<number, Stats['hourly'][number]>()
  // Every UTC hour that overlaps [since, until), zeros included: a chart needs no gap-filling.
  for (let h = Math.floor(w.since.getTime() / HOUR_MS) * HOUR_MS; h < w.until.getTime(); h += HOUR_MS) {
    hours.set(h, { hour: new Date(h).toISOString(), total: 0, blocked: 0, by_decision: {} })
  }
  const top: Pick<Stats, 'top_tools' | 'top_agents' | 'top_machines'> = { top_tools: [], top_agents: [], top_machines: [] }
  for (const r of rows) {
    if (r.kind === 'hour') {
      byBand[r.band!] += r.n
      const decision = r.decision ?? 'none'
      byDecision[decision] = (byDecision[decision] ?? 0) + r.n
      const hour = hours.get(r.hour!.getTime())
      if (!hour) continue
      hour.total += r.n
      if (r.blocked) hour.blocked += r.n
      hour.by_decision[decision] = (hour.by_decision[decision] ?? 0) + r.n
    } else if (r.kind === 'tool') top.top_tools.push({ tool_name: r.key!, count: r.n })
    else if (r.kind === 'agent') top.top_agents.push({ agent_id: r.key!, count: r.n })
    else top.top_machines.push({ machine_id: r.key!, hostname: r.hostname, count: r.n })
  }
  return {
    since: w.since.toISOString(),
    until: w.until.toISOString(),
    total: Object.values(byBand).reduce((a, b) => a + b, 0),
    by_decision: byDecision,
    by_risk_band: byBand,
    hourly: [...hours.values()],
    ...top,
  }
}
