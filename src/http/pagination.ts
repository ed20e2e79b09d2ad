/**
 * @module http/pagination
 * Keyset pagination: `?limit=` (1–200, default 50) and an opaque `?cursor=` holding the last
 * row's sort key. Isolation never depends on the cursor: queries run under RLS.
 */
import { Type } from '@sinclair/typebox'
import { BadRequestError } from '../errors.ts'
import { isUuid } from '../infra/db.ts'

export const PageQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Page size (1–200).' })),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: 'Opaque cursor from `next_cursor`.' })),
  },
  { additionalProperties: false },
)

/**
 * The last row's sort key. `at` is the timestamp exactly as Postgres printed it: a JavaScript
 * Date keeps milliseconds only, and rounding would skip rows created in the same millisecond.
 */
export interface Keyset {
  at: string
  id: string
}

const AT = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}(:\d{2}){0,2}$/

/**
 * Cuts a `limit + 1` row fetch into the page and the cursor of its last row (null on the last
 * page). `key` names the row's sort-key text (default `created_key`), printed by Postgres.
 */
export function paginate<T extends { id: string }>(
  rows: T[],
  limit: number,
  key: (row: T) => string = (row) => (row as T & { created_key: string }).created_key,
): { page: T[]; next: string | null } {
  const page = rows.slice(0, limit)
  const last = page.at(-1)
  const next = rows.length > limit && last ? encodeCursor({ at: key(last), id: last.id }) : null
  return { page, next }
}

export function encodeCursor(k: Keyset): string {
  return Buffer.from(JSON.stringify([k.at, k.id])).toString('base64url')
}

/**
 * Everything that decodes is a valid timestamp and id (a UUID, unless `validId` says otherwise):
 * a doctored cursor is a 400, never a 500.
 */
export function decodeCursor(cursor: string | undefined, validId: (id: string) => boolean = isUuid): Keyset | null {
  if (cursor === undefined) return null
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[]
    if (typeof at === 'string' && typeof id === 'string' && AT.test(at) && validId(id) && isRealDate(at)) return { at, id }
  } catch {
    // fall through
  }
  throw new BadRequestError('The cursor is malformed; pass back `next_cursor` unchanged.')
}

function isRealDate(at: string): boolean {
  const [y, m, d, hh, mm, ss] = at.split(/[- :.+]/).map(Number) as number[]
  const date = new Date(Date.UTC(y!, m! - 1, d!, hh, mm, ss))
  return (
    y! >= 1970 &&
    date.getUTCMonth() === m! - 1 &&
    date.getUTCDate() === d! &&
    hh! < 24 &&
    mm! < 60 &&
    ss! < 60 &&
    isSaneOffset(at)
  )
}

/** The offset Postgres printed: within ±15:59:59, or a doctored cursor would reach it (a 500). */
function isSaneOffset(at: string): boolean {
  const [h = 0, m = 0, s = 0] = /[+-](\d{2})(?::(\d{2}))?(?::(\d{2}))?$/
    .exec(at)!
    .slice(1)
    .map((x) => Number(x ?? 0))
  return h <= 15 && m < 60 && s < 60
}
