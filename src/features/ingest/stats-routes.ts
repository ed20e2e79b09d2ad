/**
 * @module features/ingest/stats-routes
 * `GET /v1/ingest/stats` (issue 9, docs/ingest-stats.md): ingest completeness per UTC day and
 * machine, for the tenant: received, accepted, duplicates, rejected by reason, redactions, drops
 * reported by the edge, stored, and the receive → queryable lag (p50, p99, max). The `read`
 * scope; under the org's RLS; may run on the read replica.
 *
 * Rows are (day, machine) pairs, newest day first, keyset-paginated like every list (issue 9),
 * so a fleet of thousands of machines over 90 days is never one answer. `totals` covers the whole
 * window and filter on every page. The window is whole UTC days: default the 7 days ending today,
 * at most 90 (a longer one is a 400, never a long scan).
 */
import { Type, type Static } from '@sinclair/typebox'
import { badQueryParam, type RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, paginate, PageQuery } from '../../http/pagination.ts'
import { withOrg, type Sql, type Tx } from '../../infra/db.ts'
import { REJECT_CODES } from './events.ts'
import { lagQuantile } from './stats.ts'

const DAY_MS = 86_400_000
/** The window when `since` is absent: this many days ending at `until` (issue 9). */
export const DEFAULT_STATS_DAYS = 7
/** The longest window one request may cover, in days, both ends included (issue 9). */
export const MAX_STATS_DAYS = 90
/** Sort key of the rows without a machine (a UUID no machine has). */
const NO_MACHINE = '00000000-0000-0000-0000-000000000000'

const Day = (description: string) =>
  Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$', description: `${description} A UTC date, \`YYYY-MM-DD\`.` })
const Count = (description: string) => Type.Integer({ minimum: 0, description })

export const IngestStatsQuery = Type.Object(
  {
    ...PageQuery.properties,
    since: Type.Optional(Day(`First day of the window (inclusive). Default: ${DEFAULT_STATS_DAYS - 1} days before \`until\`.`)),
    until: Type.Optional(Day('Last day of the window (inclusive). Default: today.')),
    machine_id: Type.Optional(
      Type.String({ format: 'uuid', description: 'Only this machine (an unknown one, or another org’s, matches nothing).' }),
    ),
  },
  { additionalProperties: false },
)

const Lag = Type.Union(
  [
    Type.Object({
      p50: Type.Integer({ description: 'Median, ms: the upper bound of its histogram bucket, capped by `max`.' }),
      p99: Type.Integer({ description: '99th percentile, ms, computed the same way.' }),
      max: Type.Integer({ description: 'Largest lag seen, ms.' }),
    }),
    Type.Null(),
  ],
  { description: 'Receive → queryable lag of the events stored; null when none was stored.' },
)

const counters = {
  received: Count('Items in the request bodies (each item of each answered request, retries included).'),
  accepted: Count('Items answered `accepted`: new to the ledger when the request was answered.'),
  duplicates: Count('Items answered `duplicate`: already held, or repeated within their request.'),
  rejected: Type.Record(Type.String(), Type.Integer({ minimum: 0 }), {
    description: `Items answered \`rejected\`, by reason: every reason is present (${REJECT_CODES.join(', ')}).`,
  }),
  rejected_total: Count('Sum of `rejected`.'),
  redactions: Count('Secrets replaced by `[REDACTED:kind]` in the accepted items.'),
  edge_dropped: Count('Events the edge reported dropping before sending (`dropped_events` on batches and heartbeats).'),
  stored: Count(
    'Events the pipeline stored (counted on the day they were received): `accepted` less late duplicates, once processed.',
  ),
  lag_ms: Lag,
}
const Counters = Type.Object(counters, { description: 'The whole window and filter (every page, not only this one).' })

export const IngestStatsRow = Type.Object({
  day: Type.String({ description: 'UTC day, `YYYY-MM-DD` (of the server receiving the items).' }),
  machine_id: Type.Union([Type.String({ format: 'uuid' }), Type.Null()], {
    description: 'The machine (a machine-bound service token or the machines API); null for other credentials.',
  }),
  hostname: Type.Union([Type.String(), Type.Null()], { description: 'The machine’s hostname as registered.' }),
  ...counters,
})

export const IngestStats = Type.Object({
  since: Type.String({ description: 'First day of the window (inclusive).' }),
  until: Type.String({ description: 'Last day of the window (inclusive).' }),
  days: Type.Array(IngestStatsRow, {
    description: 'One row per (day, machine) with any activity: newest day first, then by machine id descending.',
  }),
  totals: Counters,
  next_cursor: Type.Union([Type.String(), Type.Null()], {
    description: 'Pass as `cursor` (with the same filters) for the next page; null on the last page.',
  }),
})

export function mountIngestStats(routes: RouteRegistry, deps: { sql: Sql }): void {
  const { sql } = deps
  routes.add(
    {
      method: 'get',
      path: '/v1/ingest/stats',
      operationId: 'getIngestStats',
      summary: `Ingest completeness per UTC day and machine (default the last ${DEFAULT_STATS_DAYS} days, at most ${MAX_STATS_DAYS})`,
      tags: ['ingest'],
      permission: 'read',
      query: IngestStatsQuery,
      responses: {
        200: { description: 'A page of (day, machine) rows and the totals of the window', schema: IngestStats },
        400: { description: 'An unknown or malformed parameter, `since` after `until`, a window over 90 days, or a bad cursor' },
      },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const after = decodeCursor(query.cursor)
      // The registry's conversion reads `5.5` as 5: a page size is taken only as typed.
      const rawLimit = c.req.query('limit')
      if (rawLimit !== undefined && !/^\d{1,9}$/.test(rawLimit)) throw badQueryParam('limit', 'must be an integer')
      const { since, until } = dayWindow(query.since, query.until)
      const filter = { since, until, machineId: query.machine_id?.toLowerCase() ?? null }
      const { rows, totals } = await withOrg(sql, c.get('principal').orgId, async (tx) => ({
        rows: await statsRows(tx, filter, limit + 1, after && { day: after.at.slice(0, 10), machine: after.id }),
        totals: await statsTotals(tx, filter),
      }))
      const { page, next } = paginate(rows, limit, (r) => `${r.day} 00:00:00+00`)
      const body: Static<typeof IngestStats> = {
        since,
        until,
        days: page.map((r) => ({ day: r.day, machine_id: r.machine_id, hostname: r.hostname, ...countersView(r) })),
        totals: countersView(totals),
        next_cursor: next,
      }
      return c.json(body)
    },
  )
}

