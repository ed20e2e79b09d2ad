/**
 * @module console/ui/live
 * Server-Sent Events read with `fetch` (issue 12: live, not polling). `EventSource` cannot send an
 * `Authorization` header, and credentials never go in URLs, so the stream is read and parsed here
 * (the WHATWG event-stream format: `event:`, `data:` lines, blank line ends an event, `:` comments).
 * A dropped stream reconnects with backoff; `onState` tells the page, which refetches what it shows
 * (the stream carries what is new, not what was missed).
 */
import { authorizedFetch, ApiError } from './api/client.ts'

export type LiveState = 'connecting' | 'live' | 'offline'

export interface LiveHandlers {
  onEvent(type: string, data: unknown): void
  onState?(state: LiveState, detail?: string): void
}

const MAX_BACKOFF_MS = 15_000

/**
 * A hidden tab lets its stream go after this long: over plain HTTP/1.1 a browser opens at most six
 * connections per host, so a seventh console tab would otherwise wait forever. It reconnects (and
 * its page refetches) when shown again.
 */
const HIDDEN_GRACE_MS = 10_000

/** Reads `url` until the returned function is called. */
export function subscribe(url: string, h: LiveHandlers): () => void {
  const stop = new AbortController()
  void (async () => {
    let failures = 0
    let replaced = false
    while (!stop.signal.aborted) {
      await visible(stop.signal)
      if (stop.signal.aborted) return
      h.onState?.('connecting')
      const connection = new AbortController()
      const release = releaseWhenHidden(connection)
      const abort = () => connection.abort()
      stop.signal.addEventListener('abort', abort, { once: true })
      try {
        const res = await authorizedFetch(url, { headers: { accept: 'text/event-stream' }, signal: connection.signal })
        h.onState?.('live')
        failures = 0
        await read(res.body!, h, connection.signal, () => (replaced = true))
      } catch (err) {
        if (stop.signal.aborted) return
        // Signed out or not allowed: retrying would not help.
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
          h.onState?.('offline', err.message)
          return
        }
        if (!connection.signal.aborted) failures++
      } finally {
        release()
        stop.signal.removeEventListener('abort', abort)
      }
      if (stop.signal.aborted) return
      h.onState?.('offline')
      // Let go because hidden: back as soon as shown. Replaced by a newer stream of the same
      // credential (more windows than docs/live.md allows it): back when this tab is shown anew,
      // not at once, or the windows would knock each other out in turn. Dropped: back off.
      if (connection.signal.aborted) continue
      if (replaced) {
        replaced = false
        await shownAgain(stop.signal)
        continue
      }
      const wait = Math.min(500 * 2 ** failures, MAX_BACKOFF_MS)
      await new Promise((r) => setTimeout(r, wait))
    }
  })()
  return () => stop.abort()
}

/** Resolves when the tab is next hidden and then shown (or `signal` aborts). */
async function shownAgain(signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const on = () => {
      if (document.visibilityState !== 'hidden' && !signal.aborted) return
      document.removeEventListener('visibilitychange', on)
      signal.removeEventListener('abort', on)
      resolve()
    }
    document.addEventListener('visibilitychange', on)
    signal.addEventListener('abort', on)
  })
  await visible(signal)
}

function visible(signal: AbortSignal): Promise<void> {
  if (document.visibilityState !== 'hidden') return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      if (document.visibilityState === 'hidden' && !signal.aborted) return
      document.removeEventListener('visibilitychange', done)
      signal.removeEventListener('abort', done)
      resolve()
    }
    document.addEventListener('visibilitychange', done)
    signal.addEventListener('abort', done)
  })
}

function releaseWhenHidden(connection: AbortController): () => void {
  let timer: ReturnType<typeof setTimeout> | null = null
  const on = () => {
    if (document.visibilityState === 'hidden') timer ??= setTimeout(() => connection.abort(), HIDDEN_GRACE_MS)
    else if (timer) {
      clearTimeout(timer)
      timer = null
    }
  }
  on()
  document.addEventListener('visibilitychange', on)
  return () => {
    if (timer) clearTimeout(timer)
    document.removeEventListener('visibilitychange', on)
  }
}

async function read(
  body: ReadableStream<Uint8Array>,
  h: LiveHandlers,
  signal: AbortSignal,
  onReplaced: () => void,
): Promise<void> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  signal.addEventListener('abort', () => void reader.cancel().catch(() => {}), { once: true })
  let buffer = ''
  let type = 'message'
  let data: string[] = []
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buffer += decoder.decode(value, { stream: true })
    let nl: number
    while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1))
      if (line === '') {
        if (data.length > 0) {
          const value = dispatch(h, type, data.join('\n'))
          if (type === 'closed' && (value as { reason?: string } | null)?.reason === 'replaced') onReplaced()
        }
        type = 'message'
        data = []
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':')
        const field = colon < 0 ? line : line.slice(0, colon)
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
        if (field === 'event') type = text
        else if (field === 'data') data.push(text)
      }
    }
  }
}

function dispatch(h: LiveHandlers, type: string, raw: string): unknown {
  let data: unknown = raw
  try {
    data = JSON.parse(raw)
  } catch {
    // Not JSON: passed as text.
  }
  h.onEvent(type, data)
  return data
}
