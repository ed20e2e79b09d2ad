/**
 * @module workers/sqs-consume
 * The cluster bus consumer loop, beside the local one (./consume.ts) and running the same
 * handlers. For one consumer's SQS FIFO queue: long-poll up to 10 messages, group them by org
 * (in received order), apply each org's messages in one tenant transaction, commit, and only
 * then delete that org's messages. A crash between commit and delete, or a failed delete, makes
 * SQS deliver the messages again after the visibility timeout; the handlers' ledgers make that
 * a no-op. An org whose handler fails is left undeleted (it comes back after the visibility
 * timeout, and after the queue's maxReceiveCount goes to its dead-letter queue) while the other
 * orgs go on.
 */
import type { ConsumerName } from '../features/ingest/bus.ts'
import { decodeBody, WireFormatError } from '../features/ingest/bus-wire.ts'
import { deleteMessages, queueDepth, receiveMessages, type ReceivedMessage, type SQSClient } from '../infra/aws.ts'
import { withOrg, type Sql } from '../infra/db.ts'
import type { Logger } from '../infra/log.ts'
import type { Claimed, Handler } from './consume.ts'

export interface SqsRoundOptions {
  sql: Sql
  sqs: SQSClient
  queueUrl: string
  consumer: ConsumerName
  handle: Handler
  log: Logger
  /** Long-poll wait of an empty receive (1–20 s). */
  waitTimeS: number
  /** Hidden time of received messages; must outlast a round. */
  visibilityTimeoutS: number
}

export interface RoundResult {
  /** Messages applied and committed (deleted or not). */
  applied: number
  /** An org's transaction failed or SQS could not be reached. */
  failed: boolean
}

const MAX_MESSAGES = 10

/** One receive and what it brought. Throws only when the receive itself fails. */
export async function sqsRound(o: SqsRoundOptions): Promise<RoundResult> {
  const received = await receiveMessages(o.sqs, o.queueUrl, {
    max: MAX_MESSAGES,
    waitTimeS: o.waitTimeS,
    visibilityTimeoutS: o.visibilityTimeoutS,
  })
  const byOrg = new Map<string, { claimed: Claimed[]; handles: string[] }>()
  for (const m of received) {
    const decoded = decode(m, o)
    if (!decoded) continue
    let entry = byOrg.get(decoded.org)
    if (!entry) byOrg.set(decoded.org, (entry = { claimed: [], handles: [] }))
    entry.claimed.push({ batchId: m.messageId, message: decoded.message })
    entry.handles.push(m.receiptHandle)
  }
  let applied = 0
  let failed = false
  const done: string[] = []
  for (const [org, { claimed, handles }] of byOrg) {
    try {
      // Synchronous commit stays on (unlike the local loop): the message is deleted right after,
      // so a commit lost to a database crash would lose the message with it.
      await withOrg(o.sql, org, (tx) => o.handle(tx, claimed))
      applied += claimed.length
      done.push(...handles)
    } catch (err) {
      failed = true
      o.log.error(
        { err, consumer: o.consumer, org_id: org, messages: claimed.length },
        'consumer round failed for org; its messages come back after the visibility timeout',
      )
    }
  }
  if (done.length > 0) {
    try {
      const left = await deleteMessages(o.sqs, o.queueUrl, done)
      if (left.length > 0) {
        o.log.warn({ consumer: o.consumer, not_deleted: left.length }, 'SQS did not delete applied messages; their redelivery is a no-op')
      }
    } catch (err) {
      o.log.warn({ err, consumer: o.consumer, not_deleted: done.length }, 'deleting applied messages failed; their redelivery is a no-op')
    }
  }
  return { applied, failed }
}

/** Our part, for the org SQS grouped it under; anything else is logged and left to the DLQ. */
function decode(m: ReceivedMessage, o: SqsRoundOptions) {
  try {
    const part = decodeBody(m.body)
    if (m.groupId !== undefined && m.groupId !== part.org) throw new WireFormatError('org differs from MessageGroupId')
    return part
  } catch (err) {
    if (!(err instanceof WireFormatError)) throw err
    o.log.error(
      { err, consumer: o.consumer, message_id: m.messageId, receive_count: m.receiveCount },
      'unreadable bus message left in the queue (its dead-letter queue takes it after maxReceiveCount)',
    )
    return null
  }
}

export interface SqsRunOptions extends SqsRoundOptions {
  /** Stops the loop after the round in progress, its long poll included. */
  signal: AbortSignal
  /** Called after each round that applied messages. */
  onApplied?: (messages: number) => void
}

const MAX_BACKOFF_MS = 5_000

/**
 * Runs one consumer until `signal` aborts. The long poll is the idle wait; a failed round (SQS
 * unreachable, an org's transaction failing) backs off exponentially.
 *
 * A stop waits for the long poll in progress (at most SQS_WAIT_TIME_S) and applies what it
 * brings instead of aborting it: SQS may hand messages to a poll whose client went away, and
 * those would stay hidden for the whole visibility timeout.
 */
export async function runSqsConsumer(o: SqsRunOptions): Promise<void> {
  let failures = 0
  while (!o.signal.aborted) {
    let result: RoundResult
    try {
      result = await sqsRound(o)
    } catch (err) {
      o.log.error({ err, consumer: o.consumer }, 'receiving from SQS failed; will retry')
      result = { applied: 0, failed: true }
    }
    if (result.applied > 0) o.onApplied?.(result.applied)
    failures = result.failed ? failures + 1 : 0
    if (result.failed) await sleep(Math.min(100 * 2 ** (failures - 1), MAX_BACKOFF_MS), o.signal)
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done)
  })
}

/** Backlog per consumer: ApproximateNumberOfMessages + …NotVisible of each queue. */
export async function sqsBacklog(sqs: SQSClient, queues: Partial<Record<ConsumerName, string>>): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const [consumer, url] of Object.entries(queues)) if (url) out[consumer] = await queueDepth(sqs, url)
  return out
}