/** A real calendar day (`2026-02-30` is not), as UTC midnight ms. */
function dayMs(name: string, value: string): number {
  const ms = Date.parse(`${value}T00:00:00Z`)
  if (Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 10) !== value) throw badQueryParam(name, 'must be a calendar date')
  // The same range as every date-time parameter: Postgres refuses year 0, and nothing predates 1970.
  const year = Number(value.slice(0, 4))
  if (year < 1970 || year > 9999) throw badQueryParam(name, 'must be a date between 1970 and 9999')
  return ms
}

const isoDay = (ms: number) => new Date(ms).toISOString().slice(0, 10)

/** The window as inclusive days: defaults applied, order and length checked. */
function dayWindow(rawSince: string | undefined, rawUntil: string | undefined): { since: string; until: string } {
  const until = rawUntil === undefined ? Date.parse(`${isoDay(Date.now())}T00:00:00Z`) : dayMs('until', rawUntil)
  const since = rawSince === undefined ? until - (DEFAULT_STATS_DAYS - 1) * DAY_MS : dayMs('since', rawSince)
  if (since > until) throw badQueryParam('since', 'must not be after until (default today)')
  if ((until - since) / DAY_MS + 1 > MAX_STATS_DAYS) {
    throw badQueryParam('since', `the window from since to until (default today) may cover at most ${MAX_STATS_DAYS} days`)
  }
  return { since: isoDay(since), until: isoDay(until) }
}

interface Filter {
  since: string
  until: string
  machineId: string | null
}

/** Sums as Postgres returns them: bigint as text, arrays of bigint as text. */
interface Sums {
  received: string
  accepted: string
  duplicates: string
  rejected: Record<string, string | number>
  redactions: string
  edge_dropped: string
  stored: string
  lag: string[]
  lag_max: string | null
}

interface Row extends Sums {
  id: string
  day: string
  machine_id: string | null
  hostname: string | null
}

// Every sum over the shards (and days, machines) of the selection; the aggregates are sql/0018's.
const SUMS = (tx: Tx) => tx`
  sum(s.received)::bigint as received, sum(s.accepted)::bigint as accepted, sum(s.duplicates)::bigint as duplicates,
  quint_sum_counts(s.rejected) as rejected, sum(s.redactions)::bigint as redactions,
  sum(s.edge_dropped)::bigint as edge_dropped, sum(s.stored)::bigint as stored,
  quint_sum_buckets(s.lag_buckets)::text[] as lag, max(s.lag_max_ms) as lag_max`

const WHERE = (tx: Tx, f: Filter) => tx`
  s.day between ${f.since}::date and ${f.until}::date
  ${f.machineId === null ? tx`` : tx`and s.machine_id = ${f.machineId}::uuid`}`

function statsRows(tx: Tx, f: Filter, limit: number, after: { day: string; machine: string } | null): Promise<Row[]> {
  return tx<Row[]>`
    select g.*, coalesce(g.machine_id, ${NO_MACHINE}::uuid)::text as id, m.hostname
      from (select to_char(s.day, 'YYYY-MM-DD') as day, s.machine_id, ${SUMS(tx)}
              from ingest_stats s
             where ${WHERE(tx, f)}
               ${after ? tx`and (s.day, coalesce(s.machine_id, ${NO_MACHINE}::uuid)) < (${after.day}::date, ${after.machine}::uuid)` : tx``}
             group by s.day, s.machine_id
             order by s.day desc, coalesce(s.machine_id, ${NO_MACHINE}::uuid) desc
             limit ${limit}) g
      left join machines m on m.id = g.machine_id
     order by g.day desc, coalesce(g.machine_id, ${NO_MACHINE}::uuid) desc`
}

async function statsTotals(tx: Tx, f: Filter): Promise<Sums> {
  const [row] = await tx<Sums[]>`select ${SUMS(tx)} from ingest_stats s where ${WHERE(tx, f)}`
  return row!
}

function countersView(s: Sums): Static<typeof Counters> {
  const rejected: Record<string, number> = Object.fromEntries(REJECT_CODES.map((code) => [code, 0]))
  for (const [code, n] of Object.entries(s.rejected ?? {})) rejected[code] = Number(n)
  const buckets = (s.lag ?? []).map(Number)
  const max = s.lag_max === null ? null : Number(s.lag_max)
  const p50 = lagQuantile(buckets, max, 0.5)
  const p99 = lagQuantile(buckets, max, 0.99)
  return {
    received: Number(s.received ?? 0),
    accepted: Number(s.accepted ?? 0),
    duplicates: Number(s.duplicates ?? 0),
    rejected,
    rejected_total: Object.values(rejected).reduce((a, b) => a + b, 0),
    redactions: Number(s.redactions ?? 0),
    edge_dropped: Number(s.edge_dropped ?? 0),
    stored: Number(s.stored ?? 0),
    lag_ms: p50 === null || p99 === null || max === null ? null : { p50, p99, max },
  }
}
