import { describe, expect, test } from 'bun:test'
import { eventStream, sseFrame } from './sse.ts'

const decoder = new TextDecoder()

/** Everything a body held once it ended. */
async function text(body: ReadableStream<Uint8Array>): Promise<string> {
  let out = ''
  for await (const chunk of body) out += decoder.decode(chunk, { stream: true })
  return out
}

describe('event-stream bodies', () => {
  test('a frame is encoded once and the same bytes are written to every stream', async () => {
    const frame = sseFrame('event', null, { id: 'é1', n: 1 })
    expect(frame).toBeInstanceOf(Uint8Array)
    expect(decoder.decode(frame)).toBe('event: event\ndata: {"id":"é1","n":1}\n\n')
    const streams = [0, 1, 2].map(() => eventStream({ maxQueuedBytes: 1024, whenFull: 'refuse' }))
    const chunks: Uint8Array[] = []
    for (const s of streams) {
      expect(s.sink.write(frame)).toBe(true)
      s.sink.close()
    }
    for (const s of streams) {
      const reader = s.body.getReader()
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        chunks.push(value)
      }
    }
    // The frame itself (not a copy) is what each stream queued, after its `retry:` line.
    expect(chunks.filter((c) => c === frame)).toHaveLength(3)
    expect(frame.byteLength).toBe(new TextEncoder().encode('event: event\ndata: {"id":"é1","n":1}\n\n').byteLength)
  })

  test('the unread bound is per client: a stream not read refuses, another read one still takes the shared frame', async () => {
    const frame = sseFrame('event', null, { pad: 'x'.repeat(40 * 1024) })
    const slow = eventStream({ maxQueuedBytes: 100 * 1024, whenFull: 'refuse' })
    const fast = eventStream({ maxQueuedBytes: 100 * 1024, whenFull: 'refuse' })
    const read = text(fast.body)
    const written = { slow: 0, fast: 0 }
    for (let i = 0; i < 5; i++) {
      if (slow.sink.write(frame)) written.slow++
      if (fast.sink.write(frame)) written.fast++
      // The fast client reads what was written before the next write.
      await Bun.sleep(0)
    }
    // Written while at most 100 KiB waited unread: 0, 40, 80 KiB → three frames, then refused.
    expect(written.slow).toBe(3)
    expect(slow.sink.queued()).toBeGreaterThan(100 * 1024)
    expect(slow.sink.open).toBe(true)
    expect(written.fast).toBe(5)
    fast.sink.close()
    expect((await read).split('event: event\n')).toHaveLength(6)
  })

  test("`whenFull: 'close'` ends the stream instead", () => {
    const frame = sseFrame('event', null, { pad: 'x'.repeat(10_000) })
    const s = eventStream({ maxQueuedBytes: 15_000, whenFull: 'close' })
    let ended = false
    s.onEnd(() => (ended = true))
    expect(s.sink.write(frame)).toBe(true)
    expect(s.sink.write(frame)).toBe(true)
    expect(s.sink.write(frame)).toBe(false)
    expect(s.sink.open).toBe(false)
    expect(ended).toBe(true)
  })
})
