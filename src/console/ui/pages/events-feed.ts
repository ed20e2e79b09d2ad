/**
 * @module console/ui/pages/events-feed
 * The rows of the Events page: the newest page of `GET /v1/events` for the filters, older pages on
 * demand (the API's cursor), and new events from the live stream merged in, in the API's order
 * (newest `timestamp` first, then id).
 *
 * - At most `MAX_ROWS` rows are kept: past it the oldest are dropped (the page says so), so the
 *   table stays smooth through a busy night.
 * - Live events are merged in batches (every `FLUSH_MS`), not one render per event, each at its
 *   place by timestamp: an event may be stamped before the newest row shown (a delayed upload).
 * - Paused, arrivals are held (up to `MAX_ROWS`) and merged on resume.
 * - A `gap` (the stream skipped a burst), a `ready` (a reconnection), or more held than kept while
 *   paused: the list is replaced by a fresh first page and its cursor (`refetch`), keeping what
 *   arrived live since the refetch began. Never anchored on timestamps: a burst's events may be
 *   stamped before anything shown (up to 30 days back), so no row shown says where the hole ends.
 * - `complete` (the page says "That is every event") only when the API's last page had no
 *   `next_cursor` and no `gap` came since the list's first page was asked for.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import { api } from '../api/client.ts'
import { apiQuery, matches, type Filters } from './events-filters.tsx'
import type { EventView } from './events-parts.tsx'

export const MAX_ROWS = 10_000
const PAGE = 200
const FLUSH_MS = 250
const FRESH_MS = 2500
/** How long the first page waits for the stream to open before it is read anyway. */
const READY_WAIT_MS = 1500

export interface Feed {
  rows: EventView[]
  /** Cursor of the next older page; null when there is none. */
  cursor: string | null
  /**
   * Every event the filters match is shown: the API's last page had no `next_cursor`, no `gap`
   * (or reconnection) came since the list's first page was asked for, and none was dropped.
   */
  complete: boolean
  loading: boolean
  loadingOlder: boolean
  /** A refetch is replacing the list: "Load older" waits for its cursor. */
  refreshing: boolean
  error: Error | null
  /** Rows dropped to stay under MAX_ROWS (older events exist beyond the table). */
  dropped: number
  /** Ids that arrived live a moment ago, to highlight. */
  fresh: ReadonlySet<string>
  /** Events held while paused. */
  held: number
}

const EMPTY: Feed = {
  rows: [],
  cursor: null,
  complete: false,
  loading: true,
  loadingOlder: false,
  refreshing: false,
  error: null,
  dropped: 0,
  fresh: new Set(),
  held: 0,
}

/** The API's order: newest first by timestamp, then id. */
const newerFirst = (a: EventView, b: EventView) =>
  a.timestamp < b.timestamp ? 1 : a.timestamp > b.timestamp ? -1 : a.id < b.id ? 1 : a.id > b.id ? -1 : 0

/** Merges two newest-first lists, without duplicates. */
function merge(rows: readonly EventView[], add: readonly EventView[]): EventView[] {
  const seen = new Set(rows.map((r) => r.id))
  const fresh = add.filter((e) => !seen.has(e.id) && (seen.add(e.id), true)).sort(newerFirst)
  if (fresh.length === 0) return rows as EventView[]
  const out: EventView[] = []
  let i = 0
  let j = 0
  while (i < rows.length || j < fresh.length) {
    if (j >= fresh.length || (i < rows.length && newerFirst(rows[i]!, fresh[j]!) <= 0)) out.push(rows[i++]!)
    else out.push(fresh[j++]!)
  }
  return out
}

export interface FeedControls {
  feed: Feed
  loadOlder(): void
  /** For the live stream's handler. */
  onLive(type: string, data: unknown): void
  paused: boolean
  setPaused(p: boolean): void
  reload(): void
}

