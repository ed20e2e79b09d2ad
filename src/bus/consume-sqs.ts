/**
 * @module bus/consume-sqs
 * The cluster bus consumer loop, beside the local one (./consume.ts) and running the same
 * handlers. For one consumer's SQS FIFO queue: long-poll up to 10 messages, group them by org
 * (in received order), apply each org's messages in one tenant transaction, commit, and only
 * then delete that org's messages. A crash between commit and delete, or a failed delete, makes
 * SQS deliver the messages again after the visibility timeout; the handlers' ledgers make that
 * a no-op. An org whose handler fails is retried one message at a time, and only the failing
 * message is left undeleted, hidden for a backoff (1 s, doubling) rather than the whole visibility
 * timeout. The other orgs go on; the org itself does not: its message group in the FIFO queue
 * returns nothing while one of its messages is in flight or hidden, so the org's later messages
 * wait out each backoff until the failing one is dead-lettered (docs/dead-letters.md). At BUS_MAX_ATTEMPTS receives
 * the failing message is moved to `bus_dead_letters` (Postgres, the same store as the local bus,
 * listed and redriven the same way) and deleted from the queue; the queue's own dead-letter queue
 * (maxReceiveCount) stays the backstop for what cannot be attributed to an org. A database
 * outage is not a message's fault: the messages are released and receiving pauses until the
 * database answers (see `runSqsConsumer`).
 *
 * Every SQS call is bounded (src/infra/aws.ts); a receive abandoned by its deadline is retried
 * with the same ReceiveRequestAttemptId, so SQS hands back the messages of the lost answer
 * instead of hiding them for the visibility timeout (issue 14).
 */
import type { ConsumerName } from './bus.ts'
import { decodeBody, WireFormatError } from './wire.ts'
import {
  changeVisibility,
  deleteMessages,
  queueDepth,
  receiveMessages,
  type ReceivedMessage,
  type SQSClient,
} from '../infra/aws.ts'
import { withOrg, type Sql } from '../infra/db.ts'
import type { Logger } from '../infra/log.ts'
import {
  databaseUnavailable,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_RETRY_BASE_MS,
  describeError,
  storableJson,
  type Claimed,
  type Handler,
} from './consume-local.ts'

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
  /** Receives of a failing message before it is dead-lettered (BUS_MAX_ATTEMPTS). */
  maxAttempts?: number
  /** Hidden time after a first failure; doubles per receive, up to the visibility timeout. */
  retryBaseMs?: number
  /** A message was moved to `bus_dead_letters` and deleted from the queue. */
  onDeadLetter?: (orgId: string, messageId: string) => void
  /** When the oldest message of a receive was sent (epoch ms), null after an empty receive. */
  onLag?: (oldestMs: number | null) => void
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
  received: ReceivedMessage[]
}

/**
 * One receive and what it brought. Throws only when the receive itself fails. `attemptId`: the
 * ReceiveRequestAttemptId, the same as the last call's when that receive failed.
 */
export async function sqsRound(o: SqsRoundOptions, attemptId: string = crypto.randomUUID()): Promise<RoundResult> {
  const received = await receiveMessages(o.sqs, o.queueUrl, {
    max: MAX_MESSAGES,
    waitTimeS: o.waitTimeS,
    visibilityTimeoutS: o.visibilityTimeoutS,
    attemptId,
  })
  o.onLag?.(received.length === 0 ? null : Math.min(...received.map((m) => m.sentAt)))
  const byOrg = new Map<string, OrgWork>()
  for (const m of received) {
    const decoded = decode(m, o)
    if (!decoded) continue
    let entry = byOrg.get(decoded.org)
    if (!entry) byOrg.set(decoded.org, (entry = { org: decoded.org, claimed: [], handles: [], received: [] }))
    entry.claimed.push({ batchId: m.messageId, message: decoded.message })
    entry.handles.push(m.receiptHandle)
    entry.received.push(m)
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
 * One org's messages in one transaction; on a handler error, again one message per transaction,
 * so that only the failing message stays undeleted. It is hidden for a short backoff and comes
 * back first in its group, after the ones behind it were applied; at BUS_MAX_ATTEMPTS receives it
 * is dead-lettered. A poison message thus holds its org's group for seconds, not for good.
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
      o.log.warn(
        { err, consumer: o.consumer, org_id: w.org, messages: w.claimed.length },
        'database unavailable; messages released, receiving paused',
      )
      return { applied: 0, done: [], failed: true, release: w.handles }
    }
    if (w.claimed.length === 1) {
      const out = await messageFailed(o, w, 0, err)
      return { applied: 0, done: out.done ? [w.handles[0]!] : [], failed: true, release: out.release ? [w.handles[0]!] : null }
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
      const out = await messageFailed(o, w, k, err)
      if (out.done) done.push(w.handles[k]!)
      if (out.release) return { applied, done, failed, release: w.handles.slice(k) }
    }
  }
  return { applied, done, failed, release: null }
}

