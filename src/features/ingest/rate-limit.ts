/**
 * @module features/ingest/rate-limit
 * Per-org ingest quota: a token bucket of events per second with a burst, so an idle org costs
 * nothing and one org's flood never slows the others. A request costs one token per event it
 * carries (at least one; a batch larger than the burst costs the whole burst).
 *
 * Embedded mode: the bucket is in process memory. Cluster mode (REDIS_URL): the bucket is in
 * Redis, shared by every instance, refilled on the Redis server's clock by one atomic script.
 * When Redis fails or does not answer within its command timeout the request is charged to this
 * instance's in-memory bucket instead, counted (`quint_redis_fallbacks_total{op="ingest_quota"}`)
 * and logged: the quota protects the service, it is not a correctness property, so an outage
 * must neither fail ingest (500) nor lift the quota (a fail-open limiter is a bypass). During an
 * outage each instance admits up to the org's full rate, as before cluster mode. After a failure
 * Redis is left alone for a second so that a hung server costs one timeout per second, not one
 * per request.
 *
 * Every answer of a charged route says where the org stands, in the IETF RateLimit fields
 * (draft-ietf-httpapi-ratelimit-headers-11; issue 14), one event being one quota unit:
 *   RateLimit-Policy: "ingest";q=<burst>;w=<seconds to refill the whole burst>
 *   RateLimit: "ingest";r=<events available now>;t=<seconds until the bucket is full again>
 * A 429 carries `RateLimit: "ingest";r=0;t=<Retry-After>`. In cluster mode the shared bucket's
 * level is not read back, so 2xx answers carry only the policy.
 */
import type { MiddlewareHandler } from 'hono'
import { RateLimitedError } from '../../errors.ts'
import type { AppEnv } from '../../http/request-context.ts'
import type { Logger } from '../../infra/log.ts'
import type { Metrics } from '../../infra/metrics.ts'

/** The shared bucket (src/infra/redis.ts): 0 when the tokens were taken, else the wait in ms. */
export interface SharedQuota {
  takeTokens(orgId: string, perSecond: number, burst: number, n: number): Promise<number>
}

interface Bucket {
  tokens: number
  at: number
}

/** Buckets kept before idle, full ones are swept. */
const SWEEP_AT = 10_000
const REDIS_PAUSE_MS = 1_000
const LOG_EVERY_MS = 10_000
const DONE: Promise<void> = Promise.resolve()

/** The in-process buckets: synchronous, used alone in embedded mode and as the fallback. */
export class LocalBuckets {
  readonly #buckets = new Map<string, Bucket>()
  private readonly perSecond: number
  private readonly burst: number
  private readonly now: () => number

  constructor(perSecond: number, burst: number, now: () => number = () => performance.now()) {
    this.perSecond = perSecond
    this.burst = Math.max(burst, 1)
    this.now = now
  }

  /** Events `orgId` may send now, and the whole seconds until its bucket is full again. */
  peek(orgId: string): { available: number; fullInS: number } {
    const b = this.#buckets.get(orgId)
    if (!b) return { available: this.burst, fullInS: 0 }
    const tokens = Math.min(this.burst, b.tokens + ((this.now() - b.at) / 1000) * this.perSecond)
    return { available: Math.floor(tokens), fullInS: Math.ceil((this.burst - tokens) / this.perSecond) }
  }

  /** Takes `n` tokens for `orgId` or throws 429 with the seconds until they are available. */
  take(orgId: string, n: number): void {
    const now = this.now()
    let b = this.#buckets.get(orgId)
    if (!b) {
      if (this.#buckets.size >= SWEEP_AT) this.#sweep(now)
      b = { tokens: this.burst, at: now }
      this.#buckets.set(orgId, b)
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond)
    b.at = now
    if (b.tokens >= n) {
      b.tokens -= n
      return
    }
    throw rateLimited(this.perSecond, this.burst, ((n - b.tokens) / this.perSecond) * 1000)
  }

  #sweep(now: number): void {
    for (const [org, b] of this.#buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst) this.#buckets.delete(org)
    }
  }
}

export interface OrgRateLimiterOptions {
  /** Cluster mode: the bucket shared by every instance. */
  shared?: SharedQuota | null
  log?: Logger
  metrics?: Metrics
  now?: () => number
}

