/**
 * @module features/events/repo
 * SQL for the events read API (issue 9). Every function runs inside `withOrg`: RLS scopes each
 * statement to the transaction's org, so another org's event is simply not found.
 *
 * Speed comes from two things. Each list is one keyset scan, newest first on `(occurred_at, id)`,
 * over an index of sql/0017 that leads with the filter (agent, machine, tool, session) or with
 * time alone. And every time bound (since, until, the cursor) is turned into a bound on
 * `created_at`, the partition key, so Postgres opens only the month partitions that can hold a
 * match: `occurred_at` is clamped at ingest to [received − 30 days, received + 10 minutes]
 * (CLOCK_WINDOW), so an event that happened at T was received in [T − 10 minutes, T + 30 days].
 */
import { isUuid, type Statement, type Tx } from '../../infra/db.ts'
import type { Keyset } from '../../http/pagination.ts'
import { CLOCK_WINDOW } from '../ingest/events.ts'
import { EVENT_COLUMNS, type EventRow } from './view.ts'

/** The filters of `GET /v1/events`, resolved (a session UUID already turned into its key). */
export interface EventFilters {
  agent_key?: string
  /** A session's UUID or the key its events carry (SPEC §10 names sessions by UUID). */
  session?: string
  machine_id?: string
  tool_name?: string
  action_type?: string
  decision?: string
  platform?: string
  blocked?: boolean
  redacted?: boolean
  risk_min?: number
  risk_max?: number
  /** Inclusive, ISO 8601. */
  since?: string
  /** Exclusive, ISO 8601. */
  until?: string
  q?: string
}

// The clamp in hours, with an hour of slack on each side: the receive time is stamped a moment
// after the clamp is computed, and a month partition is far coarser than an hour anyway.
const RECEIVED_BEFORE = `${Math.ceil(CLOCK_WINDOW.futureMs / 3_600_000) + 1} hours`
const RECEIVED_AFTER = `${Math.ceil(CLOCK_WINDOW.pastMs / 3_600_000) + 1} hours`

/** `q` as an ILIKE pattern: `%`, `_` and the escape character itself match literally. */
export function substringPattern(q: string): string {
  return `%${q.replace(/[\\%_]/g, '\\$&')}%`
}

/** The partition bounds that `occurred_at` bounds imply (see the module comment). */
function receivedBounds(tx: Tx, f: { since?: string; until?: string }, after: Keyset | null) {
  return tx`
    ${f.since !== undefined ? tx`and a.created_at >= ${f.since}::text::timestamptz - ${RECEIVED_BEFORE}::interval` : tx``}
    ${f.until !== undefined ? tx`and a.created_at < ${f.until}::text::timestamptz + ${RECEIVED_AFTER}::interval` : tx``}
    ${after ? tx`and a.created_at <= ${after.at}::text::timestamptz + ${RECEIVED_AFTER}::interval` : tx``}`
}

/** Newest first, keyset on (occurred_at, id); `limit` rows (callers ask one more than a page). */
export function listEvents(tx: Tx, f: EventFilters, limit: number, after: Keyset | null): Statement<EventRow[]> {
  const pattern = f.q === undefined ? null : substringPattern(f.q)
  return tx<EventRow[]>`
    select ${EVENT_COLUMNS(tx)} from actions a
     where true
       ${f.agent_key !== undefined ? tx`and a.agent_key = ${f.agent_key}` : tx``}
       ${f.session !== undefined ? tx`and a.session_key = ${sessionKeySql(tx, f.session)}` : tx``}
       ${f.machine_id !== undefined ? tx`and a.machine_id = ${f.machine_id}::uuid` : tx``}
       ${f.tool_name !== undefined ? tx`and a.tool_name = ${f.tool_name}` : tx``}
       ${f.action_type !== undefined ? tx`and a.action_type = ${f.action_type}` : tx``}
       ${f.decision !== undefined ? tx`and a.decision = ${f.decision}` : tx``}
       ${f.platform !== undefined ? tx`and a.platform = ${f.platform}` : tx``}
       ${f.blocked !== undefined ? tx`and a.blocked = ${f.blocked}` : tx``}
       ${f.redacted !== undefined ? tx`and a.redacted = ${f.redacted}` : tx``}
       ${f.risk_min !== undefined ? tx`and a.risk_score >= ${f.risk_min}` : tx``}
       ${f.risk_max !== undefined ? tx`and a.risk_score <= ${f.risk_max}` : tx``}
       ${pattern !== null ? tx`and (a.tool_name ilike ${pattern} or a.action ilike ${pattern})` : tx``}
       ${f.since !== undefined ? tx`and a.occurred_at >= ${f.since}::text::timestamptz` : tx``}
       ${f.until !== undefined ? tx`and a.occurred_at < ${f.until}::text::timestamptz` : tx``}
       ${after ? tx`and (a.occurred_at, a.id) < (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
       ${receivedBounds(tx, f, after)}
     order by a.occurred_at desc, a.id desc
     limit ${limit}`
}

/**
 * One event by its action id; null when this org has none (the id is a checked UUID). The org is
 * named as well as enforced by RLS, so the lookup is an index scan on `actions_org_id` whatever plan
 * a prepared statement settles on.
 */
export async function getEvent(tx: Tx, id: string): Promise<EventRow | null> {
  const [row] = await tx<EventRow[]>`
    select ${EVENT_COLUMNS(tx)} from actions a where a.org_id = app_current_org() and a.id = ${id}::uuid limit 1`
  return row ?? null
}

/**
 * The session key events carry for `session_id`, resolved inside the statement (one round trip):
 * a session's UUID through `sessions`, anything else taken as a key, since events may be stored
 * before the sessions consumer has seen them. As `findSession` resolves it: an id first.
 */
function sessionKeySql(tx: Tx, idOrKey: string) {
  const id = idOrKey.toLowerCase()
  return isUuid(id) ? tx`coalesce((select s.session_key from sessions s where s.id = ${id}::uuid), ${idOrKey})` : tx`${idOrKey}`
}
