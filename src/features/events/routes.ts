/**
 * @module features/events/routes
 * The events read API (issue 9, docs/events.md): `GET /v1/events` (filters of SPEC §7.4 and ours,
 * newest first, keyset pages), `GET /v1/events/stats` (one window's breakdowns) and
 * `GET /v1/events/{id}`. All need the `read` scope and run under the org's RLS. A malformed id
 * answers 404 like an unknown one or another org's (decided for issue 9, the same on every route).
 *
 * No request may turn into an unbounded scan (issue 9: "a window or page larger than allowed
 * answers 400, never a slow scan"). Agent, session, machine and tool each lead an index, so a
 * query naming one reads only that one's events. Without one, a filter no index serves (decision,
 * risk, `q`…) would read the org's whole history when it matches nothing, so such a query is
 * confined to a window: by default the 24 hours before `until`, at most 30 days (7 with `q`, which
 * reads every row of its window).
 */
import { NotFoundError } from '../../errors.ts'
import { isUuid, queryOrg, withOrg, type Sql } from '../../infra/db.ts'
import { badQueryParam, type RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, paginate } from '../../http/pagination.ts'
import { getEvent, listEvents, type EventFilters } from './repo.ts'
import { EventIdParams, EventList, EventListQuery, EventStats, EventStatsQuery } from './schema.ts'
import { eventStats } from './stats.ts'
import { eventView, EventView } from './view.ts'
import type { Static } from '@sinclair/typebox'

const DAY_MS = 86_400_000
/** The longest window a stats request or an unanchored filtered list may cover (issue 9). */
export const MAX_WINDOW_DAYS = 30
/** `q` reads every row of its window (a substring matches no index): a shorter longest window. */
export const MAX_Q_WINDOW_DAYS = 7
/** The longest stats window with a machine or agent filter (those read rows, not hourly counts). */
export const MAX_FILTERED_STATS_DAYS = 7
/** The window a stats request or an unanchored filtered list gets when `since` is absent. */
export const DEFAULT_WINDOW_HOURS = 24

/** Filters that lead an index (sql/0017): a query naming one never reads past that one's events. */
const ANCHORS = ['agent_id', 'session_id', 'machine_id', 'tool_name'] as const
/** Filters no index leads: alone, one matching nothing would read the whole history. */
const SCANNING = ['action_type', 'decision', 'platform', 'blocked', 'redacted', 'risk_min', 'risk_max', 'q'] as const

