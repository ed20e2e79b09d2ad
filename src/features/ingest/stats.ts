/**
 * @module features/ingest/stats
 * The write side of ingest completeness (issue 9; docs/ingest-stats.md): counters per org, UTC
 * day and machine in `ingest_stats`, always inside a transaction that also does the work counted,
 * so a count is never lost or doubled against what it counts.
 *
 * - `recordAck`: what an ingest request answered (received, accepted, duplicates, rejected by
 *   reason, redactions) and the drops its sender reported; written in the request's own tenant
 *   transaction (src/features/ingest/service.ts) or the heartbeat's (features/machines/service.ts).
 * - `recordStored`: what the pipeline stored, with the receive → queryable lag as a fixed
 *   histogram; written in the pipeline's transaction (src/features/actions/store.ts).
 *
 * Every (org, day, machine) is split over SHARDS rows, each writer taking the one of its database
 * connection (backend pid mod SHARDS): one row would be updated by every request of an org and
 * serialise them on its lock (issue 9 asks that the statistics do not lower ingest throughput). A
 * random shard made concurrent requests collide on a row as often as not, each then waiting for
 * the other's commit (issue 13: 4 ms per 500-event ack at 8 concurrent senders); a connection
 * runs one transaction at a time, so it never waits for itself, and acks and the pipeline use
 * separate shards, so an ack never waits for a consumer. Reads sum the shards.
 */
import type { Tx } from '../../infra/db.ts'
import { reportQueryableLag } from '../../infra/metrics.ts'
import type { StoredAction } from '../actions/store.ts'

/** Rows per (org, day, machine) for each kind of writer; the table's CHECK allows 0–15 (sql/0033). */
export const SHARDS = 8

/**
 * Upper bounds (ms, inclusive) of the lag histogram's buckets, 1-2-5 spaced from 1 ms to 1 h;
 * one more bucket counts everything slower. Changing them invalidates stored histograms: add a
 * new column rather than editing this list.
 */
export const LAG_BUCKETS_MS: readonly number[] = [
  1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
  2_000_000, 3_600_000,
]

/** What one ingest request (or heartbeat) adds to its (day, machine). */
export interface AckCounts {
  /** UTC day of the server's receive time, `YYYY-MM-DD`. */
  day: string
  machineId: string | null
  received: number
  accepted: number
  duplicates: number
  /** By RejectCode; absent codes are zero. */
  rejected: Record<string, number>
  redactions: number
  edgeDropped: number
}

/** The shard of the connection running the statement (SQL): acks 0–7, the pipeline 8–15 (sql/0033). */
const ACK_SHARD = `pg_backend_pid() % ${SHARDS}`
const STORED_SHARD = `${SHARDS} + pg_backend_pid() % ${SHARDS}`

/** Adds one request's outcome to its (org, day, machine) in the caller's tenant transaction. */
export async function recordAck(tx: Tx, c: AckCounts): Promise<void> {
  await tx`
    insert into ingest_stats (org_id, day, machine_id, shard, received, accepted, duplicates, rejected, redactions, edge_dropped)
    values (app_current_org(), ${c.day}::date, ${c.machineId}::uuid, ${tx.unsafe(ACK_SHARD)}, ${c.received}::bigint, ${c.accepted}::bigint,
            ${c.duplicates}::bigint, ${tx.json(c.rejected)}::jsonb, ${c.redactions}::bigint, ${c.edgeDropped}::bigint)
    on conflict (org_id, day, machine_id, shard) do update set
      received     = ingest_stats.received + excluded.received,
      accepted     = ingest_stats.accepted + excluded.accepted,
      duplicates   = ingest_stats.duplicates + excluded.duplicates,
      rejected     = case when excluded.rejected = '{}' then ingest_stats.rejected
                          else quint_add_counts(ingest_stats.rejected, excluded.rejected) end,
      redactions   = ingest_stats.redactions + excluded.redactions,
      edge_dropped = ingest_stats.edge_dropped + excluded.edge_dropped`
}

/** The bucket index of a lag: the first bound it does not exceed, or the overflow bucket. */
export function lagBucket(ms: number): number {
  for (let i = 0; i < LAG_BUCKETS_MS.length; i++) if (ms <= LAG_BUCKETS_MS[i]!) return i
  return LAG_BUCKETS_MS.length
}

