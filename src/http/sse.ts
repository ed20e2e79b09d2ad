/**
 * @module http/sse
 * Server-Sent Events bodies (the WHATWG event-stream format) with a bounded queue: the fleet
 * stream's (issue 11, docs/fleet-stream.md) and the console's live stream (issue 12,
 * docs/live.md). A client that stops reading never makes the server buffer without end: past
 * `maxQueuedBytes` unread, a write is refused (the caller decides what the client missed) or the
 * stream is closed.
 */

/** The headers of every event stream we answer. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  // Proxies that buffer (nginx) would hold every event back.
  'x-accel-buffering': 'no',
}

const encoder = new TextEncoder()

/**
 * One event, framed and encoded once, then written as it is to every stream it is for (the same
 * bytes in every stream's queue: nobody writes to a frame).
 */
export function sseFrame(event: string, id: number | null, data: unknown): Uint8Array {
  return encoder.encode(`${id === null ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
}

export interface SseSink {
  /** Writes one SSE event; false when it was not written (the client is gone or too far behind). */
  send(event: string, id: number | null, data: unknown): boolean
  /** Writes a frame of `sseFrame` (shared, not copied); false as `send`. */
  write(frame: Uint8Array): boolean
  comment(text: string): boolean
  /** Bytes written and not yet read by the client. */
  queued(): number
  readonly open: boolean
  close(): void
}

export interface SseOptions {
  maxQueuedBytes: number
  /** Past `maxQueuedBytes`: `close` the stream (the client resumes on reconnect), or `refuse` the write. */
  whenFull: 'close' | 'refuse'
}

/** The body's queue counts bytes, not chunks. */
const HIGH_WATER = 64 * 1024

/** A text/event-stream body and the sink that writes to it; `onEnd` runs once, however it ends. */
export function eventStream(options: SseOptions): {
  body: ReadableStream<Uint8Array>
  sink: SseSink
  onEnd(fn: () => void): void
} {
  let controller: ReadableStreamDefaultController<Uint8Array> | null = null
  let open = true
  const ends: (() => void)[] = []
  const end = () => {
    if (!open) return
    open = false
    for (const fn of ends) fn()
  }
  const queued = () => (controller ? HIGH_WATER - (controller.desiredSize ?? 0) : 0)
  const write = (frame: Uint8Array): boolean => {
    if (!open || !controller) return false
    // Each stream counts what it holds unread, shared bytes or not: the bound is per client.
    if (queued() > options.maxQueuedBytes) {
      if (options.whenFull === 'close') sink.close()
      return false
    }
    controller.enqueue(frame)
    return true
  }
  const sink: SseSink = {
    send: (event, id, data) => write(sseFrame(event, id, data)),
    write,
    comment: (text) => write(encoder.encode(`: ${text}\n\n`)),
    queued,
    get open() {
      return open
    },
    close() {
      if (!open) return
      try {
        controller?.close()
      } catch {
        // Already closed by the client.
      }
      end()
    },
  }
  const body = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c
        // A reconnecting client waits 1 s, not its default 3 s.
        c.enqueue(encoder.encode('retry: 1000\n\n'))
      },
      cancel: end,
    },
    { highWaterMark: HIGH_WATER, size: (chunk) => chunk?.byteLength ?? 0 },
  )
  return { body, sink, onEnd: (fn) => ends.push(fn) }
}

/** The checks of every held stream's right to it, a few at a time (a keep-alive tick, a revocation). */
export async function checkStreams<S extends { stillValid(): Promise<boolean> }>(
  streams: readonly S[],
  invalid: (s: S) => void,
  concurrency = 16,
): Promise<void> {
  for (let i = 0; i < streams.length; i += concurrency) {
    await Promise.all(
      streams.slice(i, i + concurrency).map(async (s) => {
        // A check that cannot run (the database is down) keeps the stream: the next tick retries.
        const ok = await s.stillValid().catch(() => true)
        if (!ok) invalid(s)
      }),
    )
  }
}

/**
 * `run`, one at a time: a call while it runs makes it run once more when it ends (a recheck of
 * every held stream asked for by a revocation during the tick's own).
 */
export function oneAtATime(run: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | null = null
  let again = false
  return () => {
    if (running) {
      again = true
      return running
    }
    running = (async () => {
      do {
        again = false
        await run()
      } while (again)
    })().finally(() => (running = null))
    return running
  }
}
