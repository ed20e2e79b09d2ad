/**
 * @module http/pagination
 * Keyset pagination: `?limit=` (1–200, default 50) and an opaque `?cursor=` holding the last
 * row's sort key. Isolation never depends on the cursor: queries run under RLS.
 */
import { Type } from '@sinclair/typebox'
import { BadRequestError } from '../errors.ts'

export const PageQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Page size (1–200).' })),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: 'Opaque cursor from `next_cursor`.' })),
  },
  { additionalProperties: false },
)

export interface Keyset {
  at: Date
  id: string
}

export function encodeCursor(k: Keyset): string {
  return Buffer.from(JSON.stringify([k.at.toISOString(), k.id])).toString('base64url')
}

export function decodeCursor(cursor: string | undefined): Keyset | null {
  if (cursor === undefined) return null
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[]
    const date = new Date(String(at))
    if (typeof id === 'string' && /^[0-9a-f-]{36}$/.test(id) && !Number.isNaN(date.getTime())) return { at: date, id }
  } catch {
    // fall through
  }
  throw new BadRequestError('The cursor is malformed; pass back `next_cursor` unchanged.')
}
