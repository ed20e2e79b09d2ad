/**
 * @module features/ingest/rate-limit
 * Per-org ingest quota: a token bucket of events per second with a burst, refilled lazily, so an
 * idle org costs nothing and one org's flood never slows the others. A request costs one token
 * per event it carries (at least one). In-process: each instance enforces the quota on the
 * traffic it receives.
 */
import { RateLimitedError } from '../../errors.ts'

interface Bucket {
  tokens: number
  at: number
}

/** Buckets kept before idle, full ones are swept. */
const SWEEP_AT = 10_000

export class OrgRateLimiter {
  readonly #buckets = new Map<string, Bucket>()
  private readonly perSecond: number
  private readonly burst: number
  private readonly now: () => number

  /** `perSecond` 0 turns the limit off. */
  constructor(perSecond: number, burst: number, now: () => number = () => performance.now()) {
    this.perSecond = perSecond
    this.burst = Math.max(burst, 1)
    this.now = now
  }

  /** Takes `cost` tokens for `orgId` or throws 429 with the seconds until they are available. */
  take(orgId: string, cost: number): void {
    if (this.perSecond <= 0) return
    const n = Math.min(Math.max(cost, 1), this.burst)
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
    const seconds = Math.max(1, Math.ceil((n - b.tokens) / this.perSecond))
    throw new RateLimitedError(
      `This organization is over its ingest rate (${this.perSecond} events/s, bursts of ${this.burst}); retry after ${seconds} s.`,
      seconds,
    )
  }

  #sweep(now: number): void {
    for (const [org, b] of this.#buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst) this.#buckets.delete(org)
    }
  }
}
