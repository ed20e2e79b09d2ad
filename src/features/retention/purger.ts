/**
 * @module features/retention/purger
 * The retention purge job (issue 9; docs/retention.md). One run: drop the month partitions of
 * `actions` that no org needs any more, then, org by org, delete what is past the org's
 * `retention_days` in bounded batches, each batch its own short transaction under the org's
 * tenant context. The SQL that decides what is expired lives in the database
 * (`quint_purge_expired`, sql/0019_retention.sql): the runtime role has no DELETE on events.
 *
 * Safe on several instances at once: each batch takes a per-org transaction advisory lock, and an
 * instance that finds an org locked leaves that org to the instance holding it. Deletes are
 * idempotent, so whatever the interleaving every expired row is deleted exactly once.
 */
import { withOrg, withSettings, type Sql } from '../../infra/db.ts'
import type { Logger } from '../../infra/log.ts'

/**
 * What a run purges, in order. Ledgers come last: their keys must outlive the rows they
 * deduplicate (docs/retention.md), so they are pruned only after those rows are gone.
 */
export const PURGE_TARGETS = [
  'actions',
  'alerts',
  'sessions',
  'webhook_deliveries',
  'alert_session_state',
  'session_flows',
  'event_hourly',
  'event_hourly_top',
  'ingest_stats',
  'event_keys',
  'session_event_keys',
] as const
export type PurgeTarget = (typeof PURGE_TARGETS)[number]

/** Rows per DELETE statement: short transactions, bounded WAL per commit, no long row locks. */
export const DEFAULT_BATCH_ROWS = 5_000

export interface PurgeReport {
  /** The clock the run used (ISO). */
  now: string
  /** Month partitions of `actions` dropped whole. */
  partitions: string[]
  /** Rows deleted per table, all orgs together. */
  deleted: Record<PurgeTarget, number>
  /** Orgs purged by this run; orgs another instance held at the time are in `skipped_orgs`. */
  orgs: number
  skipped_orgs: number
  /** Delete statements run (each at most `batchRows` rows). */
  batches: number
  /** Stopped early by `stop()`: the rest is left for the next run. */
  interrupted: boolean
}

export interface PurgerOptions {
  sql: Sql
  log: Logger
  /** The clock; tests move it. Never ahead of the database's clock (sql/0019 refuses that). */
  now?: () => Date
  batchRows?: number
}

export class RetentionPurger {
  readonly #sql: Sql
  readonly #log: Logger
  readonly #now: () => Date
  readonly #batchRows: number
  #stopping = false
  #timer: ReturnType<typeof setTimeout> | null = null
  #running: Promise<unknown> | null = null

  constructor(o: PurgerOptions) {
    this.#sql = o.sql
    this.#log = o.log
    this.#now = o.now ?? (() => new Date())
    this.#batchRows = o.batchRows ?? DEFAULT_BATCH_ROWS
    if (!Number.isInteger(this.#batchRows) || this.#batchRows < 1 || this.#batchRows > 50_000) {
      throw new RangeError('batchRows must be an integer between 1 and 50000')
    }
  }

  /** One full run. Two runs in one process never overlap: a second call waits for the first. */
  async runOnce(): Promise<PurgeReport> {
    while (this.#running) await this.#running.catch(() => {})
    const run = this.#run()
    this.#running = run
    try {
      return await run
    } finally {
      this.#running = null
    }
  }

  /**
   * Runs every `intervalMs`, the first run after a random part of a minute so that instances
   * started together spread out. A failed run is logged and retried at the next interval.
   */
  start(intervalMs: number): void {
    if (this.#timer || this.#stopping) return
    const schedule = (ms: number) => {
      this.#timer = setTimeout(() => {
        void this.runOnce()
          .catch((err: unknown) => this.#log.error({ err }, 'retention purge failed'))
          .finally(() => {
            if (!this.#stopping) schedule(intervalMs)
          })
      }, ms)
      this.#timer.unref?.()
    }
    schedule(Math.min(intervalMs, 30_000 + Math.floor(Math.random() * 30_000)))
  }

  /** No new batch starts; waits for the one in flight (a single short statement). */
  async stop(): Promise<void> {
    this.#stopping = true
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    await this.#running?.catch(() => {})
  }

  async #run(): Promise<PurgeReport> {
    const now = this.#now()
    const report: PurgeReport = {
      now: now.toISOString(),
      partitions: [],
      deleted: Object.fromEntries(PURGE_TARGETS.map((t) => [t, 0])) as Record<PurgeTarget, number>,
      orgs: 0,
      skipped_orgs: 0,
      batches: 0,
      interrupted: false,
    }
    const at = report.now
    // Whole months first: the cheapest way to remove most expired rows.
    const dropped = await this.#sql<{ name: string }[]>`
      select quint_drop_expired_actions_partitions(${at}::timestamptz) as name`
    report.partitions = dropped.map((r) => r.name)

    const orgs = await withSettings(
      this.#sql,
      { 'app.retention_discovery': 'on' },
      (tx) => tx<{ id: string }[]>`select id from organizations order by id`,
    )
    for (const { id } of orgs) {
      if (this.#stopping) {
        report.interrupted = true
        break
      }
      const outcome = await this.#purgeOrg(id, at, report)
      if (outcome === 'skipped') report.skipped_orgs++
      else report.orgs++
    }
    const total = Object.values(report.deleted).reduce((a, b) => a + b, 0)
    this.#log.info(
      {
        now: report.now,
        partitions: report.partitions,
        deleted: report.deleted,
        orgs: report.orgs,
        skipped_orgs: report.skipped_orgs,
        batches: report.batches,
        interrupted: report.interrupted,
      },
      total > 0 || report.partitions.length > 0 ? 'retention purge removed expired data' : 'retention purge: nothing expired',
    )
    return report
  }

  /** Every target of one org, batch after batch, until a batch comes back short. */
  async #purgeOrg(orgId: string, at: string, report: PurgeReport): Promise<'done' | 'skipped'> {
    for (const target of PURGE_TARGETS) {
      for (;;) {
        if (this.#stopping) {
          report.interrupted = true
          return 'done'
        }
        const n = await withOrg(this.#sql, orgId, async (tx) => {
          // Transaction-scoped: released at commit, or by the server if this process dies.
          const [lock] = await tx<{ ok: boolean }[]>`
            select pg_try_advisory_xact_lock(hashtext('quint_retention_purge'), hashtext(${orgId})) as ok`
          if (!lock?.ok) return null
          const [row] = await tx<{ n: number }[]>`
            select quint_purge_expired(${target}, ${at}::timestamptz, ${this.#batchRows}::int) as n`
          return row!.n
        })
        // Another instance is purging this org right now: it finishes the org.
        if (n === null) return 'skipped'
        report.batches++
        report.deleted[target] += n
        if (n < this.#batchRows) break
      }
    }
    return 'done'
  }
}
