/**
 * @module features/webhooks/dispatcher
 * The webhook delivery loop. It runs on the main thread beside HTTP: its work is a few short
 * queries and outgoing `fetch` calls (I/O waits, no CPU worth a thread), and it never holds a
 * database connection while a request is in flight (see ./queue.ts: claims are leases).
 *
 * One round: pick orgs with due work (`webhook_dispatch`), and for each (a few at a time) claim
 * its due deliveries, send them concurrently, and record every attempt. Outcomes:
 * 2xx → succeeded; 410 → failed and the endpoint disabled; anything else (other statuses,
 * redirects, timeouts, network errors, a target refused by the SSRF guard) → retried with
 * exponential backoff and full jitter, a longer Retry-After winning, until the attempts run out
 * (`dead`). Secrets are opened only to sign, and neither they nor URLs (which may carry tokens in
 * their query) are logged.
 */
import type { SecretBox } from '../../auth/secret-box.ts'
import { withOrg, type Sql } from '../../infra/db.ts'
import type { Logger } from '../../infra/log.ts'
import { claimDue, dueOrgs, recordOutcomes, type AttemptOutcome, type ClaimedDelivery } from './queue.ts'
import { secretContext } from './repo.ts'
import { signDelivery } from './signing.ts'
import { resolveTarget, TargetRefusedError, type TargetPolicy } from './url-guard.ts'

export interface DispatcherOptions {
  sql: Sql
  secrets: SecretBox
  log: Logger
  policy: TargetPolicy
  timeoutMs: number
  maxAttempts: number
  retryBaseMs: number
  pollMs: number
  userAgent?: string
  /** Deliveries claimed per org per round. */
  batch?: number
  /** Orgs picked per round. */
  orgs?: number
  /** Orgs worked on at once. */
  parallelOrgs?: number
}

/** The backoff ceiling stops growing here; 8 attempts with the default base span about a day. */
export const MAX_BACKOFF_MS = 16 * 3600 * 1000
/** A Retry-After longer than this is not honoured as such. */
const MAX_RETRY_AFTER_MS = 24 * 3600 * 1000
/** Added to the attempt timeout for the lease, so a slow round never lets a second instance in. */
const LEASE_MARGIN_MS = 30_000
const ERROR_MAX = 500

/** Full jitter: a uniform delay in [0, min(cap, base·4^(attempt-1))), never shorter than Retry-After. */
export function retryDelayMs(attempt: number, baseMs: number, retryAfterMs: number | null, random = Math.random): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, baseMs * 4 ** Math.max(0, attempt - 1))
  const jittered = Math.floor(random() * ceiling)
  return retryAfterMs === null ? jittered : Math.max(jittered, Math.min(retryAfterMs, MAX_RETRY_AFTER_MS))
}

