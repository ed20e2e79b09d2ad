/**
 * @module workers/consume
 * The local bus consumer loop. For one consumer: find orgs with pending batches (the
 * `bus_discovery` policy shows pending ids, nothing else), then per org, in one tenant
 * transaction, claim batches in order by deleting their pending rows, apply the handler, and
 * commit. The claim and the effects commit together, so each batch is applied exactly once; a
 * crash rolls both back and the batch is taken again.
 */
import { CONSUMERS, NOTIFY_CHANNEL, type BusMessage, type ConsumerName } from '../features/ingest/bus.ts'
import { withOrg, withSettings, type Sql, type Tx } from '../infra/db.ts'
import type { Logger } from '../infra/log.ts'

export interface Claimed {
  batchId: string
  message: BusMessage
}

/** Applies claimed batches (in batch order) inside the org's transaction. */
export type Handler = (tx: Tx, batches: Claimed[]) => Promise<void>

export interface DrainOptions {
  /** Orgs visited per round. */
  orgs?: number
  /** Batches claimed per org transaction. */
  batches?: number
  /**
   * Called when one org's round fails (its claim rolls back); the other orgs go on. Without it
   * the error is thrown.
   */
  onOrgError?: (orgId: string, err: unknown) => void
}

/** Batches waiting per consumer, across orgs (the discovery policy shows ids and nothing else). */
export async function busBacklog(sql: Sql): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const consumer of CONSUMERS) {
    out[consumer] = await withSettings(sql, { 'app.bus_consumer': consumer }, async (tx) => {
      const [row] = await tx<{ n: number }[]>`select count(*)::int as n from bus_pending where consumer = ${consumer}`
      return row!.n
    })
  }
  return out
}

/** One round over the pending work of `consumer`; returns the number of batches applied. */
export async function drainOnce(sql: Sql, consumer: ConsumerName, handle: Handler, options: DrainOptions = {}): Promise<number> {
  const orgs = await withSettings(sql, { 'app.bus_consumer': consumer }, (tx) =>
    tx<{ org_id: string }[]>`
      select org_id from bus_pending where consumer = ${consumer}
       group by org_id order by min(batch_id) limit ${options.orgs ?? 32}`,
  )
  let applied = 0
  for (const { org_id } of orgs) {
    try {
      applied += await drainOrg(sql, org_id, consumer, handle, options.batches ?? 20)
    } catch (err) {
      if (!options.onOrgError) throw err
      options.onOrgError(org_id, err)
    }
  }
  return applied
}

function drainOrg(sql: Sql, orgId: string, consumer: ConsumerName, handle: Handler, batches: number): Promise<number> {
  return withOrg(sql, orgId, async (tx) => {
    // Safe without waiting for the WAL flush: a crash can only lose a whole consumer transaction,
    // claim and effects together, and the batch is then claimed again. The ack path (the bus
    // insert) keeps synchronous commit.
    await tx`select set_config('synchronous_commit', 'off', true)`
    // DELETE locks what it claims; a concurrent claimer re-checks and skips rows already gone.
    const claimed = await tx<{ batch_id: string }[]>`
      delete from bus_pending where consumer = ${consumer} and batch_id in (
        select batch_id from bus_pending where consumer = ${consumer}
         order by batch_id limit ${batches})
      returning batch_id`
    if (claimed.length === 0) return 0
    const ids = claimed.map((c) => c.batch_id)
    const rows = await tx<{ id: string; payload: BusMessage }[]>`
      select id, payload from bus_batches where id = any(${ids}::bigint[]) order by id`
    await handle(tx, rows.map((r) => ({ batchId: r.id, message: r.payload })))
    // The last consumer to finish a batch removes it. A lock per batch (advisory: quint_app has
    // no UPDATE privilege to lock rows with) serialises consumers finishing together, and the
    // delete, a new statement, then sees the others' committed claims.
    await tx`
      select pg_advisory_xact_lock(hashtextextended('quint_bus:' || id, 0))
        from unnest(${ids}::bigint[]) id order by id`
    await tx`
      delete from bus_batches b where b.id = any(${ids}::bigint[])
         and not exists (select 1 from bus_pending p where p.org_id = b.org_id and p.batch_id = b.id)`
    return claimed.length
  })
}

export interface RunOptions extends DrainOptions {
  sql: Sql
  consumer: ConsumerName
  handle: Handler
  log: Logger
  signal: AbortSignal
  /** Wait between empty rounds when no notification arrives (a missed NOTIFY costs this much). */
  pollMs?: number
  /** Called after each round that applied batches. */
  onApplied?: (batches: number) => void
}

const MAX_BACKOFF_MS = 5_000

/**
 * Runs one consumer until `signal` aborts: drain, then sleep until a NOTIFY on the bus channel
 * or the poll interval, whichever comes first. An org whose round fails (database down, a handler
 * error) is retried with exponential backoff; its claim rolled back, so nothing is lost, and the
 * other orgs go on. Resolves after the round in progress when aborted.
 */
export async function runConsumer(o: RunOptions): Promise<void> {
  const pollMs = o.pollMs ?? 1_000
  let notified = false
  let backingOff = false
  let wake: (() => void) | null = null
  const onNotify = () => {
    notified = true
    if (!backingOff) wake?.()
  }
  const onAbort = () => wake?.()
  o.signal.addEventListener('abort', onAbort)
  // LISTEN is an optimisation; polling alone is correct. postgres.js re-listens after reconnects.
  const listening = o.sql.listen(NOTIFY_CHANNEL, onNotify).catch((err) => {
    o.log.warn({ err, consumer: o.consumer }, 'LISTEN failed; polling only')
    return null
  })
  let failures = 0
  try {
    while (!o.signal.aborted) {
      notified = false
      let failed = false
      let applied = 0
      try {
        applied = await drainOnce(o.sql, o.consumer, o.handle, {
          ...o,
          onOrgError(orgId, err) {
            failed = true
            o.log.error({ err, consumer: o.consumer, org_id: orgId }, 'consumer round failed for org; will retry')
          },
        })
      } catch (err) {
        failed = true
        o.log.error({ err, consumer: o.consumer }, 'consumer round failed; will retry')
      }
      if (applied > 0) o.onApplied?.(applied)
      failures = failed ? failures + 1 : 0
      // Work was done: there may be more. A failing org alone never stalls the others.
      if (applied > 0 || (!failed && notified)) continue
      backingOff = failed
      const ms = failed ? Math.min(100 * 2 ** (failures - 1), MAX_BACKOFF_MS) : pollMs
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms)
        wake = () => {
          clearTimeout(timer)
          resolve()
        }
        if (o.signal.aborted) wake()
      })
      wake = null
    }
  } finally {
    o.signal.removeEventListener('abort', onAbort)
    await (await listening)?.unlisten().catch(() => {})
  }
}
