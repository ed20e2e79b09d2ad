/**
 * @module workers/sqs-consume
 * The cluster bus consumer loop, beside the local one (./consume.ts) and running the same
 * handlers. For one consumer's SQS FIFO queue: long-poll up to 10 messages, group them by org
 * (in received order), apply each org's messages in one tenant transaction, commit, and only
 * then delete that org's messages. A crash between commit and delete, or a failed delete, makes
 * SQS deliver the messages again after the visibility timeout; the handlers' ledgers make that
 * a no-op. An org whose handler fails is retried one message at a time, and only the failing
 * message is left undeleted (it comes back after the visibility timeout, and after the queue's
 * maxReceiveCount goes to its dead-letter queue) while the other orgs go on. A database outage
 * is not a message's fault: the messages are released and receiving pauses until the database
 * answers (see `runSqsConsumer`).
 */
import type { ConsumerName } from '../features/ingest/bus.ts'
import { decodeBody, WireFormatError } from '../features/ingest/bus-wire.ts'
import { changeVisibility, deleteMessages, queueDepth, receiveMessages, type ReceivedMessage, type SQSClient } from '../infra/aws.ts'
import { isTransientDbError, withOrg, type Sql } from '../infra/db.ts'
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
  /**
   * The database failed with a transient error: the round stopped there, the messages not yet
   * applied were made visible again, and the loop must not receive until the database answers.
   */
  dbDown: boolean
}

const MAX_MESSAGES = 10
/** Hidden time given back to messages released during a database outage (a short backoff). */
const RELEASE_VISIBILITY_S = 2

interface OrgWork {
  org: string
  claimed: Claimed[]
  handles: string[]
  receiveCounts: number[]
}

/** One receive and what it brought. Throws only when the receive itself fails. */
export async function sqsRound(o: SqsRoundOptions): Promise<RoundResult> {
  const received = await receiveMessages(o.sqs, o.queueUrl, {
    max: MAX_MESSAGES,
    waitTimeS: o.waitTimeS,
    visibilityTimeoutS: o.visibilityTimeoutS,
    attemptId: crypto.randomUUID(),
  })
  const byOrg = new Map<string, OrgWork>()
  for (const m of received) {
    const decoded = decode(m, o)
    if (!decoded) continue
    let entry = byOrg.get(decoded.org)
    if (!entry) byOrg.set(decoded.org, (entry = { org: decoded.org, claimed: [], handles: [], receiveCounts: [] }))
    entry.claimed.push({ batchId: m.messageId, message: decoded.message })
    entry.handles.push(m.receiptHandle)
    entry.receiveCounts.push(m.receiveCount)
  }
  let applied = 0
  let failed = false
  const done: string[] = []
  const orgs = [...byOrg.values()]
  for (let i = 0; i < orgs.length; i++) {
    const w = orgs[i]!
    const out = await applyOrg(o, w)
    applied += out.applied
    done.push(...out.done)
    if (out.failed) failed = true
    if (out.release) {
      // The database is down: the remaining orgs would fail the same way. Their messages go back
      // to the queue now instead of after the visibility timeout; the loop stops receiving.
      const release = [...out.release, ...orgs.slice(i + 1).flatMap((x) => x.handles)]
      await releaseMessages(o, release)
      await deleteApplied(o, done)
      return { applied, failed: true, dbDown: true }
    }
  }
  await deleteApplied(o, done)
  return { applied, failed, dbDown: false }
}

/**
 * One org's messages in one transaction; on a handler (non-transient) error, again one message
 * per transaction, so that only the failing message stays undeleted and counts towards the DLQ.
 * That message is then applied after the ones behind it (when it is redriven or succeeds later):
 * a poison message cannot hold its org's group until it reaches the DLQ.
 */
async function applyOrg(
  o: SqsRoundOptions,
  w: OrgWork,
): Promise<{ applied: number; done: string[]; failed: boolean; release: string[] | null }> {
  try {
    // Synchronous commit stays on (unlike the local loop): the message is deleted right after,
    // so a commit lost to a database crash would lose the message with it.
    await withOrg(o.sql, w.org, (tx) => o.handle(tx, w.claimed))
    return { applied: w.claimed.length, done: w.handles, failed: false, release: null }
  } catch (err) {
    if (transient(err)) {
      o.log.warn({ err, consumer: o.consumer, org_id: w.org, messages: w.claimed.length }, 'database unavailable; messages released, receiving paused')
      return { applied: 0, done: [], failed: true, release: w.handles }
    }
    if (w.claimed.length === 1) {
      logHandlerFailure(o, w, 0, err)
      return { applied: 0, done: [], failed: true, release: null }
    }
  }
  let applied = 0
  const done: string[] = []
  let failed = false
  for (let k = 0; k < w.claimed.length; k++) {
    try {
      await withOrg(o.sql, w.org, (tx) => o.handle(tx, [w.claimed[k]!]))
      applied++
      done.push(w.handles[k]!)
    } catch (err) {
      failed = true
      if (transient(err)) {
        o.log.warn({ err, consumer: o.consumer, org_id: w.org }, 'database unavailable; messages released, receiving paused')
        return { applied, done, failed, release: w.handles.slice(k) }
      }
      logHandlerFailure(o, w, k, err)
    }
  }
  return { applied, done, failed, release: null }
}

