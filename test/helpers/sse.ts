/**
 * A Server-Sent Events reader for the fleet stream's tests: parses the body as the HTML
 * EventSource algorithm does (fields, comments, blank-line dispatch) and waits for events.
 */
export interface SseEvent {
  id: string | null
  event: string
  data: any
}

export class SseReader {
  readonly events: SseEvent[] = []
  readonly comments: string[] = []
  retry: number | null = null
  ended = false
  #waiters: (() => void)[] = []
  readonly #done: Promise<void>

  constructor(response: Response) {
    this.#done = this.#read(response.body!)
  }

  async #read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder()
    let buffer = ''
    let current: { id: string | null; event: string; data: string[] } = { id: null, event: 'message', data: [] }
    try {
      for await (const chunk of body) {
        buffer += decoder.decode(chunk, { stream: true })
        let nl: number
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl)
          buffer = buffer.slice(nl + 1)
          if (line === '') {
            if (current.data.length > 0) {
              this.events.push({ id: current.id, event: current.event, data: JSON.parse(current.data.join('\n')) })
            }
            current = { id: null, event: 'message', data: [] }
            this.#wake()
          } else if (line.startsWith(':')) {
            this.comments.push(line.slice(1).trim())
            this.#wake()
          } else {
            const colon = line.indexOf(':')
            const field = colon < 0 ? line : line.slice(0, colon)
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
            if (field === 'id') current.id = value
            else if (field === 'event') current.event = value
            else if (field === 'data') current.data.push(value)
            else if (field === 'retry') this.retry = Number(value)
          }
        }
      }
    } catch {
      // Aborted by the test.
    } finally {
      this.ended = true
      this.#wake()
    }
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w()
  }

  /** The first event after `from` (an index into `events`) matching `test`; throws after `timeoutMs`. */
  async next(test: (e: SseEvent) => boolean, from = 0, timeoutMs = 5_000): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const hit = this.events.slice(from).find(test)
      if (hit) return hit
      if (this.ended) throw new Error(`stream ended without the event; got ${JSON.stringify(this.events)}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no such event within ${timeoutMs} ms; got ${JSON.stringify(this.events)}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  /** Resolves when the server ended the stream; throws after `timeoutMs`. */
  async end(timeoutMs = 5_000): Promise<void> {
    await Promise.race([
      this.#done,
      Bun.sleep(timeoutMs).then(() => {
        throw new Error('stream still open')
      }),
    ])
  }

  async comment(text: string, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!this.comments.includes(text)) {
      if (this.ended || Date.now() > deadline) throw new Error(`no "${text}" comment; got ${JSON.stringify(this.comments)}`)
      await Bun.sleep(20)
    }
  }
}
