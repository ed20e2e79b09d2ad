/**
 * @module console/ui/hooks
 * Loading what a page shows: one hook for a request's state, one for the live stream.
 */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks'
import { ApiError } from './api/client.ts'
import { subscribe, type LiveState } from './live.ts'

export interface Loaded<T> {
  data: T | undefined
  error: ApiError | Error | null
  loading: boolean
  reload(): void
}

/** Runs `load` when `deps` change (aborting the previous run) and on `reload()`. */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: readonly unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data: T | undefined; error: Error | null; loading: boolean }>({
    data: undefined,
    error: null,
    loading: true,
  })
  const [tick, setTick] = useState(0)
  useEffect(() => {
    const abort = new AbortController()
    setState((s) => ({ ...s, loading: true }))
    load(abort.signal).then(
      (data) => !abort.signal.aborted && setState({ data, error: null, loading: false }),
      (error: Error) => !abort.signal.aborted && setState((s) => ({ data: s.data, error, loading: false })),
    )
    return () => abort.abort()
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick])
  const reload = useCallback(() => setTick((t) => t + 1), [])
  return { ...state, reload }
}

/**
 * The console's live stream (`GET /v1/live`, docs/live.md) for the given topics. Handlers may
 * change between renders without reconnecting.
 */
export function useLive(topics: string, onEvent: (type: string, data: unknown) => void): LiveState {
  const [state, setState] = useState<LiveState>('connecting')
  const handler = useRef(onEvent)
  handler.current = onEvent
  useEffect(
    () =>
      subscribe(`/v1/live?topics=${encodeURIComponent(topics)}`, {
        onEvent: (type, data) => handler.current(type, data),
        onState: (s) => setState(s),
      }),
    [topics],
  )
  return state
}

/**
 * Refreshes a view from the API when the live stream says something changed: a burst of events is
 * one `refresh` after `delayMs`, and a stream that comes back after a drop refreshes once (what
 * happened meanwhile is not replayed: docs/live.md). `accept` picks the events that matter
 * (default: all but `ready`, which opens every connection).
 */
export function useLiveRefresh(
  topics: string,
  refresh: () => void,
  o: { delayMs?: number; accept?: (type: string) => boolean } = {},
): LiveState {
  const delayMs = o.delayMs ?? 1000
  const pending = useRef<ReturnType<typeof setTimeout> | null>(null)
  const latest = useRef(refresh)
  latest.current = refresh
  const soon = () => {
    pending.current ??= setTimeout(() => {
      pending.current = null
      latest.current()
    }, delayMs)
  }
  const live = useLive(topics, (type) => {
    if (o.accept ? o.accept(type) : type !== 'ready') soon()
  })
  const connections = useRef(0)
  useEffect(() => {
    if (live !== 'live') return
    // The first connection needs nothing (the view was just loaded); a later one missed what happened meanwhile.
    if (connections.current++ > 0) soon()
  }, [live])
  useEffect(() => () => void (pending.current && clearTimeout(pending.current)), [])
  return live
}