/**
 * A message failed in its handler: dead-letter it at its last attempt (then it is `done`: the
 * caller deletes it from the queue), otherwise hide it for a backoff. `release`: the database
 * went away while dead-lettering.
 */
async function messageFailed(
  o: SqsRoundOptions,
  w: OrgWork,
  k: number,
  err: unknown,
): Promise<{ done: boolean; release: boolean }> {
  const m = w.received[k]!
  const max = o.maxAttempts ?? DEFAULT_MAX_ATTEMPTS
  o.log.error(
    { err, consumer: o.consumer, org_id: w.org, message_id: m.messageId, receive_count: m.receiveCount, max_attempts: max },
    'bus message failed in its handler; retried with backoff, then dead-lettered',
  )
  if (m.receiveCount >= max) {
    try {
      await deadLetter(o, w.org, w.claimed[k]!, m, err)
      o.log.error(
        { consumer: o.consumer, org_id: w.org, message_id: m.messageId },
        "bus message dead-lettered; the org's later messages go on",
      )
      o.onDeadLetter?.(w.org, m.messageId)
      return { done: true, release: false }
    } catch (dlErr) {
      if (transient(dlErr)) return { done: false, release: true }
      // Left in the queue: the queue's own dead-letter queue takes it after maxReceiveCount.
      o.log.error({ err: dlErr, consumer: o.consumer, org_id: w.org, message_id: m.messageId }, 'dead-lettering failed')
      return { done: false, release: false }
    }
  }
  const backoffS = Math.min(
    Math.ceil(((o.retryBaseMs ?? DEFAULT_RETRY_BASE_MS) * 2 ** Math.max(m.receiveCount - 1, 0)) / 1000),
    o.visibilityTimeoutS,
  )
  await releaseMessages(o, [m.receiptHandle], Math.max(backoffS, 1))
  return { done: false, release: false }
}

/**
 * Into `bus_dead_letters`; a retry after a crash before the delete finds the row already there.
 * The payload as `jsonb` can hold it (issue 14: a NUL in the message made this insert fail, 22P05,
 * on every receive; storableJson).
 */
async function deadLetter(o: SqsRoundOptions, org: string, c: Claimed, m: ReceivedMessage, err: unknown): Promise<void> {
  const { errorClass, errorMessage } = describeError(err)
  await withOrg(
    o.sql,
    org,
    (tx) => tx`
    insert into bus_dead_letters (org_id, consumer, source, message_id, kind, payload, attempts, error_class,
                                  error_message, first_failed_at, last_failed_at)
    values (app_current_org(), ${o.consumer}, ${o.queueUrl}, ${m.messageId}, ${c.message.kind},
            ${storableJson(JSON.stringify(c.message))}::text::jsonb, ${m.receiveCount}, ${errorClass}, ${errorMessage},
            ${new Date(Math.min(m.firstReceivedAt, Date.now())).toISOString()}::timestamptz, now())
    on conflict (org_id, consumer, source, message_id) do nothing`,
  )
}

/**
 * The database is unavailable (also when a handler wrapped the error): not the message's fault.
 * Statement timeouts and deadlocks are counted like any failure (see `databaseUnavailable`).
 */
const transient = databaseUnavailable

async function releaseMessages(o: SqsRoundOptions, handles: string[], hideS = RELEASE_VISIBILITY_S): Promise<void> {
  if (handles.length === 0) return
  try {
    const left = await changeVisibility(o.sqs, o.queueUrl, handles, Math.min(hideS, o.visibilityTimeoutS))
    if (left.length > 0)
      o.log.warn(
        { consumer: o.consumer, not_released: left.length },
        'SQS did not release messages; they come back after the visibility timeout',
      )
  } catch (err) {
    o.log.warn(
      { err, consumer: o.consumer, not_released: handles.length },
      'releasing messages failed; they come back after the visibility timeout',
    )
  }
}

async function deleteApplied(o: SqsRoundOptions, done: string[]): Promise<void> {
  if (done.length === 0) return
  try {
    const left = await deleteMessages(o.sqs, o.queueUrl, done)
    if (left.length > 0) {
      o.log.warn(
        { consumer: o.consumer, not_deleted: left.length },
        'SQS did not delete applied messages; their redelivery is a no-op',
      )
    }
  } catch (err) {
    o.log.warn(
      { err, consumer: o.consumer, not_deleted: done.length },
      'deleting applied messages failed; their redelivery is a no-op',
    )
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
/** SQS keeps a ReceiveRequestAttemptId for five minutes; past that a new one is as good. */
const ATTEMPT_ID_REUSE_MS = 4 * 60_000

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
  let attempt: { id: string; at: number } | null = null
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
    // A receive that failed (no answer within its deadline, connection reset) may have been
    // answered with messages we never saw: the retry reuses its ReceiveRequestAttemptId, which
    // SQS honours for five minutes, so that it gets them back.
    if (!attempt || Date.now() - attempt.at > ATTEMPT_ID_REUSE_MS) attempt = { id: crypto.randomUUID(), at: Date.now() }
    try {
      result = await sqsRound(o, attempt.id)
      attempt = null
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