export function mountEvents(routes: RouteRegistry, deps: { sql: Sql }): void {
  const { sql } = deps
  const tags = ['events']

  // Registered before `/v1/events/:id`: Hono runs the first matching route, and "stats" would
  // otherwise be taken for an id.
  routes.add(
    {
      method: 'get',
      path: '/v1/events/stats',
      operationId: 'getEventStats',
      summary:
        'Counts for a window (default the last 24 h, at most 30 days): by decision, risk band, hour; top tools, agents, machines',
      tags,
      permission: 'read',
      query: EventStatsQuery,
      responses: {
        200: { description: 'The window and its counts', schema: EventStats },
        400: { description: 'A malformed parameter, `since` after `until`, or a window over 30 days' },
      },
    },
    async (c, { query }) => {
      // Filtered by machine or agent, the stats read the rows themselves (the hourly counts are
      // the org's): a shorter window bounds that read.
      const filtered = query.machine_id !== undefined || query.agent_id !== undefined
      const { since, until } = bounded(range(query.since, query.until), filtered ? MAX_FILTERED_STATS_DAYS : MAX_WINDOW_DAYS)
      const stats = await withOrg(sql, c.get('principal').orgId, (tx) =>
        eventStats(tx, { since, until, machine_id: query.machine_id?.toLowerCase(), agent_key: query.agent_id }),
      )
      return c.json(stats)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/events',
      operationId: 'listEvents',
      summary:
        'List events, newest first, with filters (agent, session, machine, tool, action type, decision, risk, time, text…)',
      tags,
      permission: 'read',
      query: EventListQuery,
      responses: {
        200: { description: 'A page of events', schema: EventList },
        400: { description: 'An unknown or malformed parameter, a reversed range, a window over 30 days, or a bad cursor' },
      },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const after = decodeCursor(query.cursor)
      if (query.risk_min !== undefined && query.risk_max !== undefined && query.risk_min > query.risk_max) {
        throw badQueryParam('risk_min', 'must not be greater than risk_max')
      }
      const scanning = SCANNING.some((k) => query[k] !== undefined)
      const asked = range(query.since, query.until)
      // An absent `until` stays open (events may be stamped up to 10 minutes ahead); only the
      // window's length is measured against now.
      const maxDays = query.q === undefined ? MAX_WINDOW_DAYS : MAX_Q_WINDOW_DAYS
      // Only a session bounds how many rows an index-leading filter reads: an agent, a machine or
      // a tool can match most of an org's history, so a filter no index leads beside them still
      // needs the window (a review measured 0.5 s for a decision nothing had, on one agent).
      const since = scanning && query.session_id === undefined ? bounded(asked, maxDays).since : asked.since
      const until = asked.until
      const filters: EventFilters = {
        agent_key: query.agent_id,
        session: query.session_id,
        machine_id: query.machine_id?.toLowerCase(),
        tool_name: query.tool_name,
        action_type: query.action_type,
        decision: query.decision,
        platform: query.platform,
        blocked: query.blocked,
        redacted: query.redacted,
        risk_min: query.risk_min,
        risk_max: query.risk_max,
        since: since?.toISOString(),
        until: until?.toISOString(),
        q: query.q,
      }
      // One index-leading filter: its index is the plan whatever the values (see OrgTxOptions).
      const genericPlans = ANCHORS.filter((k) => query[k] !== undefined).length === 1 && query.q === undefined
      const rows = await queryOrg(sql, c.get('principal').orgId, (tx) => listEvents(tx, filters, limit + 1, after), {
        genericPlans,
      })
      const { page, next } = paginate(rows, limit, (r) => r.occurred_key)
      return c.json({ events: page.map(eventView), next_cursor: next } satisfies Static<typeof EventList>)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/events/:id',
      operationId: 'getEvent',
      summary: 'Get one event by its id',
      tags,
      permission: 'read',
      params: EventIdParams,
      responses: {
        200: { description: 'The event', schema: EventView },
        404: { description: 'No event with that id in this organization (a malformed id included)' },
      },
    },
    async (c, { params }) => {
      const id = params.id.toLowerCase()
      if (!isUuid(id)) throw eventNotFound()
      const row = await withOrg(sql, c.get('principal').orgId, (tx) => getEvent(tx, id))
      if (!row) throw eventNotFound()
      return c.json(eventView(row))
    },
  )
}

const eventNotFound = () => new NotFoundError('No event with that id in this organization.')

/** `since` and `until` as instants; a reversed range is refused (`since` equal to `until` is empty). */
function range(rawSince: string | undefined, rawUntil: string | undefined): { since: Date | null; until: Date | null } {
  const since = rawSince === undefined ? null : new Date(rawSince)
  const until = rawUntil === undefined ? null : new Date(rawUntil)
  if (since && until && since.getTime() > until.getTime()) throw badQueryParam('since', 'must not be after until')
  return { since, until }
}

/**
 * A window that must be bounded (stats, or a list no index bounds): `until` defaults to now,
 * `since` to 24 hours before it, and the window may not pass `maxDays`.
 */
function bounded(r: { since: Date | null; until: Date | null }, maxDays: number): { since: Date; until: Date } {
  const until = r.until ?? new Date()
  const since = r.since ?? new Date(until.getTime() - DEFAULT_WINDOW_HOURS * 3_600_000)
  if (since.getTime() > until.getTime()) throw badQueryParam('since', 'must not be after until (default now)')
  if (until.getTime() - since.getTime() > maxDays * DAY_MS) {
    throw badQueryParam('since', `the window from since to until (default now) may cover at most ${maxDays} days here`)
  }
  return { since, until }
}
