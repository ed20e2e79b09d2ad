/**
 * @module features/chain/repo
 * The causal-chain reads over the stored links (issue 9): an event's ancestors and descendants
 * by recursive queries on `actions_org_id` and `actions_org_parent`, and a session's top-level
 * events for the timeline. Every query is bounded in depth and rows, so a long or (impossible by
 * construction, still guarded) cyclic chain can never make a slow scan.
 */
import type { Tx } from '../../infra/db.ts'
import type { Keyset } from '../../http/pagination.ts'
import { EVENT_COLUMNS, eventView, type EventRow } from '../events/view.ts'
import { CLOCK_AHEAD_MS, LINK_HORIZON_MS } from './lookups.ts'
import { MAX_DEPTH, MAX_NODES } from './schema.ts'

/**
 * How much earlier than a linked event's own time the other end can have been stored: a link
 * spans at most LINK_HORIZON_MS of event time, and ingest clamps an event's time to at most
 * 10 minutes after its `created_at`. Bounding `created_at` by it lets Postgres skip the month
 * partitions that cannot hold a parent or a child (run-time pruning, seen in EXPLAIN ANALYZE).
 */
const REACH = `${(LINK_HORIZON_MS + CLOCK_AHEAD_MS) / 1000} seconds`

type Depthed = EventRow & { depth: number }

/** What caused `event`, up to the root-most cause, returned root-most first (at most MAX_DEPTH). */
export async function ancestorsOf(tx: Tx, event: EventRow): Promise<EventRow[]> {
  if (!event.parent_action_id) return []
  const rows = await tx<Depthed[]>`
    with recursive up as (
      select ${EVENT_COLUMNS(tx)}, 1 as depth from actions a
       where a.org_id = app_current_org() and a.id = ${event.parent_action_id}::uuid
         and a.created_at >= ${event.occurred_at}::timestamptz - ${REACH}::interval
      union all
      select ${EVENT_COLUMNS(tx)}, up.depth + 1 from up
        join actions a on a.org_id = app_current_org() and a.id = up.parent_action_id
       where up.depth < ${MAX_DEPTH} and a.created_at >= up.occurred_at - ${REACH}::interval
    )
    select * from up order by depth desc`
  const seen = new Set<string>()
  return rows.filter((r) => !seen.has(r.id) && seen.add(r.id))
}

/**
 * Everything caused by `roots`, breadth first, at most MAX_NODES events and MAX_DEPTH levels.
 * The limit applies while the recursion runs (no ORDER BY on it), so the work is bounded too.
 *
 * The ids travel as `uuid[]`, not `text[]::uuid[]`: postgres.js prepares statements and after
 * five runs Postgres may use the generic plan, where the array cast is a non-LEAKPROOF function
 * that forced RLS will not use as an index condition: every `parent_action_id` of the org was
 * filtered row by row (measured: 1 s instead of 15 ms for a 500-event timeline).
 */
export async function descendantsOf(tx: Tx, roots: EventRow[]): Promise<{ rows: Depthed[]; truncated: boolean }> {
  if (roots.length === 0) return { rows: [], truncated: false }
  const rootIds = roots.map((r) => r.id)
  const earliest = new Date(Math.min(...roots.map((r) => r.occurred_at.getTime())))
  const rows = await tx<Depthed[]>`
    with recursive down as (
      -- The first level alone can be the whole bound (a process with 50,000 file events).
      (select ${EVENT_COLUMNS(tx)}, 1 as depth from actions a
        where a.org_id = app_current_org() and a.parent_action_id = any(${rootIds}::uuid[])
          and a.created_at >= ${earliest}::timestamptz - ${REACH}::interval
        limit ${MAX_NODES + 1})
      union all
      select ${EVENT_COLUMNS(tx)}, d.depth + 1 from down d
        join actions a on a.org_id = app_current_org() and a.parent_action_id = d.id
       where d.depth < ${MAX_DEPTH} and a.created_at >= d.occurred_at - ${REACH}::interval
    )
    select * from down limit ${MAX_NODES + 1}`
  const truncated = rows.length > MAX_NODES || rows.some((r) => r.depth >= MAX_DEPTH)
  const seen = new Set<string>(rootIds)
  const kept = rows.slice(0, MAX_NODES).filter((r) => !seen.has(r.id) && seen.add(r.id))
  return { rows: kept, truncated }
}