function logHandlerFailure(o: SqsRoundOptions, w: OrgWork, k: number, err: unknown): void {
  o.log.error(
    { err, consumer: o.consumer, org_id: w.org, message_id: w.claimed[k]!.batchId, receive_count: w.receiveCounts[k] },
    'bus message failed in its handler; it comes back after the visibility timeout (the DLQ takes it after maxReceiveCount)',
  )
}

/** A transient database error, also when a handler wrapped it. */
function transient(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (isTransientDbError(e)) return true
  }
  return false
}

async function releaseMessages(o: SqsRoundOptions, handles: string[]): Promise<void> {
  if (handles.length === 0) return
  try {
    const left = await changeVisibility(o.sqs, o.queueUrl, handles, Math.min(RELEASE_VISIBILITY_S, o.visibilityTimeoutS))
    if (left.length > 0) o.log.warn({ consumer: o.consumer, not_released: left.length }, 'SQS did not release messages; they come back after the visibility timeout')
  } catch (err) {
    o.log.warn({ err, consumer: o.consumer, not_released: handles.length }, 'releasing messages failed; they come back after the visibility timeout')
  }
}

async function deleteApplied(o: SqsRoundOptions, done: string[]): Promise<void> {
  if (done.length === 0) return
  try {
    const left = await deleteMessages(o.sqs, o.queueUrl, done)
    if (left.length > 0) {
      o.log.warn({ consumer: o.consumer, not_deleted: left.length }, 'SQS did not delete applied messages; their redelivery is a no-op')
    }
  } catch (err) {
    o.log.warn({ err, consumer: o.consumer, not_deleted: done.length }, 'deleting applied messages failed; their redelivery is a no-op')
  }
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
 * Nothing is received while the database is down: every receive counts towards the queue's
 * maxReceiveCount, so receiving messages that cannot be applied would send accepted events to
 * the dead-letter queue during a long outage. The loop checks the database (`select 1`) before
 * its first receive and after any round that met a transient database error, backing off until
 * it answers; an outage of any length costs each message at most one receive per consumer process.
 *
 * A stop waits for the long poll in progress (at most SQS_WAIT_TIME_S) and applies what it
 * brings instead of aborting it: SQS may hand messages to a poll whose client went away, and
 * those would stay hidden for the whole visibility timeout.
 */
export async function runSqsConsumer(o: SqsRunOptions): Promise<void> {
  let failures = 0
  let checkDb = true
  let down = false
  while (!o.signal.aborted) {
    if (checkDb) {
      const err = await databaseError(o.sql)
      if (err) {
        if (!down) o.log.warn({ err, consumer: o.consumer }, 'database unavailable; not receiving from SQS until it answers')
        down = true
        failures++
        await sleep(Math.min(100 * 2 ** (failures - 1), MAX_BACKOFF_MS), o.signal)
        continue
      }
      if (down) o.log.info({ consumer: o.consumer }, 'database answers again; receiving from SQS')
      checkDb = false
      down = false
      failures = 0
    }
    let result: RoundResult
    try {
      result = await sqsRound(o)
    } catch (err) {
      o.log.error({ err, consumer: o.consumer }, 'receiving from SQS failed; will retry')
      result = { applied: 0, failed: true, dbDown: false }
    }
    if (result.applied > 0) o.onApplied?.(result.applied)
    if (result.dbDown) {
      checkDb = true
      continue
    }
    failures = result.failed ? failures + 1 : 0
    if (result.failed) await sleep(Math.min(100 * 2 ** (failures - 1), MAX_BACKOFF_MS), o.signal)
  }
}

/** Null when the database answers; any error means nothing can be applied, transient or not. */
async function databaseError(sql: Sql): Promise<unknown> {
  try {
    await sql`select 1`
    return null
  } catch (err) {
    return err
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
