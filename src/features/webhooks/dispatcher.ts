/**
 * @module features/webhooks/dispatcher
 * The webhook delivery loop. It runs on the main thread beside HTTP: its work is a few short
 * queries and outgoing `fetch` calls (I/O waits, no CPU worth a thread), and it never holds a
 * database connection while a request is in flight (see ./queue.ts: claims are leases).
 *
 * A continuous scheduler, with no round barrier: while slots are free it picks orgs with due work
 * (`webhook_dispatch`), claims for each a share of the free slots, and starts every claimed
 * delivery as its own task, which sends one attempt and records it in its own short transaction.
 * A finished task frees its slot and wakes the loop. So one org's endpoint that never answers
 * holds only its own slots, never another org's delivery (issue 14: a round used to wait for
 * every org's attempts). Slots are capped in all (`concurrency`), per org (`concurrencyPerOrg`)
 * and per endpoint (`concurrencyPerEndpoint`); orgs with the fewest attempts in flight are served
 * first, each to a fair share of what is free, and orgs with nothing claimable are set aside until
 * one of their attempts ends (or `pollMs`), so a saturated org never hides the others.
 *
 * Outcomes: 2xx → succeeded; 410 → failed and the endpoint disabled; anything else (other
 * statuses, redirects, timeouts, network errors, a target refused by the SSRF guard) → retried
 * with exponential backoff and full jitter, a longer Retry-After winning, until the attempts run
 * out (`dead`). Every failed attempt is logged (ids, attempt, status or error class, next retry),
 * never with a secret or the URL (its query may carry a token). Secrets are opened only to sign.
 */
import type { SecretBox } from '../../auth/secret-box.ts'
import { withOrg, type Sql } from '../../infra/db.ts'
import { errorKind, ThrottledLog, type Logger } from '../../infra/log.ts'
import type { Metrics } from '../../infra/metrics.ts'
import { claimDue, dueOrgs, recordOutcomes, type AttemptOutcome, type ClaimedDelivery } from './queue.ts'
import { secretContext } from './repo.ts'
import { signDelivery } from './signing.ts'
import { DnsLookupError, resolveTarget, TargetRefusedError, type TargetPolicy } from './url-guard.ts'

export interface DispatcherOptions {
  sql: Sql
  secrets: SecretBox
  log: Logger
  policy: TargetPolicy
  timeoutMs: number
  maxAttempts: number
  retryBaseMs: number
  /** The longest wait between looks for due work when no attempt ends meanwhile. */
  pollMs: number
  userAgent?: string
  /** Attempts in flight at once in this process, all orgs together. */
  concurrency?: number
  /** Attempts in flight at once to one webhook. */
  concurrencyPerEndpoint?: number
  /** Attempts in flight at once for one org. */
  concurrencyPerOrg?: number
  /** Orgs looked at per pass. */
  orgs?: number
  metrics?: Metrics
}

/** Why an attempt did not succeed, or that it did: the `outcome` label and the logged error class. */
export type AttemptClass =
  | 'success'
  | 'http_error'
  | 'redirect'
  | 'gone'
  | 'timeout'
  | 'network_error'
  | 'dns_error'
  | 'target_refused'
  | 'webhook_disabled'
  | 'secret_error'

