/**
 * @module http/body
 * Reads a request body while counting bytes, so an oversized body is refused with 413 as soon
 * as the limit is crossed, whatever `Content-Length` claimed (chunked bodies have none).
 *
 * A refused body must also stop being read (issue 14: after a 413 the server kept the connection
 * and read 30 MiB more). Bun 1.4.5 keeps a connection alive after answering a request whose body
 * was not read to its end, and reads (and discards) the rest of that body first: all of a declared
 * Content-Length, and a chunked body without any bound, past `maxRequestBodySize` too. Cancelling
 * the body's reader does not change that; a `Connection: close` response header does: the answer
 * is written, the connection closed, and nothing more is read. So every 413 carries it, and
 * `closeUnreadBodies` adds it to any other answer given before the body was read to its end (a
 * 401, 415 or 400 refusing the request up front).
 */
import { JsonShapeError, scanValue, skipSpace, type ShapeProblem } from '../lib/json-scan.ts'
import { BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError } from '../errors.ts'

/** Requests whose body was read to its end here (nothing left on the connection to discard). */
const drained = new WeakSet<Request>()

/** 413, answered with `Connection: close`: the rest of the body is not read (issue 14). */
function tooLarge(limit: number): PayloadTooLargeError {
  const err = new PayloadTooLargeError(limit)
  err.headers.Connection = 'close'
  return err
}

/**
 * Wraps a `fetch` handler for Bun.serve: an answer to a request whose body was not read to its
 * end through `readBytes`/`readJson` gets `Connection: close`, so Bun closes the connection after
 * it instead of reading the rest of the body (any size, when chunked) to keep it alive. Requests
 * without a body, and bodies read to their end, keep their connection.
 */
export function closeUnreadBodies<A extends unknown[]>(
  fetch: (req: Request, ...rest: A) => Response | Promise<Response>,
): (req: Request, ...rest: A) => Promise<Response> {
  return async (req, ...rest) => {
    const res = await fetch(req, ...rest)
    if (!hasBody(req) || drained.has(req)) return res
    try {
      res.headers.set('Connection', 'close')
      return res
    } catch {
      // Immutable headers (Response.redirect, a proxied response): answer with a copy.
      const copy = new Response(res.body, res)
      copy.headers.set('Connection', 'close')
      return copy
    }
  }
}

function hasBody(req: Request): boolean {
  const length = req.headers.get('content-length')
  return req.headers.has('transfer-encoding') || (length !== null && length.trim() !== '0')
}

/**
 * Reads the body, at most `limit` bytes after decoding: gzip and deflate bodies are counted on
 * their decoded bytes, so a small compressed body cannot expand past the limit. A request that
 * carries both Content-Length and Transfer-Encoding is refused (RFC 9112 §6.3; the
 * request-smuggling shape behind GHSA-92vj-g62v-jqhh).
 */
export async function readBytes(req: Request, limit: number): Promise<Uint8Array> {
  const declared = req.headers.get('content-length')
  if (declared !== null && req.headers.has('transfer-encoding')) {
    throw new BadRequestError('Content-Length and Transfer-Encoding must not both be sent.')
  }
  const encoding = (req.headers.get('content-encoding') ?? 'identity').trim().toLowerCase()
  if (encoding !== 'identity' && encoding !== 'gzip' && encoding !== 'deflate') {
    throw new UnsupportedMediaTypeError('identity, gzip or deflate encoded')
  }
  refuseDeclaredOver(req, limit)
  if (!req.body) {
    drained.add(req)
    return new Uint8Array(0)
  }
  const body = encoding === 'identity' ? req.body : req.body.pipeThrough(new DecompressionStream(encoding))
  const bytes = await readLimited(body, limit, `The request body is not valid ${encoding === 'identity' ? 'data' : encoding}.`)
  drained.add(req)
  return bytes
}

/**
 * 400 for a Content-Length that is not a number, 413 (closing the connection) for one over
 * `limit`, before any byte is read.
 */
export function refuseDeclaredOver(req: Request, limit: number): void {
  const declared = req.headers.get('content-length')
  if (declared === null) return
  if (!/^\d+$/.test(declared)) throw new BadRequestError('Content-Length is not a number.')
  if (Number(declared) > limit) throw tooLarge(limit)
}

/**
 * Collects a body stream, refusing with 413 as soon as more than `limit` bytes arrived (the answer
 * closes the connection, so the rest is not read); a stream that fails is a 400 with `unreadable`
 * as its detail.
 */
export async function readLimited(body: ReadableStream<Uint8Array>, limit: number, unreadable: string): Promise<Uint8Array> {
  const chunks: Uint8Array[] = []
  let total = 0
  const reader = body.getReader()
  for (;;) {
    let step: Awaited<ReturnType<typeof reader.read>>
    try {
      step = await reader.read()
    } catch {
      throw new BadRequestError(unreadable)
    }
    const { done, value } = step
    if (done) break
    total += value.byteLength
    if (total > limit) {
      await reader.cancel().catch(() => {})
      throw tooLarge(limit)
    }
    chunks.push(value)
  }
  if (chunks.length === 1) return chunks[0]!
  const out = new Uint8Array(total)
  let offset = 0
  for (const c of chunks) {
    out.set(c, offset)
    offset += c.byteLength
  }
  return out
}

const decoder = new TextDecoder('utf-8', { fatal: true })

/** A JSON body's text: 415 unless the type is JSON, 413 over `limit` (decoded bytes), 400 unless UTF-8. */
export async function readJsonText(req: Request, limit: number): Promise<string> {
  const type = req.headers.get('content-type') ?? ''
  if (!/^application\/(?:[\w.+-]+\+)?json\b/i.test(type)) {
    throw new UnsupportedMediaTypeError('application/json')
  }
  const bytes = await readBytes(req, limit)
  try {
    return decoder.decode(bytes)
  } catch {
    throw new BadRequestError('The request body is not valid UTF-8.')
  }
}

/** Parses a JSON body: 415 unless the type is JSON, 413 over `limit`, 400 when malformed, 422 when hostile in shape. */
export async function readJson(req: Request, limit: number): Promise<unknown> {
  const text = await readJsonText(req, limit)
  if (text.trim() === '') throw new BadRequestError('The request body is empty; a JSON document is required.')
  refuseHostileShape(text)
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new BadRequestError(`The request body is not valid JSON: ${(err as Error).message}`)
  }
}

/**
 * No management or daemon document is nested 64 deep or holds a million values; a body that is
 * costs seconds of main-thread JSON.parse (issue 14: 5 million `[` in 10 MiB took 1.3–10 s and
 * 300 MB), so its shape is measured first, in one linear pass without recursion.
 */
const BODY_SHAPE = { maxDepth: 64, maxValues: 1_000_000, maxChars: Number.POSITIVE_INFINITY }

function refuseHostileShape(text: string): void {
  let problem: ShapeProblem | null
  try {
    problem = scanValue(text, skipSpace(text, 0), BODY_SHAPE).problem
  } catch (err) {
    if (err instanceof JsonShapeError) throw new BadRequestError(`The request body is not valid JSON: ${err.message}`)
    throw err
  }
  if (problem)
    throw new ValidationError(
      [{ path: problem.pointer || '/', message: problem.reason }],
      `The request body is refused: ${problem.reason}.`,
    )
}