/**
 * The lag at quantile `q` of a histogram: the upper bound of the bucket holding that rank, capped
 * by the largest lag seen (so the answer is never below the truth and never above the maximum);
 * null when the histogram is empty.
 */
export function lagQuantile(buckets: readonly number[], maxMs: number | null, q: number): number | null {
  const total = buckets.reduce((n, c) => n + c, 0)
  if (total === 0) return null
  const rank = Math.max(1, Math.ceil(q * total))
  let seen = 0
  for (let i = 0; i < buckets.length; i++) {
    seen += buckets[i]!
    if (seen >= rank) {
      const bound = LAG_BUCKETS_MS[i] ?? Number.POSITIVE_INFINITY
      return maxMs === null ? (Number.isFinite(bound) ? bound : null) : Math.min(bound, maxMs)
    }
  }
  return maxMs
}

/**
 * Counts what the pipeline stored, per (receive day, machine), with the lag from the server's
 * receive time to now (this transaction is the one that makes the rows queryable; its commit
 * follows at once). A lag below zero (clocks of two instances apart) counts as 0.
 */
export async function recordStored(tx: Tx, stored: StoredAction[]): Promise<void> {
  if (stored.length === 0) return
  const now = Date.now()
  const groups = new Map<string, { day: string; machine_id: string | null; stored: number; lag: number[]; max: number }>()
  const lags = new Float64Array(stored.length)
  stored.forEach((s, i) => {
    const lag = Math.max(0, now - Date.parse(s.createdAt))
    lags[i] = lag / 1000
    const day = s.createdAt.slice(0, 10)
    const key = `${day}|${s.machineId ?? ''}`
    let g = groups.get(key)
    if (!g) {
      g = { day, machine_id: s.machineId, stored: 0, lag: new Array<number>(LAG_BUCKETS_MS.length + 1).fill(0), max: 0 }
      groups.set(key, g)
    }
    g.stored++
    g.lag[lagBucket(lag)]!++
    g.max = Math.max(g.max, Math.round(lag))
  })
  // In key order: two pipeline transactions of one org (they run side by side, issue 13) lock
  // the same machines' rows in one order, so they queue instead of deadlocking.
  const rows = [...groups.entries()]
    .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
    .map(([, g]) => ({
      day: g.day,
      machine_id: g.machine_id,
      stored: g.stored,
      lag_buckets: g.lag,
      lag_max_ms: g.max,
    }))
  const redactions = stored.reduce((n, r) => n + r.event.redactions, 0)
  // One statement (one round trip in the pipeline's transaction) for every group of the batch,
  // all on one shard so no two rows of it meet on one key; and for `org_ingest_stats`, the
  // per-org daily summary that predates ingest_stats (stored events and their redactions), kept
  // as it was for the queries that read it.
  await tx`
    with per_machine as (
      insert into ingest_stats (org_id, day, machine_id, shard, stored, lag_buckets, lag_max_ms)
      select app_current_org(), r.day, r.machine_id, ${tx.unsafe(STORED_SHARD)}, r.stored, r.lag_buckets, r.lag_max_ms
        from jsonb_to_recordset(${tx.json(rows as never)}::jsonb)
             as r(day date, machine_id uuid, stored bigint, lag_buckets bigint[], lag_max_ms bigint)
      on conflict (org_id, day, machine_id, shard) do update set
        stored      = ingest_stats.stored + excluded.stored,
        lag_buckets = quint_add_buckets(ingest_stats.lag_buckets, excluded.lag_buckets),
        lag_max_ms  = greatest(ingest_stats.lag_max_ms, excluded.lag_max_ms)
    )
    insert into org_ingest_stats (org_id, day, stored, redactions)
    values (app_current_org(), (now() at time zone 'utc')::date, ${stored.length}, ${redactions})
    on conflict (org_id, day) do update
      set stored = org_ingest_stats.stored + excluded.stored,
          redactions = org_ingest_stats.redactions + excluded.redactions`
  // To `quint_ingest_queryable_lag_seconds` (this may be a consumer thread: see reportQueryableLag).
  // Reported before the commit: a batch retried after a failed transaction is observed again.
  reportQueryableLag(lags)
}
