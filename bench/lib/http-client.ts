/**
 * A minimal HTTP/1.1 client for latency figures: one keep-alive TCP connection, a GET written as
 * one string, the answer read up to its Content-Length. Bun's `fetch` runs its client on another
 * thread and hands each answer back across it: measured in the query bench's process, that hop
 * and its objects cost ~0.4 ms p50 and ~3 ms p99 per request on top of the server's own time
 * (issue 9), which is the client's price, not the service's. Load tools (wrk, oha) measure the
 * same way. Anything it does not understand (no Content-Length, a chunked answer) throws.
 */
import type { Socket } from 'bun'

export interface RawHttpClient {
  get(path: string, headers?: Record<string, string>): Promise<{ status: number; body: string }>
  close(): void
}

export async function rawHttpClient(host: string, port: number): Promise<RawHttpClient> {
  // Chunks as they come, joined once per answer: joining on every chunk copies a 350 KB answer
  // a dozen times over.
  let chunks: Buffer[] = []
  let size = 0
  let wake: (() => void) | null = null
  let closed: Error | null = null
  const socket: Socket = await Bun.connect({
    hostname: host,
    port,
    socket: {
      data(_s, chunk) {
        chunks.push(Buffer.from(chunk))
        size += chunk.byteLength
        wake?.()
      },
      close() {
        closed = new Error('connection closed by the server')
        wake?.()
      },
    },
  })
  const more = async () => {
    if (closed) throw closed
    await new Promise<void>((resolve) => (wake = resolve))
    wake = null
  }
  const joined = () => {
    if (chunks.length > 1) chunks = [Buffer.concat(chunks, size)]
    return chunks[0] ?? Buffer.alloc(0)
  }
  let busy = false
  return {
    async get(path, headers = {}) {
      if (busy) throw new Error('rawHttpClient: one request at a time')
      busy = true
      try {
        const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`)
        socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\n${lines.join('')}\r\n`)
        let end: number
        while ((end = joined().indexOf('\r\n\r\n')) < 0) await more()
        const head = joined().subarray(0, end).toString('latin1')
        const length = /\r\ncontent-length: *(\d+)/i.exec(head)
        if (!length || /\r\ntransfer-encoding:/i.test(head)) throw new Error(`rawHttpClient: no Content-Length in ${head}`)
        const total = end + 4 + Number(length[1])
        while (size < total) await more()
        const all = joined()
        const body = all.subarray(end + 4, total).toString('utf8')
        const rest = all.subarray(total)
        chunks = rest.length > 0 ? [rest] : []
        size = rest.length
        return { status: Number(head.slice(9, 12)), body }
      } finally {
        busy = false
      }
    },
    close: () => void socket.end(),
  }
}
