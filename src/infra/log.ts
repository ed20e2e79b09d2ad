/**
 * @module infra/log
 * JSON logs to stdout (one object per line) through pino. Secrets never reach the output: fields
 * with a sensitive name are redacted at any depth, and every string is scrubbed of token-shaped
 * values and DSN passwords, because an error message or a URL can carry them where no field name
 * would tell. Both happen in one walk of the logged object (pino's wildcard `redact` cost ~8 µs a
 * line, more than the rest of the logging).
 */
import pino, { type Logger as PinoLogger } from 'pino'

export type Logger = PinoLogger

const TOKEN_PATTERN = /\b(qt_[a-z]+_|qk_|whsec_)[A-Za-z0-9._\-+/=]{6,}/g
const DSN_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]+@/gi
const BEARER = /\b(Bearer)\s+[A-Za-z0-9._\-+/=]{6,}/gi
// Every pattern above needs one of these; most strings have none and skip the replacements.
const SUSPECT = /q[tk]_|whsec_|:\/\/|bearer/i

const SENSITIVE_KEYS = new Set([
  'authorization',
  'x-api-key',
  'cookie',
  'set-cookie',
  'password',
  'secret',
  'token',
  'api_key',
  'admin_key',
  'deploy_token',
  'service_token',
])

/** Replaces token-shaped substrings; exported so error messages can be cleaned before display. */
export function scrub(text: string): string {
  if (!SUSPECT.test(text)) return text
  return text
    .replace(TOKEN_PATTERN, (_m, prefix: string) => `${prefix}[REDACTED]`)
    .replace(DSN_PASSWORD, '$1[REDACTED]@')
    .replace(BEARER, '$1 [REDACTED]')
}

function scrubDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrub(value)
  if (value === null || typeof value !== 'object') return value
  // Deeper than any field we log on purpose: cut rather than pass anything through unscrubbed.
  if (depth > 6) return '[truncated]'
  if (value instanceof Error) {
    return { type: value.name, message: scrub(value.message), stack: value.stack && scrub(value.stack) }
  }
  if (Array.isArray(value)) return value.map((v) => scrubDeep(v, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    out[k] = SENSITIVE_KEYS.has(k.toLowerCase()) && v != null ? '[REDACTED]' : scrubDeep(v, depth + 1)
  }
  return out
}

/**
 * @param target `stdout` for the server (buffered), `stderr` for one-off commands (so stdout
 *   carries only their result), or a stream (tests capture logs this way).
 */
export function createLogger(level: string, target: 'stdout' | 'stderr' | pino.DestinationStream = 'stdout'): Logger {
  const destination =
    target === 'stdout'
      ? pino.destination({ dest: 1, sync: false })
      : target === 'stderr'
        ? pino.destination({ dest: 2, sync: true })
        : target
  return pino(
    {
      level,
      base: { service: 'quint-cloud' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: (obj) => scrubDeep(obj) as Record<string, unknown>,
      },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === 'string' ? scrub(a) : a)) as Parameters<typeof method>)
        },
      },
    },
    destination,
  )
}

/**
 * Repeated failures of one kind (a loop retrying against a database that is down) log their
 * first occurrence at once, then at most once per `everyMs` with how many were held back; a
 * success in between (`recovered`) logs the recovery and starts over. Issue 14: a database
 * outage wrote 24 error lines in 5 s, drowning whatever else was wrong.
 */
/** A short, bounded name for an error's kind (its code, else its class): a throttling key. */
export function errorKind(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && code.length <= 64) return code
  return err instanceof Error ? err.name : typeof err
}

export class ThrottledLog {
  readonly #log: Logger | null
  readonly #everyMs: number
  readonly #last = new Map<string, { at: number; held: number }>()

  /** `log`: null when every call names its own logger (per-request child loggers). */
  constructor(log: Logger | null, everyMs = 30_000) {
    this.#log = log
    this.#everyMs = everyMs
  }

  error(key: string, obj: Record<string, unknown>, msg: string): void {
    this.#emit('error', key, obj, msg)
  }

  warn(key: string, obj: Record<string, unknown>, msg: string, via?: Logger): void {
    this.#emit('warn', key, obj, msg, via)
  }

  /** The failure `key` stopped: say so once, if it was logged. */
  recovered(key: string, msg: string): void {
    const entry = this.#last.get(key)
    if (!entry) return
    this.#last.delete(key)
    this.#log?.info({ failure: key, held_back: entry.held }, msg)
  }

  #emit(level: 'error' | 'warn', key: string, obj: Record<string, unknown>, msg: string, log = this.#log): void {
    const now = Date.now()
    const entry = this.#last.get(key)
    if (entry && now - entry.at < this.#everyMs) {
      entry.held++
      return
    }
    this.#last.set(key, { at: now, held: 0 })
    log?.[level]({ ...obj, failure: key, ...(entry ? { held_back: entry.held } : {}) }, msg)
  }
}