export function useEventFeed(filters: Filters, key: string, live: boolean, sessionKey: string | null): FeedControls {
  const [feed, setFeed] = useState<Feed>(EMPTY)
  const [paused, setPausedState] = useState(false)
  const [generation, setGeneration] = useState(0)
  const current = useRef(feed)
  current.current = feed
  const queue = useRef<EventView[]>([])
  const held = useRef<EventView[]>([])
  const overflow = useRef(false)
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null)
  const abortTop = useRef<AbortController | null>(null)
  const abortOlder = useRef<AbortController | null>(null)
  const state = useRef({ filters, live, sessionKey, paused })
  state.current = { filters, live, sessionKey, paused }

  const fetchPage = (cursor: string | null, signal: AbortSignal) =>
    api.get('/v1/events', { query: { ...apiQuery(state.current.filters), limit: PAGE, cursor: cursor ?? undefined }, signal })

  // Refetching the list: its first load, and after a `gap` (the stream skipped a burst), a
  // reconnection's `ready`, or more held than kept while paused. The API's first page and its
  // cursor replace what was shown (Load older continues from there), with the live events that
  // arrived since the refetch began merged in (they may have committed after the page was read).
  // One refetch at a time; asked for during one, it runs once more after it.
  const refetching = useRef(false)
  const again = useRef(false)
  /** The stream said `ready` at least once; the first page waits for it (see the load effect). */
  const connected = useRef(false)
  const awaitingReady = useRef(false)
  const readyTimer = useRef<ReturnType<typeof setTimeout> | null>(null)
  /** Live events merged while a refetch runs, to keep over its page. */
  const arrived = useRef<EventView[]>([])
  /** `gap`s (and reconnections) heard so far; the list's first page was asked for at `listAsOf`. */
  const gaps = useRef(0)
  const listAsOf = useRef(0)
  const refetch = async () => {
    if (refetching.current) {
      again.current = true
      return
    }
    refetching.current = true
    const ctl = new AbortController()
    abortTop.current = ctl
    setFeed((f) => (f.refreshing ? f : { ...f, refreshing: true }))
    try {
      do {
        again.current = false
        arrived.current = []
        const asOf = gaps.current
        const page = await fetchPage(null, ctl.signal)
        if (ctl.signal.aborted) return
        const live = arrived.current
        arrived.current = []
        // A page on its way for the list replaced would continue it from a cursor it no longer has.
        abortOlder.current?.abort()
        listAsOf.current = asOf
        setFeed((f) =>
          cap({
            ...f,
            loading: false,
            loadingOlder: false,
            error: null,
            rows: merge(page.events, reachable(live, page.events, page.next_cursor)),
            cursor: page.next_cursor,
            complete: page.next_cursor === null && gaps.current === asOf,
            dropped: 0,
          }),
        )
      } while (again.current && !ctl.signal.aborted)
    } catch (error) {
      if (!ctl.signal.aborted) setFeed((f) => ({ ...f, loading: false, error: error as Error }))
    } finally {
      if (abortTop.current === ctl) {
        refetching.current = false
        setFeed((f) => (f.refreshing ? { ...f, refreshing: false } : f))
      }
    }
  }

  /** Something was not sent: the list may have a hole until the refetch (or resume) replaces it. */
  const missed = () => {
    gaps.current++
    setFeed((f) => (f.complete ? { ...f, complete: false } : f))
  }

  useEffect(() => {
    queue.current = []
    held.current = []
    overflow.current = false
    abortTop.current?.abort()
    abortOlder.current?.abort()
    refetching.current = false
    again.current = false
    arrived.current = []
    current.current = EMPTY
    setFeed(EMPTY)
    // The first page is read once the stream is open (its `ready`), so that nothing commits
    // between the two unseen, and a `ready` does not replace the list under a first "Load older".
    // A stream already open (new filters) or slow to open (offline) does not hold it up.
    if (connected.current) void refetch()
    else {
      awaitingReady.current = true
      readyTimer.current = setTimeout(() => {
        awaitingReady.current = false
        void refetch()
      }, READY_WAIT_MS)
    }
    return () => {
      if (readyTimer.current) clearTimeout(readyTimer.current)
      abortTop.current?.abort()
      abortOlder.current?.abort()
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, generation])

  const loadOlder = () => {
    const f = current.current
    // During a refetch the cursor is about to be replaced: a page read from it would be thrown away.
    if (!f.cursor || f.loadingOlder || refetching.current) return
    const ctl = new AbortController()
    abortOlder.current = ctl
    setFeed((x) => ({ ...x, loadingOlder: true, error: null }))
    fetchPage(f.cursor, ctl.signal).then(
      (page) =>
        !ctl.signal.aborted &&
        setFeed((x) =>
          // The list was replaced meanwhile (a refetch): this page continued the old one.
          x.cursor !== f.cursor
            ? { ...x, loadingOlder: false }
            : cap({
                ...x,
                loadingOlder: false,
                rows: merge(x.rows, page.events),
                cursor: page.next_cursor,
                complete: page.next_cursor === null && gaps.current === listAsOf.current,
              }),
        ),
      (error: Error) => !ctl.signal.aborted && setFeed((x) => ({ ...x, loadingOlder: false, error })),
    )
  }

  const flush = () => {
    timer.current = null
    const batch = queue.current
    queue.current = []
    if (batch.length === 0) return
    if (state.current.paused) {
      held.current.push(...batch)
      if (held.current.length > MAX_ROWS) {
        held.current = []
        if (!overflow.current) missed()
        overflow.current = true
      }
      setFeed((f) => ({ ...f, held: overflow.current ? MAX_ROWS : held.current.length }))
      return
    }
    if (refetching.current) arrived.current.push(...batch)
    setFeed((f) => {
      const add = reachable(batch, f.rows, f.cursor)
      const rows = merge(f.rows, add)
      const fresh = new Set(f.fresh)
      for (const e of add) fresh.add(e.id)
      return cap({ ...f, rows, fresh })
    })
    const ids = batch.map((e) => e.id)
    setTimeout(
      () =>
        setFeed((f) => {
          const fresh = new Set(f.fresh)
          for (const id of ids) fresh.delete(id)
          return { ...f, fresh }
        }),
      FRESH_MS,
    )
  }

  const onLive = (type: string, data: unknown) => {
    // `ready` opens every (re)connection: what the stream did not carry meanwhile is fetched
    // (docs/live.md: no resume, a console refetches on `ready` and on `gap`).
    if (type === 'ready') connected.current = true
    if (type === 'ready' && awaitingReady.current) {
      awaitingReady.current = false
      if (readyTimer.current) clearTimeout(readyTimer.current)
      void refetch()
      return
    }
    if (type === 'gap' || type === 'ready') {
      missed()
      if (state.current.paused) overflow.current = true
      else void refetch()
      return
    }
    if (type !== 'event' || !state.current.live) return
    const e = data as EventView
    if (!e || typeof e.id !== 'string' || !matches(e, state.current.filters, state.current.sessionKey)) return
    queue.current.push(e)
    timer.current ??= setTimeout(flush, FLUSH_MS)
  }

  const setPaused = (p: boolean) => {
    state.current.paused = p
    setPausedState(p)
    if (p) return
    const back = held.current
    held.current = []
    setFeed((f) => ({ ...f, held: 0 }))
    if (overflow.current) {
      overflow.current = false
      void refetch()
    } else if (back.length) {
      queue.current.push(...back)
      flush()
    }
  }

  useEffect(
    () => () => {
      if (timer.current) clearTimeout(timer.current)
    },
    [],
  )

  return {
    feed,
    loadOlder,
    onLive,
    paused,
    setPaused,
    reload: () => setGeneration((g) => g + 1),
  }
}

/**
 * The live events that belong in a list: all when it is complete down to its end, else those newer
 * than its last row. An older one lies among the pages not loaded yet: it comes with "Load older"
 * (shown now, it would sit below events not loaded, a hole).
 */
function reachable(live: readonly EventView[], rows: readonly EventView[], cursor: string | null): EventView[] {
  const last = rows[rows.length - 1]
  return cursor === null || !last ? [...live] : live.filter((e) => newerFirst(e, last) < 0)
}

/** Keeps the newest MAX_ROWS; the older ones can no longer be paged to from here. */
function cap(f: Feed): Feed {
  if (f.rows.length <= MAX_ROWS) return f
  return {
    ...f,
    dropped: f.dropped + f.rows.length - MAX_ROWS,
    rows: f.rows.slice(0, MAX_ROWS),
    cursor: null,
    complete: false,
  }
}