export class OrgRateLimiter {
  readonly #local: LocalBuckets
  readonly #shared: SharedQuota | null
  readonly #log: Logger | undefined
  readonly #metrics: Metrics | undefined
  #redisPausedUntil = 0
  #lastLog = 0
  private readonly perSecond: number
  private readonly burst: number

  /** `perSecond` 0 turns the limit off. */
  constructor(perSecond: number, burst: number, options: OrgRateLimiterOptions = {}) {
    this.perSecond = perSecond
    this.burst = Math.max(burst, 1)
    this.#local = new LocalBuckets(perSecond, this.burst, options.now)
    this.#shared = options.shared ?? null
    this.#log = options.log
    this.#metrics = options.metrics
  }

  /**
   * The RateLimit fields for `orgId`'s answers (module comment); none when the limit is off. The
   * current level only when it is known here: without Redis, or while Redis is being bypassed.
   */
  headers(orgId: string): Record<string, string> {
    if (this.perSecond <= 0) return {}
    const out: Record<string, string> = { 'RateLimit-Policy': policyField(this.perSecond, this.burst) }
    if (!this.#shared || performance.now() < this.#redisPausedUntil) {
      const { available, fullInS } = this.#local.peek(orgId)
      out.RateLimit = `${POLICY};r=${available};t=${fullInS}`
    }
    return out
  }

  /**
   * Takes `cost` tokens for `orgId`; rejects with a 429 (RateLimitedError, with Retry-After)
   * when they are not available. Callers must await it. The in-memory decision is made (and
   * thrown) synchronously: the embedded hot path allocates no promise.
   */
  take(orgId: string, cost: number): Promise<void> {
    if (this.perSecond <= 0) return DONE
    const n = Math.min(Math.max(cost, 1), this.burst)
    if (!this.#shared || performance.now() < this.#redisPausedUntil) {
      this.#local.take(orgId, n)
      return DONE
    }
    return this.#takeShared(this.#shared, orgId, n)
  }

  async #takeShared(shared: SharedQuota, orgId: string, n: number): Promise<void> {
    let waitMs: number
    try {
      waitMs = await shared.takeTokens(orgId, this.perSecond, this.burst, n)
    } catch (err) {
      this.#redisPausedUntil = performance.now() + REDIS_PAUSE_MS
      this.#metrics?.redisFallbacks.inc({ op: 'ingest_quota' })
      const now = Date.now()
      if (now - this.#lastLog >= LOG_EVERY_MS) {
        this.#lastLog = now
        this.#log?.warn({ err }, 'shared ingest quota unavailable; charging the local bucket')
      }
      this.#local.take(orgId, n)
      return
    }
    if (waitMs > 0) throw rateLimited(this.perSecond, this.burst, waitMs)
  }
}

/** The policy's name in the RateLimit fields (an sf-string). */
const POLICY = '"ingest"'

/** `q`: the burst; `w`: the seconds the rate takes to refill it, so q/w is the sustained rate. */
function policyField(perSecond: number, burst: number): string {
  return `${POLICY};q=${burst};w=${Math.max(1, Math.ceil(burst / perSecond))}`
}

function rateLimited(perSecond: number, burst: number, waitMs: number): RateLimitedError {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000))
  return new RateLimitedError(
    `This organization is over its ingest rate (${perSecond} events/s, bursts of ${burst}); retry after ${seconds} s.`,
    seconds,
    // t = Retry-After: the draft wants Retry-After no earlier than the end of the effective window.
    { 'RateLimit-Policy': policyField(perSecond, burst), RateLimit: `${POLICY};r=0;t=${seconds}` },
  )
}

/**
 * Route middleware for the routes charged to the quota: their answers (errors included) carry the
 * org's RateLimit fields. A 429 of the quota already has its own.
 */
export function quotaHeaders(limiter: OrgRateLimiter): MiddlewareHandler<AppEnv> {
  return async function quotaHeaders(c, next) {
    await next()
    const orgId = c.get('principal')?.orgId
    if (!orgId || c.res.headers.has('RateLimit-Policy')) return
    for (const [name, value] of Object.entries(limiter.headers(orgId))) c.res.headers.set(name, value)
  }
}