/** Retry-After as delay-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (value === null) return null
  const v = value.trim()
  if (/^\d+$/.test(v)) return Number(v) * 1000
  const at = Date.parse(v)
  return Number.isNaN(at) ? null : Math.max(0, at - now)
}

export class WebhookDispatcher {
  readonly #o: Required<Omit<DispatcherOptions, 'userAgent'>> & { userAgent: string }
  readonly #abort = new AbortController()
  #timer: ReturnType<typeof setTimeout> | null = null
  #round: Promise<unknown> | null = null
  #running = false

  constructor(options: DispatcherOptions) {
    this.#o = { batch: 20, orgs: 32, parallelOrgs: 4, userAgent: 'quint-cloud-webhooks', ...options }
  }

  /** Starts polling every `pollMs`; a failing round is logged and the next one goes on. */
  start(): void {
    if (this.#running) return
    this.#running = true
    const tick = () => {
      this.#timer = null
      this.#round = this.runOnce()
        .catch((err: unknown) => this.#o.log.error({ err }, 'webhook delivery round failed; will retry'))
        .finally(() => {
          this.#round = null
          if (this.#running) {
            this.#timer = setTimeout(tick, this.#o.pollMs)
            this.#timer.unref?.()
          }
        })
    }
    this.#timer = setTimeout(tick, this.#o.pollMs)
    this.#timer.unref?.()
  }

  /**
   * Stops the loop: no new round, in-flight requests aborted (their outcome is not recorded, so
   * each is retried when its lease ends: at least once, never lost), then waits for the round.
   */
  async stop(): Promise<void> {
    this.#running = false
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    this.#abort.abort()
    await this.#round
  }

  /** One round over every org with due work; returns the number of attempts recorded. */
  async runOnce(): Promise<number> {
    const orgs = await dueOrgs(this.#o.sql, this.#o.orgs)
    let recorded = 0
    const queue = orgs.map((r) => r.org)
    const workers = Array.from({ length: Math.min(this.#o.parallelOrgs, queue.length) }, async () => {
      for (let org = queue.shift(); org !== undefined; org = queue.shift()) {
        if (this.#abort.signal.aborted) return
        try {
          recorded += await this.#runOrg(org)
        } catch (err) {
          this.#o.log.error({ err, org_id: org }, 'webhook deliveries of an org failed; will retry')
        }
      }
    })
    await Promise.all(workers)
    return recorded
  }

  async #runOrg(orgId: string): Promise<number> {
    const leaseMs = this.#o.timeoutMs + LEASE_MARGIN_MS
    const claimed = await withOrg(this.#o.sql, orgId, (tx) => claimDue(tx, this.#o.batch, leaseMs))
    if (!claimed || claimed.length === 0) return 0
    const outcomes = await Promise.all(claimed.map((d) => this.#attempt(orgId, d)))
    const done = outcomes.filter((o): o is AttemptOutcome => o !== null)
    if (done.length === 0) return 0
    return withOrg(this.#o.sql, orgId, (tx) => recordOutcomes(tx, done))
  }

  /** One HTTP attempt; null when aborted by shutdown (not recorded: the lease brings it back). */
  async #attempt(orgId: string, d: ClaimedDelivery): Promise<AttemptOutcome | null> {
    const at = new Date()
    const started = performance.now()
    const base = { id: d.id, attemptCount: d.attempt_count, at, disableWebhook: null }
    const elapsed = () => Math.round(performance.now() - started)
    if (!d.webhook_enabled) {
      return { ...base, durationMs: 0, status: null, error: 'the webhook is disabled', result: 'failed', nextAttemptAt: null }
    }
    let status: number | null = null
    let error: string | null = null
    let retryAfterMs: number | null = null
    // One budget for the lookup and the request, both ended by shutdown too.
    const signal = AbortSignal.any([AbortSignal.timeout(this.#o.timeoutMs), this.#abort.signal])
    try {
      await resolveTarget(d.url, this.#o.policy, signal)
      const body = JSON.stringify(d.payload)
      const headers = signDelivery(d.message_id, Math.floor(Date.now() / 1000), body, this.#openSecrets(orgId, d))
      const res = await fetch(d.url, {
        method: 'POST',
        body,
        headers: { ...headers, 'content-type': 'application/json', 'user-agent': this.#o.userAgent },
        redirect: 'manual',
        signal,
      })
      status = res.status
      retryAfterMs = parseRetryAfter(res.headers.get('retry-after'))
      // The body is not read: only the status matters, and a huge or endless body must not stall us.
      await res.body?.cancel().catch(() => {})
    } catch (err) {
      if (this.#abort.signal.aborted) return null
      error = describeError(err, this.#o.timeoutMs)
    }
    const durationMs = elapsed()
    if (status !== null && status >= 200 && status < 300) {
      return { ...base, durationMs, status, error: null, result: 'succeeded', nextAttemptAt: null }
    }
    if (status === 410) {
      this.#o.log.warn({ org_id: orgId, webhook_id: d.webhook_id }, 'webhook endpoint answered 410 Gone; disabled')
      return {
        ...base,
        durationMs,
        status,
        error: 'the endpoint answered 410 Gone; the webhook was disabled',
        result: 'failed',
        nextAttemptAt: null,
        disableWebhook: { webhookId: d.webhook_id, reason: `endpoint answered 410 Gone at ${at.toISOString()}` },
      }
    }
    if (status !== null) error = status >= 300 && status < 400 ? `redirect (HTTP ${status}) not followed` : `HTTP ${status}`
    if (d.attempt_count >= this.#o.maxAttempts) {
      this.#o.log.warn({ org_id: orgId, webhook_id: d.webhook_id, delivery_id: d.id, attempts: d.attempt_count }, 'webhook delivery dead after its last attempt')
      return { ...base, durationMs, status, error, result: 'dead', nextAttemptAt: null }
    }
    const delay = retryDelayMs(d.attempt_count, this.#o.retryBaseMs, retryAfterMs)
    this.#o.log.debug({ org_id: orgId, webhook_id: d.webhook_id, delivery_id: d.id, status, error, retry_in_ms: delay }, 'webhook attempt failed')
    return { ...base, durationMs, status, error, result: 'pending', nextAttemptAt: new Date(Date.now() + delay) }
  }

  /** The current secret, and the previous one while its grace period lasts. */
  #openSecrets(orgId: string, d: ClaimedDelivery): string[] {
    const context = secretContext(orgId, d.webhook_id)
    const out = [this.#o.secrets.open(d.secret_ciphertext, context).toString('utf8')]
    if (d.previous_secret_ciphertext) out.push(this.#o.secrets.open(d.previous_secret_ciphertext, context).toString('utf8'))
    return out
  }
}

function describeError(err: unknown, timeoutMs: number): string {
  if (err instanceof TargetRefusedError) return `target refused: ${err.message}`.slice(0, ERROR_MAX)
  const e = err as { name?: string; message?: string; code?: string }
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `timed out after ${timeoutMs} ms`
  // Bun's fetch errors may lack a Node-style code (PITFALLS §3): keep the message.
  const detail = [e?.code, e?.message].filter(Boolean).join(': ') || String(err)
  return `request failed: ${detail}`.slice(0, ERROR_MAX)
}
