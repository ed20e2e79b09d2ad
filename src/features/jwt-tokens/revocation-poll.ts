/**
 * @module features/jwt-tokens/revocation-poll
 * Without Redis nothing carries a JWT revocation from the instance that made it to the others,
 * and a loaded filter answers "definitely not revoked" for what it never heard of. So instances
 * without Redis poll Postgres for revocations committed since their last look and add them to
 * their filter (which evicts the validator's caches): another instance refuses a revoked token
 * within about one poll interval. The window overlaps the previous one by `overlapMs`, because
 * `revoked_at` is a transaction's start time and a long transaction commits after later ones;
 * jtis already added inside the window are not added again.
 *
 * Each revocation is handed over with its age on the database's clock (`committedAt`, translated
 * to this host's), so the filter can observe the revocation SLO (issue 14,
 * `quint_revocation_propagation_seconds{path="poll"}`). Revocations older than this poll's start
 * are in the filter's first rebuild, not propagated by the poll: they are added but not observed.
 */
import type { RevocationFilter } from '../../auth/jwt/revocation-filter.ts'
import type { Sql } from '../../infra/db.ts'
import { errorKind, ThrottledLog, type Logger } from '../../infra/log.ts'
import { databaseNow, revokedSince } from './repo.ts'

export interface RevocationPollOptions {
  sql: Sql
  filter: Pick<RevocationFilter, 'add'>
  log: Logger
  everyMs?: number
  overlapMs?: number
}

export class RevocationPoll {
  readonly #o: Required<RevocationPollOptions>
  #cursor: number | null = null
  /** Database time of `start`: older revocations came with the rebuild, not through this poll. */
  #startedAt: number | null = null
  readonly #seen = new Map<string, number>()
  #timer: ReturnType<typeof setInterval> | null = null
  #running: Promise<void> | null = null
  /** A database outage fails every look the same way: one line per kind and interval (issue 14). */
  readonly #throttled: ThrottledLog

  constructor(options: RevocationPollOptions) {
    this.#o = { everyMs: 2_000, overlapMs: 30_000, ...options }
    this.#throttled = new ThrottledLog(this.#o.log)
  }

  /** Starts from the database's present: what was revoked before is in the filter's rebuild. */
  async start(): Promise<void> {
    this.#cursor = (await databaseNow(this.#o.sql)).getTime()
    this.#startedAt = this.#cursor
    this.#timer = setInterval(() => void this.pollOnce(), this.#o.everyMs)
    this.#timer.unref()
  }

  /** One look; returns how many revocations were new to this instance. */
  async pollOnce(): Promise<number> {
    if (this.#running) return this.#running.then(() => 0)
    let added = 0
    this.#running = (async () => {
      const cursor = this.#cursor ?? (await databaseNow(this.#o.sql)).getTime()
      const rows = await revokedSince(this.#o.sql, new Date(cursor - this.#o.overlapMs))
      const fresh = rows.filter((r) => !this.#seen.has(`${r.orgId}/${r.jti}`))
      const now = Date.now()
      const startedAt = this.#startedAt ?? cursor
      const entries = fresh.map(({ orgId, jti, at, ageMs }) =>
        at >= startedAt ? { orgId, jti, committedAt: now - Math.max(0, ageMs) } : { orgId, jti },
      )
      if (entries.length > 0) await this.#o.filter.add(entries, { path: 'poll' })
      for (const r of fresh) this.#seen.set(`${r.orgId}/${r.jti}`, r.at)
      added = fresh.length
      const latest = rows.reduce((m, r) => Math.max(m, r.at), cursor)
      this.#cursor = latest
      for (const [k, at] of this.#seen) if (at < latest - this.#o.overlapMs) this.#seen.delete(k)
    })()
      .catch((err: unknown) => this.#throttled.error(errorKind(err), { err }, 'polling revocations failed; will retry'))
      .finally(() => {
        this.#running = null
      })
    await this.#running
    return added
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = null
    await this.#running
  }
}
