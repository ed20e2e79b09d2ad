/**
 * @module features/ingest/sns-bus
 * Cluster mode's bus: each message is split into parts under SNS's size limit (./bus-wire.ts)
 * and published to the SNS FIFO topic, which fans it out to one SQS FIFO queue per consumer.
 * `publish` resolves only when SNS accepted every part: that is the ack point. Any AWS failure
 * is a 503 with Retry-After for the client, never a 2xx; parts published before the failure are
 * published again by the client's retry, which consumers apply idempotently (their ledgers).
 */
import { EventTooLargeError, UnavailableError } from '../../errors.ts'
import { AwsCallError, publishBatch, type PublishEntry, type SNSClient } from '../../infra/aws.ts'
import { isUuid } from '../../infra/db.ts'
import type { Bus, BusMessage, PublishContext } from './bus.ts'
import { encodeMessage, PART_MAX_BYTES, PartTooLargeError, SNS_MAX_BYTES, type WirePart } from './bus-wire.ts'

/** PublishBatch takes at most 10 entries. */
const BATCH_ENTRIES = 10
const RETRY_AFTER_S = 5

export class SnsBus implements Bus {
  readonly #sns: SNSClient
  readonly #topicArn: string

  constructor(sns: SNSClient, topicArn: string) {
    this.#sns = sns
    this.#topicArn = topicArn
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
    try {
      // In order, one batch after the other: FIFO keeps an org's parts in publishing order.
      for (const batch of batches(parts)) await publishBatch(this.#sns, this.#topicArn, batch)
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
    current.push({ id: `p${i}`, body: p.body, groupId: p.groupId, dedupeId: p.dedupeId, attributes: { [ORG_ATTRIBUTE]: p.groupId } })
    size += bytes
  })
  if (current.length > 0) out.push(current)
  return out
}
