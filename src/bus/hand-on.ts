/**
 * @module bus/hand-on
 * On the local bus sessions and alerts follow the pipeline (issue 13): ingest publishes events to
 * the pipeline alone, and the pipeline's transaction hands each batch on with the events it
 * stored (`forward`); sessions and alerts then see the batch without the others (`handedOn`).
 */
import type { Tx } from '../infra/db.ts'
import { DOWNSTREAM, NOTIFY_CHANNEL, type BusMessage } from './bus.ts'
import type { Claimed } from './consume-local.ts'

/**
 * A batch as the pipeline handed it on (`skip` set, the local bus only): without the events the
 * pipeline did not store (already in the ledger), marked `ledgered`. Untouched otherwise.
 */
export function handedOn(message: BusMessage, skip: string[] | null): BusMessage {
  if (skip === null || message.kind !== 'events') return message
  const skipped = new Set(skip)
  return { ...message, events: message.events.filter((e) => !skipped.has(e.eventKey)), ledgered: true }
}

/**
 * Hands the batches that stored events on to sessions and alerts, in the pipeline's transaction
 * (issue 13): each records which of its events were not stored (`skip_keys`, usually empty) and
 * gets a pending row per downstream consumer, dated when it was published. Only messages
 * published to the pipeline alone (`handOn`) go on: one published to every consumer (before
 * sql/0033, or on SNS and redriven here) reached them already. A batch that stored nothing goes
 * no further.
 */
export async function forward(tx: Tx, batches: Claimed[], stored: ReadonlyMap<string, ReadonlySet<string>>): Promise<void> {
  const handed: { id: string; skip: string[] }[] = []
  for (const { batchId, message } of batches) {
    const keys = stored.get(batchId)
    if (message.kind !== 'events' || !message.handOn || !keys || keys.size === 0) continue
    handed.push({ id: batchId, skip: [...new Set(message.events.map((e) => e.eventKey).filter((k) => !keys.has(k)))] })
  }
  if (handed.length === 0) return
  await tx`
    with skips as (
      update bus_batches b set skip_keys = array(select jsonb_array_elements_text(h.skip))
        from jsonb_to_recordset(${tx.json(handed as never)}::jsonb) as h(id bigint, skip jsonb)
       where b.id = h.id
      returning b.id, b.created_at
    ), pending as (
      insert into bus_pending (org_id, consumer, batch_id, created_at)
      select app_current_org(), c, skips.id, skips.created_at from skips, unnest(${DOWNSTREAM as string[]}::text[]) c
      on conflict do nothing
    )
    select pg_notify(${NOTIFY_CHANNEL}, '')`
}