/** Rows the timeline's one-scan path reads at most before it falls back to `descendantsOf`. */
const FAMILY_SCAN = 4 * MAX_NODES

/**
 * The family read that finds what a timeline page's roots caused: one index range scan instead of
 * a probe per event (issue 9: ≤ 20 ms for a 500-event session; the recursive walk spent ~10 ms
 * probing every month partition once per event). Every descendant is of the roots' session
 * family, linked, and no more than LINK_HORIZON_MS before its root (only a `tool_use_id` link can
 * precede its parent, and by at most that; a process sorts after the process that started it):
 * so the family's linked events from there on hold them all. `earliest` is the first root's
 * `occurred_key`. When that is more than FAMILY_SCAN rows, the recursive walk answers instead.
 */
function familyScan(tx: Tx, sessionKey: string, earliest: string) {
  const family = sessionKey.split(':sub:')[0]!
  const horizon = `${LINK_HORIZON_MS / 1000} seconds`
  const reach = `${(LINK_HORIZON_MS + CLOCK_AHEAD_MS) / 1000} seconds`
  return tx<EventRow[]>`
    select ${EVENT_COLUMNS(tx)} from actions a
     where a.org_id = app_current_org() and a.chain_root = ${family} and a.parent_action_id is not null
       and a.occurred_at >= ${earliest}::text::timestamptz - ${horizon}::interval
       and a.created_at >= ${earliest}::text::timestamptz - ${reach}::interval
     order by a.occurred_at
     limit ${FAMILY_SCAN + 1}`
}

/** The roots' descendants among `family` (the family scan's rows), with the recursive walk's bounds. */
async function timelineDescendants(
  tx: Tx,
  roots: EventRow[],
  family: EventRow[],
  sessionKey: string,
): Promise<{ rows: EventRow[]; truncated: boolean }> {
  const candidates = family.length > FAMILY_SCAN ? (await descendantsOf(tx, roots)).rows : family
  const children = new Map<string, EventRow[]>()
  for (const r of candidates) {
    const siblings = children.get(r.parent_action_id!)
    if (siblings) siblings.push(r)
    else children.set(r.parent_action_id!, [r])
  }
  // Breadth first from the roots, with the recursive walk's bounds. An event of this session
  // reached through another session (a sub-agent's) is a root of this timeline itself: it is
  // shown there, once, not nested here too.
  const kept: EventRow[] = []
  const seen = new Set(roots.map((r) => r.id))
  let level = roots
  for (let depth = 1; level.length > 0 && depth <= MAX_DEPTH; depth++) {
    const next: EventRow[] = []
    for (const p of level) {
      for (const c of children.get(p.id) ?? []) {
        if (c.session_key === sessionKey && p.session_key !== sessionKey) continue
        if (!seen.has(c.id) && seen.add(c.id)) next.push(c)
      }
    }
    if (kept.length + next.length > MAX_NODES) return { rows: [...kept, ...next].slice(0, MAX_NODES), truncated: true }
    kept.push(...next)
    level = next
    if (depth === MAX_DEPTH && next.some((c) => children.has(c.id))) return { rows: kept, truncated: true }
  }
  return { rows: kept, truncated: false }
}

/** Events of the session one timeline page reads at most while looking for its top-level events. */
const ROOT_SCAN = 2000

/**
 * A page of the session's timeline: its events that have no parent in the same session, oldest
 * first, keyset on (occurred_at, id), and what they caused. An event whose parent is in a
 * sub-agent's (or the parent's) session is top-level here: each session's timeline shows all of
 * its events. At most ROOT_SCAN events are read per page (a review found a 50,000-event session
 * read whole for one root): a page may then hold fewer than `limit` items, and `next` says where
 * the next one goes on.
 */
