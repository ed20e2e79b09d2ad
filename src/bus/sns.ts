/**
 * @module bus/sns
 * Cluster mode's bus: each message is split into parts under SNS's size limit (./wire.ts)
 * and published to the SNS FIFO topic, which fans it out to one SQS FIFO queue per consumer.
 * `publish` resolves only when SNS accepted every part: that is the ack point. Any AWS failure
 * is a 503 with Retry-After for the client, never a 2xx; parts published before the failure are
 * published again by the client's retry, which consumers apply idempotently (their ledgers). The
 * whole publish is bounded (CALL_DEADLINE_MS): an SNS that hangs instead of refusing is a 503 in
 * about 5 s, not a request held for the whole outage (issue 14).
 */
import { AppError, EventTooLargeError, UnavailableError } from '../errors.ts'
import {
  AwsCallError,
  CALL_DEADLINE_MS,
  publishBatch,
  sendMessage,
  type PublishEntry,
  type SNSClient,
  type SQSClient,
} from '../infra/aws.ts'
import { isUuid, type Tx } from '../infra/db.ts'
import type { Bus, BusMessage, PublishContext, RedeliverTarget } from './bus.ts'
import { encodeMessage, PART_MAX_BYTES, PartTooLargeError, SNS_MAX_BYTES, type WirePart } from './wire.ts'

/** PublishBatch takes at most 10 entries. */
const BATCH_ENTRIES = 10
const RETRY_AFTER_S = 5

export class SnsBus implements Bus {
  readonly #sns: SNSClient
  readonly #topicArn: string
  readonly #sqs: SQSClient | null

  /** `sqs`: for redriving dead letters to the queue they came from (admin routes, CLI). */
  constructor(sns: SNSClient, topicArn: string, sqs: SQSClient | null = null) {
    this.#sns = sns
    this.#topicArn = topicArn
    this.#sqs = sqs
  }

  /** SNS takes no part in a Postgres transaction: publish runs with none open (see `Bus`). */
  readonly transactional = false

  /** `orgId` is the authenticated org of the request: the message group and the dedupe scope. */
  async publish(message: BusMessage, { orgId }: PublishContext): Promise<void> {
    if (!isUuid(orgId)) throw new TypeError('SnsBus.publish: org id must be a lowercase UUID')
    let parts: WirePart[]
    try {
      parts = encodeMessage(orgId, message)
    } catch (err) {
      if (err instanceof PartTooLargeError) throw new EventTooLargeError(err.eventId, PART_MAX_BYTES)
      throw err
    }
    // One bound for the whole publish, whatever the number of PublishBatch calls.
    const signal = AbortSignal.timeout(CALL_DEADLINE_MS)
    try {
      // In order, one batch after the other: FIFO keeps an org's parts in publishing order.
      for (const batch of batches(parts)) await publishBatch(this.#sns, this.#topicArn, batch, signal)
    } catch (err) {
      if (err instanceof AwsCallError) {
        throw new UnavailableError('The event bus is temporarily unavailable; retry later.', RETRY_AFTER_S, err)
      }
      throw err
    }
  }

  /**
   * Back to the SQS queue the dead letter came from, for that consumer only (publishing to the
   * topic would hand it to every consumer again). The dedupe id is the redrive's own, so SQS's
   * five-minute deduplication never drops it as a repeat of the original.
   */
  async redeliver(message: BusMessage, to: RedeliverTarget, { orgId }: PublishContext & { tx: Tx }): Promise<void> {
    if (!this.#sqs)
      throw new UnavailableError('Redrive needs the SQS client of the cluster bus; it is not configured here.', RETRY_AFTER_S)
    if (!/^https?:\/\/.+\.fifo$/.test(to.source)) {
      throw new AppError(
        409,
        'redrive_unavailable',
        'This dead letter came from the local bus; it can only be redriven with BUS=local.',
      )
    }
    const parts = encodeMessage(orgId, message)
    try {
      for (const [i, p] of parts.entries()) {
        await sendMessage(this.#sqs, to.source, {
          body: p.body,
          groupId: p.groupId,
          dedupeId: `${orgId}:r:${to.redriveId}:${i}`,
          attributes: { [ORG_ATTRIBUTE]: p.groupId },
        })
      }
    } catch (err) {
      if (err instanceof AwsCallError) {
        throw new UnavailableError('The event bus is temporarily unavailable; retry later.', RETRY_AFTER_S, err)
      }
      throw err
    }
  }
}

const ORG_ATTRIBUTE = 'org_id'

/** Consecutive parts grouped under PublishBatch's caps (10 entries, 256 KiB in total). */
function batches(parts: WirePart[]): PublishEntry[][] {
  const out: PublishEntry[][] = []
  let current: PublishEntry[] = []
  let size = 0
  parts.forEach((p, i) => {
    const bytes = p.bytes + ORG_ATTRIBUTE.length + 'String'.length + p.groupId.length
    if (current.length === BATCH_ENTRIES || (current.length > 0 && size + bytes > SNS_MAX_BYTES)) {
      out.push(current)
      current = []
      size = 0
    }
    current.push({
      id: `p${i}`,
      body: p.body,
      groupId: p.groupId,
      dedupeId: p.dedupeId,
      attributes: { [ORG_ATTRIBUTE]: p.groupId },
    })
    size += bytes
  })
  if (current.length > 0) out.push(current)
  return out
}