/** The backoff ceiling stops growing here; 8 attempts with the default base span about a day. */
export const MAX_BACKOFF_MS = 16 * 3600 * 1000
/** A Retry-After longer than this is not honoured as such. */
const MAX_RETRY_AFTER_MS = 24 * 3600 * 1000
/** Added to the attempt timeout for the lease, so a slow record never lets a second instance in. */
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
  readonly #o: Required<Omit<DispatcherOptions, 'userAgent' | 'metrics'>> & { userAgent: string; metrics: Metrics | null }
  readonly #abort = new AbortController()
  #running = false
  #loop: Promise<void> | null = null
  /** Set when an attempt ended (a slot freed) since the loop last looked: look again at once. */
  #dirty = false
  #wake: (() => void) | null = null
  #inFlight = 0
  readonly #byOrg = new Map<string, number>()
  /** Per org, attempts in flight by webhook id. */
  readonly #byEndpoint = new Map<string, Map<string, number>>()
  /** Orgs with nothing claimable (every endpoint at its cap, or held by another instance), until when. */
  /**
   * Orgs with nothing claimable: skipped until one of their attempts ends, or until `pollMs` passed
   * and at least the next pass went by without them. Time alone let a pass slower than `pollMs`
   * (a loaded host) find the set-aside expired and look at the same org again and again, never at
   * the next one (a flaky test of this suite, seen under the full suite).
   */
  readonly #setAside = new Map<string, { until: number; pass: number }>()
  #passNo = 0
  readonly #tasks = new Set<Promise<number>>()
  /** Passes run one at a time (the loop and `runOnce`), so each sees the slots the previous one took. */
  #passes: Promise<unknown> = Promise.resolve()
  /** A database outage fails every pass the same way: one line per kind and interval (issue 14). */
  readonly #throttled: ThrottledLog

  constructor(options: DispatcherOptions) {
    const { metrics, ...rest } = options
    this.#o = {
      concurrency: 64,
      concurrencyPerEndpoint: 4,
      concurrencyPerOrg: 16,
      orgs: 64,
      userAgent: 'quint-cloud-webhooks',
      ...rest,
      metrics: metrics ?? null,
    }
    this.#throttled = new ThrottledLog(this.#o.log)
  }

  /** Attempts in flight now (tests and diagnostics). */
  get inFlight(): number {
    return this.#inFlight
  }

  /** Starts the scheduler; a failing pass is logged and the next one goes on. */
  start(): void {
    if (this.#running || this.#abort.signal.aborted) return
    this.#running = true
    this.#loop = this.#run()
  }

  /**
   * Stops the loop: nothing new is claimed, in-flight requests are aborted (their outcome is not
   * recorded, so each is retried when its lease ends: at least once, never lost), then waits for
   * the loop and every task.
   */
  async stop(): Promise<void> {
    this.#running = false
    this.#abort.abort()
    this.#wake?.()
    await this.#loop
    await Promise.all(this.#tasks)
  }

  /**
   * One pass (claim what the free slots allow), then waits for the attempts it started; returns
   * the number of attempts recorded. For tests and one-off runs; `start` is the service's loop.
   */
  async runOnce(): Promise<number> {
    const started: Promise<number>[] = []
    await this.#pass(started)
    return (await Promise.all(started)).reduce((a, b) => a + b, 0)
  }

  async #run(): Promise<void> {
    while (this.#running) {
      let claimed = 0
      try {
        claimed = await this.#pass()
      } catch (err) {
        this.#throttled.error(`pass:${errorKind(err)}`, { err }, 'webhook delivery pass failed; will retry')
      }
      if (!this.#running) return
      // More may be due at once (a backlog larger than one pass took); otherwise wait for a slot
      // to free or for the poll interval.
      if (claimed > 0 && this.#free() > 0) continue
      await this.#sleep()
    }
  }

  #sleep(): Promise<void> {
    if (this.#dirty) {
      this.#dirty = false
      return Promise.resolve()
    }
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.#o.pollMs)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.#wake = () => {
        this.#wake = null
        done()
      }
    }).finally(() => {
      this.#wake = null
      this.#dirty = false
    })
  }

  #free(): number {
    return this.#o.concurrency - this.#inFlight
  }

  #pass(started?: Promise<number>[]): Promise<number> {
    const pass = this.#passes.then(() => this.#claimPass(started))
    this.#passes = pass.catch(() => {})
    return pass
  }

  /** Claims for orgs with due work, fewest in flight first, each up to a fair share of the free slots. */
  async #claimPass(started?: Promise<number>[]): Promise<number> {
    if (this.#free() <= 0 || this.#abort.signal.aborted) return 0
    const now = Date.now()
    const pass = ++this.#passNo
    for (const [org, aside] of this.#setAside) if (aside.until <= now && pass > aside.pass + 1) this.#setAside.delete(org)
    const exclude = new Set(this.#setAside.keys())
    for (const [org, n] of this.#byOrg) if (n >= this.#o.concurrencyPerOrg) exclude.add(org)
    const orgs = (await dueOrgs(this.#o.sql, this.#o.orgs, [...exclude])).map((r) => r.org)
    // Stable: among orgs with as many in flight, the most overdue stays first.
    orgs.sort((x, y) => (this.#byOrg.get(x) ?? 0) - (this.#byOrg.get(y) ?? 0))
    const leaseMs = this.#o.timeoutMs + LEASE_MARGIN_MS
    let claimed = 0
    for (let i = 0; i < orgs.length && this.#free() > 0; i++) {
      if (this.#abort.signal.aborted) break
      const org = orgs[i]!
      const share = Math.ceil(this.#free() / (orgs.length - i))
      const room = Math.min(share, this.#o.concurrencyPerOrg - (this.#byOrg.get(org) ?? 0))
      if (room <= 0) continue
      const busy = new Map(this.#byEndpoint.get(org) ?? [])
      let got: ClaimedDelivery[] | null
      try {
        got = await withOrg(this.#o.sql, org, (tx) =>
          claimDue(tx, { limit: room, perEndpoint: this.#o.concurrencyPerEndpoint, busy }, leaseMs),
        )
      } catch (err) {
        this.#throttled.error(
          `claim:${errorKind(err)}`,
          { err, org_id: org },
          'claiming webhook deliveries of an org failed; will retry',
        )
        got = null
      }
      if (!got || got.length === 0) {
        this.#setAside.set(org, { until: Date.now() + this.#o.pollMs, pass })
        continue
      }
      for (const d of got) {
        const task = this.#launch(org, d)
        started?.push(task)
      }
      claimed += got.length
    }
    return claimed
  }

  /** Starts one delivery as its own task holding one slot until its outcome is recorded. */
  #launch(org: string, d: ClaimedDelivery): Promise<number> {
    this.#inFlight++
    this.#byOrg.set(org, (this.#byOrg.get(org) ?? 0) + 1)
    let endpoints = this.#byEndpoint.get(org)
    if (!endpoints) this.#byEndpoint.set(org, (endpoints = new Map()))
    endpoints.set(d.webhook_id, (endpoints.get(d.webhook_id) ?? 0) + 1)
    this.#o.metrics?.webhookInFlight.inc()
    const task = this.#deliver(org, d)
      .catch((err: unknown) => {
        // The lease brings the delivery back; nothing else to do here.
        const ids = { org_id: org, webhook_id: d.webhook_id, delivery_id: d.id }
        this.#throttled.error(`record:${errorKind(err)}`, { err, ...ids }, 'recording a webhook attempt failed; will retry')
        return 0
      })
      .finally(() => {
        this.#inFlight--
        const n = (this.#byOrg.get(org) ?? 1) - 1
        if (n > 0) this.#byOrg.set(org, n)
        else this.#byOrg.delete(org)
        const e = (endpoints.get(d.webhook_id) ?? 1) - 1
        if (e > 0) endpoints.set(d.webhook_id, e)
        else endpoints.delete(d.webhook_id)
        if (endpoints.size === 0 && this.#byEndpoint.get(org) === endpoints) this.#byEndpoint.delete(org)
        this.#setAside.delete(org)
        this.#o.metrics?.webhookInFlight.dec()
        this.#tasks.delete(task)
        this.#dirty = true
        this.#wake?.()
      })
    this.#tasks.add(task)
    return task
  }

  async #deliver(org: string, d: ClaimedDelivery): Promise<number> {
    const attempt = await this.#attempt(org, d)
    if (!attempt) return 0
    const { outcome, kind, host, errorCode } = attempt
    const m = this.#o.metrics
    m?.webhookAttempts.inc({ outcome: kind })
    if (kind !== 'webhook_disabled') m?.webhookAttemptDuration.observe({ outcome: kind }, outcome.durationMs / 1000)
    if (kind !== 'success') {
      // One line per failed attempt (issue 14): ids, attempt, status or error class, next retry. No URL
      // (its query may hold a token), no error text (it may quote the host's answer), no secret.
      this.#o.log.warn(
        {
          org_id: org,
          webhook_id: d.webhook_id,
          delivery_id: d.id,
          attempt: d.attempt_count,
          max_attempts: this.#o.maxAttempts,
          outcome: kind,
          status: outcome.status,
          error_code: errorCode,
          host,
          duration_ms: outcome.durationMs,
          result: outcome.result === 'pending' ? 'retrying' : outcome.result,
          next_attempt_at: outcome.nextAttemptAt?.toISOString() ?? null,
          webhook_disabled: outcome.disableWebhook !== null,
        },
        'webhook attempt failed',
      )
    }
    const applied = await withOrg(this.#o.sql, org, (tx) => recordOutcomes(tx, [outcome]))
    if (applied > 0 && outcome.result !== 'pending') m?.webhookDeliveries.inc({ result: outcome.result })
    return applied
  }

  /** One HTTP attempt; null when aborted by shutdown (not recorded: the lease brings it back). */
  async #attempt(
    orgId: string,
    d: ClaimedDelivery,
  ): Promise<{ outcome: AttemptOutcome; kind: AttemptClass; host: string | null; errorCode: string | null } | null> {
    const at = new Date()
    const started = performance.now()
    const base = { id: d.id, attemptCount: d.attempt_count, at, disableWebhook: null }
    const host = hostOnly(d.url)
    if (!d.webhook_enabled) {
      return {
        outcome: {
          ...base,
          durationMs: 0,
          status: null,
          error: 'the webhook is disabled',
          result: 'failed',
          nextAttemptAt: null,
        },
        kind: 'webhook_disabled',
        host,
        errorCode: null,
      }
    }
    let status: number | null = null
    let error: string | null = null
    let kind: AttemptClass = 'success'
    let errorCode: string | null = null
    let retryAfterMs: number | null = null
    // One budget for the lookup and the request, both ended by shutdown too. Always a timeout:
    // Bun may reuse a half-open pooled socket that would otherwise hang for minutes (oven-sh/bun#31894).
    const signal = AbortSignal.any([AbortSignal.timeout(this.#o.timeoutMs), this.#abort.signal])
    try {
      await resolveTarget(d.url, this.#o.policy, signal)
      const body = JSON.stringify(d.payload)
      let secrets: string[]
      try {
        secrets = this.#openSecrets(orgId, d)
      } catch {
        throw new SecretUnreadableError('the signing secret could not be opened (was AUTH_MASTER_KEY changed?)')
      }
      const headers = signDelivery(d.message_id, Math.floor(Date.now() / 1000), body, secrets)
      const res = await fetch(d.url, {
        method: 'POST',
        body,
        headers: { ...headers, 'content-type': 'application/json', 'user-agent': this.#o.userAgent },
        // A redirect could point anywhere, a private address included: it is an answer, never followed.
        redirect: 'manual',
        signal,
      })
      status = res.status
      retryAfterMs = parseRetryAfter(res.headers.get('retry-after'))
      // The body is never read: only the status matters, and a huge or endless body must not stall
      // us. Not awaited: cancelling only releases the socket.
      res.body?.cancel().catch(() => {})
    } catch (err) {
      if (this.#abort.signal.aborted) return null
      kind = classify(err)
      error = describeError(err, this.#o.timeoutMs)
      errorCode = errorCodeOf(err)
    }
    const durationMs = Math.round(performance.now() - started)
    const result = (outcome: AttemptOutcome) => ({ outcome, kind, host, errorCode })
    if (status !== null && status >= 200 && status < 300) {
      return result({ ...base, durationMs, status, error: null, result: 'succeeded', nextAttemptAt: null })
    }
    if (status === 410) {
      kind = 'gone'
      return result({
        ...base,
        durationMs,
        status,
        error: 'the endpoint answered 410 Gone; the webhook was disabled',
        result: 'failed',
        nextAttemptAt: null,
        disableWebhook: { webhookId: d.webhook_id, reason: `endpoint answered 410 Gone at ${at.toISOString()}` },
      })
    }
    if (status !== null) {
      const redirect = status >= 300 && status < 400
      kind = redirect ? 'redirect' : 'http_error'
      error = redirect ? `redirect (HTTP ${status}) not followed` : `HTTP ${status}`
    }
    if (d.attempt_count >= this.#o.maxAttempts) {
      return result({ ...base, durationMs, status, error, result: 'dead', nextAttemptAt: null })
    }
    const delay = retryDelayMs(d.attempt_count, this.#o.retryBaseMs, retryAfterMs)
    return result({ ...base, durationMs, status, error, result: 'pending', nextAttemptAt: new Date(Date.now() + delay) })
  }

  /** The current secret, and the previous one while its grace period lasts. */
  #openSecrets(orgId: string, d: ClaimedDelivery): string[] {
    const context = secretContext(orgId, d.webhook_id)
    const out = [this.#o.secrets.open(d.secret_ciphertext, context).toString('utf8')]
    if (d.previous_secret_ciphertext) out.push(this.#o.secrets.open(d.previous_secret_ciphertext, context).toString('utf8'))
    return out
  }
}

class SecretUnreadableError extends Error {
  override name = 'SecretUnreadableError'
}

/** The host alone: what an operator needs to tell endpoints apart, without the path or query. */
function hostOnly(url: string): string | null {
  try {
    return new URL(url).host
  } catch {
    return null
  }
}

function classify(err: unknown): AttemptClass {
  if (err instanceof TargetRefusedError) return 'target_refused'
  if (err instanceof DnsLookupError) return 'dns_error'
  if (err instanceof SecretUnreadableError) return 'secret_error'
  const name = (err as { name?: string })?.name
  if (name === 'TimeoutError' || name === 'AbortError') return 'timeout'
  return 'network_error'
}

/** A short code (ECONNREFUSED, ConnectionRefused, …) when the error has one: never free text. */
function errorCodeOf(err: unknown): string | null {
  const code = (err as { code?: unknown })?.code
  return typeof code === 'string' && /^[A-Za-z0-9_]{1,64}$/.test(code) ? code : null
}

function describeError(err: unknown, timeoutMs: number): string {
  if (err instanceof TargetRefusedError) return `target refused: ${err.message}`.slice(0, ERROR_MAX)
  if (err instanceof SecretUnreadableError) return `not sent: ${err.message}`
  const e = err as { name?: string; message?: string; code?: string }
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `timed out after ${timeoutMs} ms`
  // Bun's fetch errors may lack a Node-style code (PITFALLS §3): keep the message.
  const detail = [e?.code, e?.message].filter(Boolean).join(': ') || String(err)
  return `request failed: ${detail}`.slice(0, ERROR_MAX)
}
