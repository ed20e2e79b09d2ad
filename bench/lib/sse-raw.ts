/**
 * The fleet suite's raw baseline: a bare Bun.serve holding Server-Sent Events streams, with
 * nothing of quint-cloud. `GET /stream` holds one; `POST /fire` writes its body as one event to
 * every stream held. Prints the port, then serves until killed.
 */
const encoder = new TextEncoder()
const streams = new Set<ReadableStreamDefaultController<Uint8Array>>()
const server = Bun.serve({
  port: 0,
  hostname: '127.0.0.1',
  idleTimeout: 65,
  async fetch(req) {
    const path = new URL(req.url).pathname
    if (path === '/fire') {
      const chunk = encoder.encode(`event: policy\ndata: ${await req.text()}\n\n`)
      for (const c of streams) c.enqueue(chunk)
      return new Response(null, { status: 204 })
    }
    let held: ReadableStreamDefaultController<Uint8Array>
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        held = c
        streams.add(c)
        c.enqueue(encoder.encode('event: policy\ndata: {}\n\n'))
      },
      cancel() {
        streams.delete(held)
      },
    })
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } })
  },
})
process.stderr.write(`${server.port}\n`)
