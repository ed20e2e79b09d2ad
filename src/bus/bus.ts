/**
 * @module bus/bus
 * The bus between ingest and its three consumers (pipeline, sessions, alerts). `publish`
 * resolving means durable: that is the ack point. Locally (embedded mode) the bus is two
 * Postgres tables written in the request's own tenant transaction (sql/0007_ingest_bus.sql);
 * in cluster mode SNS FIFO → SQS FIFO takes its place behind the same interface.
 *
 * Locally, events go to the pipeline first; the pipeline's transaction hands each batch on to
 * sessions and alerts with the events it stored, and only those (issue 13): they derive from
 * newly stored actions with no ledger of their own, and a retry never reaches them. On SNS all
 * three get every message and sessions keeps its own ledger.
 */
import type { ConsumerName } from '../config.ts'
import type { Tx } from '../infra/db.ts'
import type { NormalizedEvent } from '../features/ingest/events.ts'
import type { SessionLifecycle } from '../features/ingest/lifecycle.ts'

export const CONSUMERS: readonly ConsumerName[] = ['pipeline', 'sessions', 'alerts']
/** Who takes a batch of events after the pipeline on the local bus. */
export const DOWNSTREAM: readonly ConsumerName[] = ['sessions', 'alerts']
export type { ConsumerName }

/** A normalised event as it travels (JSON): the timestamp is an ISO string. */
export type WireEvent = Omit<NormalizedEvent, 'occurredAt'> & { occurredAt: string }

export type BusMessage =
  | {
      kind: 'events'
      receivedAt: string
      machineId: string | null
      events: WireEvent[]
      /**
       * Every event is new to the org, and reaches this consumer once: the pipeline entered it in
       * the ledger (`event_keys`) and stored it, and the local bus handed sessions and alerts only
       * those (issue 13), so they count them without a ledger of their own. Absent on SNS, where
       * every consumer gets what ingest published, retries included.
       */
      ledgered?: true
      /**
       * Published to the pipeline alone, which hands it on to sessions and alerts (the local bus,
       * issue 13). Set at publish, so it travels in dead letters and redrives: a message without
       * it (SNS, or published before) reached every consumer and is never handed on.
       */
      handOn?: true
    }
  | { kind: 'lifecycle'; receivedAt: string; lifecycle: SessionLifecycle }

/** Whose message it is and, for a transactional bus, the caller's tenant transaction. */
export interface PublishContext {
  orgId: string
  /** The caller's open tenant transaction when the bus is `transactional`, otherwise null. */
  tx: Tx | null
}

export interface Bus {
  /**
   * True when `publish` writes in the caller's tenant transaction (its commit is the ack). A bus
   * that does not is called with no transaction open, so a slow publish holds no pooled
   * connection (a slow SNS would otherwise exhaust the pool and fail /ready everywhere).
   */
  readonly transactional: boolean
  /** Durable once resolved (for a transactional bus: once the caller's transaction commits). */
  publish(message: BusMessage, ctx: PublishContext): Promise<void>
  /**
   * A dead letter's redrive (docs/dead-letters.md): hands `message` again to one consumer only,
   * as a new message behind the org's others. Called inside the tenant transaction that deletes
   * the dead letter, so a failure leaves it in place.
   */
  redeliver(message: BusMessage, to: RedeliverTarget, ctx: PublishContext & { tx: Tx }): Promise<void>
}

/** Where a dead letter goes back to. */
export interface RedeliverTarget {
  consumer: ConsumerName
  /** 'local', or the SQS queue the message was taken from. */
  source: string
  /** Unique per redrive (the dead letter's id): an SQS dedupe id must not repeat a past one. */
  redriveId: string
}

export const NOTIFY_CHANNEL = 'quint_bus'

/**
 * A message as `bus_batches.payload` holds it (sql/0033): its JSON, zstd-compressed. A 500-event
 * message is 180–260 KB of JSON; stored as it was, it was a third of the WAL every ack had to
 * flush, and a hundred TOAST chunks written and read three times (issue 13). zstd at level 1
 * costs about 0.1 ms for it each way.
 */
export function encodePayload(message: BusMessage): Buffer {
  return Buffer.from(Bun.zstdCompressSync(Buffer.from(JSON.stringify(message)), { level: 1 }))
}

/**
 * A stored payload back: zstd-compressed JSON, or plain JSON text (rows written before sql/0033).
 * Throws on bytes that are neither (the consumer's attempt fails; the dead-letter move keeps them).
 */
export function payloadJson(bytes: Uint8Array): string {
  const plain = bytes[0] === 0x7b // '{'
  return Buffer.from(plain ? bytes : Bun.zstdDecompressSync(bytes)).toString('utf8')
}

export const decodePayload = (bytes: Uint8Array): BusMessage => JSON.parse(payloadJson(bytes)) as BusMessage

/**
 * Embedded mode: the message is committed with the caller's transaction, for the pipeline (events,
 * handed on to sessions and alerts by its transaction) or for sessions and alerts (lifecycle).
 */
export class LocalBus implements Bus {
  readonly transactional = true

  async publish(message: BusMessage, { tx }: PublishContext): Promise<void> {
    if (!tx) throw new Error("LocalBus.publish: needs the caller's tenant transaction")
    // One round trip on the ack path: the batch, its pending rows, and a NOTIFY (delivered at
    // commit, so consumers wake up instead of waiting for their next poll). Events go to the
    // pipeline, which hands them on; a lifecycle report to sessions and alerts.
    const events = message.kind === 'events'
    const sent: BusMessage = events ? { ...message, handOn: true } : message
    const to: readonly ConsumerName[] = events ? ['pipeline'] : DOWNSTREAM
    await tx`
      with batch as (
        insert into bus_batches (org_id, kind, payload)
        values (app_current_org(), ${message.kind}, ${encodePayload(sent)}) returning id
      ), pending as (
        insert into bus_pending (org_id, consumer, batch_id)
        select app_current_org(), c, batch.id from batch, unnest(${to as string[]}::text[]) c
      )
      select pg_notify(${NOTIFY_CHANNEL}, '')`
  }

  /** A new batch with one pending row, for that consumer only: the others applied it already. */
  async redeliver(message: BusMessage, to: RedeliverTarget, { tx }: PublishContext & { tx: Tx }): Promise<void> {
    await tx`
      with batch as (
        insert into bus_batches (org_id, kind, payload)
        values (app_current_org(), ${message.kind}, ${encodePayload(message)}) returning id
      ), pending as (
        insert into bus_pending (org_id, consumer, batch_id) select app_current_org(), ${to.consumer}, batch.id from batch
      )
      select pg_notify(${NOTIFY_CHANNEL}, '')`
  }
}