export async function timelinePage(
  tx: Tx,
  sessionKey: string,
  limit: number,
  after: Keyset | null,
): Promise<{ roots: EventRow[]; descendants: EventRow[]; truncated: boolean; next: Keyset | null }> {
  // The scan reads only what decides a root; the roots' whole rows come after, by one range read.
  type Scanned = Pick<EventRow, 'id' | 'occurred_key' | 'parent_action_id'>
  const rows = await tx<Scanned[]>`
    select a.id, a.occurred_at::text as occurred_key, a.parent_action_id from actions a
     where a.org_id = app_current_org() and a.session_key = ${sessionKey}
       ${after ? tx`and (a.occurred_at, a.id) > (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by a.occurred_at, a.id
     limit ${ROOT_SCAN}`
  const inSession = new Set(rows.map((r) => r.id))
  const elsewhere = [...new Set(rows.map((r) => r.parent_action_id).filter((id): id is string => id !== null))].filter(
    (id) => !inSession.has(id),
  )
  if (elsewhere.length > 0) {
    const found = await tx<{ id: string }[]>`
      select a.id from actions a
       where a.org_id = app_current_org() and a.id = any(${elsewhere}::uuid[]) and a.session_key = ${sessionKey}`
    for (const f of found) inSession.add(f.id)
  }
  const picked: Scanned[] = []
  let next: Keyset | null = null
  for (const r of rows) {
    if (r.parent_action_id !== null && inSession.has(r.parent_action_id)) continue
    if (picked.length === limit) {
      next = keyOf(picked.at(-1)!)
      break
    }
    picked.push(r)
  }
  // Every row read and no more roots: more may follow only when the scan was cut.
  if (picked.length < limit || next === null) next = rows.length === ROOT_SCAN ? keyOf(rows.at(-1)!) : null
  if (picked.length === 0) return { roots: [], descendants: [], truncated: false, next }
  const ids = new Set(picked.map((r) => r.id))
  const first = picked[0]!
  const last = picked.at(-1)!
  // The roots' rows and the family scan need only the picked roots: both leave in one round trip.
  const [roots, family] = await Promise.all([
    tx<EventRow[]>`
      select ${EVENT_COLUMNS(tx)} from actions a
       where a.org_id = app_current_org() and a.session_key = ${sessionKey}
         and (a.occurred_at, a.id) >= (${first.occurred_key}::text::timestamptz, ${first.id}::uuid)
         and (a.occurred_at, a.id) <= (${last.occurred_key}::text::timestamptz, ${last.id}::uuid)
         and a.id = any(${[...ids]}::uuid[])
       order by a.occurred_at, a.id`.execute(),
    familyScan(tx, sessionKey, first.occurred_key).execute(),
  ])
  const { rows: descendants, truncated } = await timelineDescendants(tx, roots, family, sessionKey)
  return { roots, descendants, truncated, next }
}

const keyOf = (r: Pick<EventRow, 'id' | 'occurred_key'>): Keyset => ({ at: r.occurred_key, id: r.id })

export type ChainNodeView = ReturnType<typeof eventView> & { children: ChainNodeView[] }

/** Nests `rows` under `roots` by parent id; every level oldest first (timestamp, then id). */
export function nest(roots: EventRow[], rows: EventRow[]): ChainNodeView[] {
  const nodes = new Map<string, ChainNodeView>()
  const order = (a: EventRow, b: EventRow) => a.occurred_at.getTime() - b.occurred_at.getTime() || (a.id < b.id ? -1 : 1)
  for (const r of [...roots, ...rows]) nodes.set(r.id, Object.assign(eventView(r), { children: [] as ChainNodeView[] }))
  for (const r of [...rows].sort(order)) nodes.get(r.parent_action_id!)?.children.push(nodes.get(r.id)!)
  return roots.map((r) => nodes.get(r.id)!)
}
