/**
 * @module features/machines/clean
 * Making daemon-sent free-form JSON and timestamps safe to store. Postgres refuses a NUL in text
 * and a NUL or lone-surrogate escape in jsonb, and rolls nothing over in dates (2026-02-31 is an
 * error, where `Date.parse` silently moves to March): each of those would be a 500 if passed
 * through, so they are cleaned (free-form content) or refused with 422 (timestamps) here.
 */
import { ValidationError } from '../../errors.ts'
import { redactString } from '../ingest/redaction.ts'

const MAX_DEPTH = 64
const NUL_OR_LONE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/**
 * A copy of parsed JSON with every string and key cleaned (NUL and lone surrogates → U+FFFD) and
 * high-confidence secrets redacted (SPEC §16.2). Deeper than 64 levels is a 422 at `path`.
 */
export function cleanJson(value: unknown, path: string, depth = 0): unknown {
  if (typeof value === 'string') return cleanText(value)
  if (value === null || typeof value !== 'object') return value
  if (depth >= MAX_DEPTH) throw new ValidationError([{ path: path || '/', message: `is nested deeper than ${MAX_DEPTH} levels` }])
  if (Array.isArray(value)) return value.map((v, i) => cleanJson(v, `${path}/${i}`, depth + 1))
  // defineProperty: a `__proto__` key from JSON.parse stays data, never a prototype.
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    Object.defineProperty(out, cleanText(k), {
      value: cleanJson(v, `${path}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`, depth + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    })
  }
  return out
}

function cleanText(s: string): string {
  NUL_OR_LONE.lastIndex = 0
  const safe = NUL_OR_LONE.test(s) ? s.replace(NUL_OR_LONE, '\uFFFD') : s
  NUL_OR_LONE.lastIndex = 0
  return redactString(safe).text
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$/

/**
 * An optional RFC 3339 timestamp as an ISO string Postgres parses identically (UTC,
 * milliseconds), or null when absent or empty. A real calendar date between 1970 and 9999,
 * else 422 at `path`.
 */
export function timestampOrNull(value: string | null | undefined, path: string): string | null {
  if (value === undefined || value === null || value === '') return null
  const m = RFC3339.exec(value)
  const t = Date.parse(value)
  if (m && !Number.isNaN(t)) {
    const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])]
    const real = mo >= 1 && mo <= 12 && new Date(Date.UTC(y, mo - 1, d)).getUTCDate() === d
    const utcYear = new Date(t).getUTCFullYear()
    if (real && utcYear >= 1970 && utcYear <= 9999) return new Date(t).toISOString()
  }
  throw new ValidationError([{ path, message: 'must be an RFC 3339 timestamp of a real date (years 1970–9999)' }])
}
