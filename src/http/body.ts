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

export async function readBytes(req: Request, limit: number): Promise<Uint8Array> {
  const declared = req.headers.get('content-length')
  if (declared !== null) {
    if (!/^\d+$/.test(declared)) throw new BadRequestError('Content-Length is not a number.')
    if (Number(declared) > limit) throw new PayloadTooLargeError(limit)
  }
  if (!req.body) return new Uint8Array(0)
  const chunks: Uint8Array[] = []
  let total = 0
  const reader = req.body.getReader()
  for (;;) {
    const { done, value } = await reader.read()
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
