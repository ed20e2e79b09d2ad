/**
 * @module workers/consume
 * The local bus consumer loop. For one consumer: find orgs with pending batches (the
 * `bus_discovery` policy shows pending ids, nothing else), then per org, in one tenant
 * transaction, claim batches in order by deleting their pending rows, apply the handler, and
 * commit. The claim and the effects commit together, so each batch is applied exactly once; a
 * crash rolls both back and the batch is taken again.
 */
import type { BusMessage, ConsumerName } from '../features/ingest/bus.ts'
import { withOrg, withSettings, type Sql, type Tx } from '../infra/db.ts'

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
    applied += await withOrg(sql, org_id, async (tx) => {
      // DELETE locks what it claims; a concurrent claimer re-checks and skips rows already gone.
      const claimed = await tx<{ batch_id: string }[]>`
        delete from bus_pending where consumer = ${consumer} and batch_id in (
          select batch_id from bus_pending where consumer = ${consumer}
           order by batch_id limit ${options.batches ?? 20})
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
  return applied
}
