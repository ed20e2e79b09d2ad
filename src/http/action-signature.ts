/**
 * @module http/action-signature
 * `X-Action-Signature` on requests made with an agent, sub-agent or session token
 * (docs/action-signatures.md; the MAC itself is src/auth/action-signature.ts). Runs after the
 * route's auth middleware has set the principal and before the route:
 *
 * - header present: verified over the method, the request target, the raw body bytes, the
 *   token's jti and org, within ±300 s; any failure is 401 `invalid_action_signature` with a
 *   `reason`. A verified signature is single use: a second request with the same
 *   (org, jti, t, v1) inside the window is 401 `action_signature_replayed`.
 * - header absent: the request passes, unless AUTH_REQUIRE_ACTION_SIGNATURE is on (401, reason
 *   `missing`).
 * - any other credential (opaque tokens, app, bearer, override): the header is ignored; those
 *   tokens have no action key.
 *
 * The request target is the one the server routes on. Bun's `req.url` is the WHATWG URL parser's
 * output: dot segments (`/a/../b`, also spelled `%2e%2e`) are resolved and non-ASCII is
 * percent-encoded before any of our code runs, and nothing exposes the raw bytes (oven-sh/bun
 * #4001). So the MAC covers exactly what the router acts on; a client that sends a
 * non-normalised target signs bytes we never see and is refused (fail closed), which is why the
 * client rules say "no dot segments, percent-encode". The fragment, never sent by a conforming
 * client, is dropped.
 *
 * The body is read from a clone of the request, bounded (413 past the limit, also for a chunked
 * body), so the route still reads the original itself; the bytes are those on the wire, before
 * any Content-Encoding is removed.
 */
import type { Context, MiddlewareHandler } from 'hono'
import { ACTION_SIGNATURE_TOLERANCE_S, actionKeyFor, verifyActionSignature } from '../auth/action-signature.ts'
import { AppError, UnavailableError } from '../errors.ts'
import { readLimited, refuseDeclaredOver } from './body.ts'
import { actionSignatureKey } from '../infra/redis.ts'
import type { Logger } from '../infra/log.ts'
import type { Metrics } from '../infra/metrics.ts'
import type { JwtPrincipal } from '../auth/jwt/validator.ts'
import { DEPRECATION_HEADER, DEPRECATION_TEXT } from './auth.ts'
import type { AppEnv } from './request-context.ts'

/** Token types that get an action key when minted (src/features/jwt-tokens/routes.ts). */
export const ACTION_SIGNED_TYPES: ReadonlySet<string> = new Set(['agent', 'subagent', 'session'])
/** Bun's own request cap (src/cli/serve.ts); routes enforce their smaller limits afterwards. */
const DEFAULT_MAX_BODY = 16 * 1024 * 1024
const DEFAULT_MAX_REMEMBERED = 100_000
/** One org may hold at most 1/ORG_SHARE of the replay memory. */
const ORG_SHARE = 4
const WWW_AUTHENTICATE = { 'WWW-Authenticate': 'Bearer realm="quint-cloud", error="invalid_request"' }

export type ActionSignatureFailure = 'missing' | 'malformed' | 'timestamp_outside_tolerance' | 'mismatch'

export class InvalidActionSignatureError extends AppError {
  override name = 'InvalidActionSignatureError'
  constructor(reason: ActionSignatureFailure) {
    super(401, 'invalid_action_signature', DETAIL[reason], { headers: WWW_AUTHENTICATE, extensions: { reason } })
  }
}

const DETAIL: Record<ActionSignatureFailure, string> = {
  missing: 'This token must sign its requests: X-Action-Signature is required.',
  malformed: 'X-Action-Signature must be "t=<unix seconds>,v1=<64 hex>".',
  timestamp_outside_tolerance: `The X-Action-Signature timestamp is more than ${ACTION_SIGNATURE_TOLERANCE_S} s from the server's clock.`,
  mismatch: 'X-Action-Signature does not match this request.',
}

export class ActionSignatureReplayedError extends AppError {
  override name = 'ActionSignatureReplayedError'
  constructor() {
    super(401, 'action_signature_replayed', 'This X-Action-Signature has already been used; sign every request anew.', {
      headers: WWW_AUTHENTICATE,
    })
  }
}

/** What the guard needs from Redis (src/infra/redis.ts `RedisStateStore`). */
export interface SharedOnce {
  claimOnce(key: string, ttlMs: number): Promise<boolean>
}

/**
 * Remembers used signatures until their timestamp leaves the window: in this process (bounded),
 * and with Redis in every instance (`SET NX PX`). Redis failing falls back to this process's
 * memory (a replay on another instance is then possible until Redis answers again; logged and
 * counted). Memory full and no Redis to rely on: 503, never an unchecked request.
 */
export class ActionSignatureReplayGuard {
  readonly #seen = new Map<string, number>()
  /** Live entries per org, for its share of the memory. */
  readonly #perOrg = new Map<string, number>()
  readonly #max: number
  readonly #maxPerOrg: number
  readonly #shared: SharedOnce | null
  readonly #log: Logger
  readonly #metrics: Metrics | undefined
  #lastSweep = 0

  constructor(options: {
    shared?: SharedOnce | null
    log: Logger
    metrics?: Metrics
    maxRemembered?: number
    /** Default: a quarter of `maxRemembered`. */
    maxRememberedPerOrg?: number
  }) {
    this.#shared = options.shared ?? null
    this.#log = options.log
    this.#metrics = options.metrics
    this.#max = options.maxRemembered ?? DEFAULT_MAX_REMEMBERED
    this.#maxPerOrg = options.maxRememberedPerOrg ?? Math.max(1, Math.floor(this.#max / ORG_SHARE))
  }

