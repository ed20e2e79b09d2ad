/**
 * @module features/auth-tokens/revocation-poll
 * Without Redis nothing carries a JWT revocation from the instance that made it to the others,
 * and a loaded filter answers "definitely not revoked" for what it never heard of. So instances
 * without Redis poll Postgres for revocations committed since their last look and add them to
 * their filter (which evicts the validator's caches): another instance refuses a revoked token
 * within about one poll interval. The window overlaps the previous one by `overlapMs`, because
 * `revoked_at` is a transaction's start time and a long transaction commits after later ones;
 * jtis already added inside the window are not added again.
 */
import type { RevocationFilter } from '../../auth/revocation-filter.ts'
import type { Sql } from '../../infra/db.ts'
import type { Logger } from '../../infra/log.ts'
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
  readonly #seen = new Map<string, number>()
  #timer: ReturnType<typeof setInterval> | null = null
  #running: Promise<void> | null = null

  constructor(options: RevocationPollOptions) {
    this.#o = { everyMs: 2_000, overlapMs: 30_000, ...options }
  }

  /** Starts from the database's present: what was revoked before is in the filter's rebuild. */
  async start(): Promise<void> {
    this.#cursor = (await databaseNow(this.#o.sql)).getTime()
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
      if (fresh.length > 0) await this.#o.filter.add(fresh.map(({ orgId, jti }) => ({ orgId, jti })))
      for (const r of fresh) this.#seen.set(`${r.orgId}/${r.jti}`, r.at)
      added = fresh.length
      const latest = rows.reduce((m, r) => Math.max(m, r.at), cursor)
      this.#cursor = latest
      for (const [k, at] of this.#seen) if (at < latest - this.#o.overlapMs) this.#seen.delete(k)
    })()
      .catch((err: unknown) => this.#o.log.error({ err }, 'polling revocations failed; will retry'))
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
