/**
 * @module http/body
 * Reads a request body while counting bytes, so an oversized body is refused with 413 as soon
 * as the limit is crossed, whatever `Content-Length` claimed (chunked bodies have none).
 */
import {
  BadRequestError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
} from '../errors.ts'

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
  if (!req.body) return new Uint8Array(0)
  const body = encoding === 'identity' ? req.body : req.body.pipeThrough(new DecompressionStream(encoding))
  return readLimited(body, limit, `The request body is not valid ${encoding === 'identity' ? 'data' : encoding}.`)
}

/** 400 for a Content-Length that is not a number, 413 for one over `limit`, before any byte is read. */
export function refuseDeclaredOver(req: Request, limit: number): void {
  const declared = req.headers.get('content-length')
  if (declared === null) return
  if (!/^\d+$/.test(declared)) throw new BadRequestError('Content-Length is not a number.')
  if (Number(declared) > limit) throw new PayloadTooLargeError(limit)
}

/**
 * Collects a body stream, refusing with 413 as soon as more than `limit` bytes arrived (the rest is
 * not read); a stream that fails is a 400 with `unreadable` as its detail.
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
      throw new PayloadTooLargeError(limit)
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

/** Parses a JSON body: 415 unless the type is JSON, 413 over `limit`, 400 when malformed. */
export async function readJson(req: Request, limit: number): Promise<unknown> {
  const type = req.headers.get('content-type') ?? ''
  if (!/^application\/(?:[\w.+-]+\+)?json\b/i.test(type)) {
    throw new UnsupportedMediaTypeError('application/json')
  }
  const bytes = await readBytes(req, limit)
  let text: string
  try {
    text = decoder.decode(bytes)
  } catch {
    throw new BadRequestError('The request body is not valid UTF-8.')
  }
  if (text.trim() === '') throw new BadRequestError('The request body is empty; a JSON document is required.')
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new BadRequestError(`The request body is not valid JSON: ${(err as Error).message}`)
  }
}