  get size(): number {
    return this.#seen.size
  }

  /** True the first time (org, jti, t, v1) is presented within the window; false after. */
  async claim(orgId: string, jti: string, t: number, v1: string, nowMs: number): Promise<boolean> {
    const key = `${orgId}|${jti}|${t}|${v1}`
    // Past this moment the timestamp itself is refused, so the entry is no longer needed.
    const until = (t + ACTION_SIGNATURE_TOLERANCE_S + 1) * 1000
    // A full sweep is O(n): at most once a second when full (or this org at its share), else
    // once a minute.
    const since = nowMs - this.#lastSweep
    const pressed = this.#seen.size >= this.#max || (this.#perOrg.get(orgId) ?? 0) >= this.#maxPerOrg
    if ((pressed && since > 1_000) || since > 60_000) this.#sweep(nowMs)
    const prev = this.#seen.get(key)
    if (prev !== undefined && prev > nowMs) return false
    // Set before any await: two identical requests racing on this instance cannot both pass.
    // One org may fill only its share, so a flood of its own signed requests cannot deny the
    // other orgs theirs.
    const mine = this.#perOrg.get(orgId) ?? 0
    const room = this.#seen.size < this.#max && mine < this.#maxPerOrg
    if (room && prev === undefined) this.#perOrg.set(orgId, mine + 1)
    if (room) this.#seen.set(key, until)
    if (this.#shared) {
      try {
        return await this.#shared.claimOnce(actionSignatureKey(orgId, jti, t, v1), until - nowMs)
      } catch (err) {
        this.#metrics?.redisFallbacks.inc({ op: 'action_signature_replay' })
        this.#log.warn({ err }, 'action-signature replay check could not reach Redis; checked in this process only')
      }
    }
    if (!room) throw new UnavailableError('Too many signed requests to remember for replay protection; retry shortly.', 1)
    return true
  }

  #sweep(nowMs: number): void {
    this.#lastSweep = nowMs
    for (const [k, until] of this.#seen) {
      if (until > nowMs) continue
      this.#seen.delete(k)
      const org = k.slice(0, k.indexOf('|'))
      const n = (this.#perOrg.get(org) ?? 1) - 1
      if (n <= 0) this.#perOrg.delete(org)
      else this.#perOrg.set(org, n)
    }
  }
}

export interface ActionSignatureDeps {
  /** SecretBox.derive('action-signature'): the server secret behind every action key. */
  secret: Uint8Array
  required: boolean
  replay: ActionSignatureReplayGuard
  maxBodyBytes?: number
}

export const verifyActionSignatures = (deps: ActionSignatureDeps): MiddlewareHandler<AppEnv> =>
  async function actionSignature(c, next) {
    const p = c.get('principal')
    if (p?.kind === 'jwt' && ACTION_SIGNED_TYPES.has(p.type)) {
      try {
        await check(c, p, deps)
      } catch (err) {
        // Runs inside the auth middleware's `next`, past its own legacy tagging (src/http/auth.ts).
        if (err instanceof AppError && c.req.header('authorization') === undefined)
          err.headers[DEPRECATION_HEADER] = DEPRECATION_TEXT
        throw err
      }
    }
    await next()
  }

async function check(c: Context<AppEnv>, p: JwtPrincipal, deps: ActionSignatureDeps): Promise<void> {
  const header = c.req.header('x-action-signature')
  if (header === undefined) {
    if (deps.required) throw new InvalidActionSignatureError('missing')
    return
  }
  const nowMs = Date.now()
  const body = await signedBody(c.req.raw, deps.maxBodyBytes ?? DEFAULT_MAX_BODY)
  const key = actionKeyFor(deps.secret, p.orgId, p.jti)
  const result = verifyActionSignature(
    key,
    header,
    { method: c.req.method, path: requestTarget(c.req.url), body, jti: p.jti, orgId: p.orgId },
    nowMs / 1000,
  )
  if (!result.ok) throw new InvalidActionSignatureError(result.reason)
  const { t, v1 } = signedFields(header)
  if (!(await deps.replay.claim(p.orgId, p.jti, t, v1, nowMs))) throw new ActionSignatureReplayedError()
}

/** Origin-form target from the parsed URL: path and query, no scheme, host or fragment. */
export function requestTarget(url: string): string {
  const scheme = url.indexOf('://')
  const start = url.indexOf('/', scheme < 0 ? 0 : scheme + 3)
  if (start < 0) return '/'
  const hash = url.indexOf('#', start)
  return url.slice(start, hash < 0 ? undefined : hash)
}

/** `t` and `v1` of a header that has just verified (so both are present exactly once). */
function signedFields(header: string): { t: number; v1: string } {
  let t = 0
  let v1 = ''
  for (const part of header.split(',')) {
    const [name, value] = part.trim().split('=', 2) as [string, string | undefined]
    if (name === 't') t = Number(value)
    else if (name === 'v1') v1 = (value ?? '').toLowerCase()
  }
  return { t, v1 }
}

/** The raw body bytes from a clone (the route reads the original), at most `limit`. */
async function signedBody(req: Request, limit: number): Promise<Uint8Array> {
  if (!req.body) return new Uint8Array(0)
  refuseDeclaredOver(req, limit)
  return readLimited(req.clone().body!, limit, 'The request body could not be read.')
}
