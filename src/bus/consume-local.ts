/**
 * @module bus/consume-local
 * The local bus consumer loop. For one consumer: find orgs with pending batches (the
 * `bus_discovery` policy shows pending ids, nothing else), then per org, in one tenant
 * transaction, claim batches in order by deleting their pending rows, apply the handler, and
 * commit. The claim and the effects commit together, so each batch is applied exactly once; a
 * crash rolls both back and the batch is taken again. A batch that keeps failing in its handler
 * is set aside in `bus_dead_letters` after BUS_MAX_ATTEMPTS attempts (docs/dead-letters.md).
 * Longer than most modules: the claim, the retries and the dead-letter move share one set of
 * transaction rules and read best together; the pipeline's hand-on is ./hand-on.ts.
 */
import { CONSUMERS, decodePayload, DOWNSTREAM, NOTIFY_CHANNEL, type BusMessage, type ConsumerName } from './bus.ts'
import { forward, handedOn } from './hand-on.ts'
import { isTransientDbError, withOrg, withSettings, type Sql, type Tx } from '../infra/db.ts'
import { errorKind, scrub, ThrottledLog, type Logger } from '../infra/log.ts'

export interface Claimed {
  batchId: string
  message: BusMessage
}

/**
 * Applies claimed batches (in batch order) inside the org's transaction. `finish` (the local bus
 * only) is the bus's own bookkeeping of these batches: a lock per batch and the delete of those
 * every consumer is done with. It runs after the handler, or earlier when the handler calls it: a
 * handler that appends to the live log (src/features/live/repo.ts), whose per-org lock must be the
 * last its transaction takes, calls it just before that append.
 */
export type Handler = (tx: Tx, batches: Claimed[], finish?: Finish) => Promise<void>

/**
 * The pipeline passes the event keys each batch stored (by batch id): the local bus hands those
 * batches on to sessions and alerts in the same transaction (`forward`). Other handlers pass none.
 */
export type Finish = (stored?: ReadonlyMap<string, ReadonlySet<string>>) => Promise<void>

export interface DrainOptions {
  /** Orgs visited per round. */
  orgs?: number
  /**
   * Batches claimed per org transaction (default 10: each is up to 500 events held in memory
   * while the round runs, and a loop catching up claimed 20 of them at once, issue 13's soak).
   */
  batches?: number
  /**
   * Called when one org's round fails as a whole (the database is unavailable; its claim rolls
   * back); the other orgs go on. Without it the error is thrown.
   */
  onOrgError?: (orgId: string, err: unknown) => void
  /** Failed attempts after which a batch is dead-lettered (BUS_MAX_ATTEMPTS). */
  maxAttempts?: number
  /** Wait before a failed batch is tried again; doubles per attempt, up to a minute. */
  retryBaseMs?: number
  /** A batch failed in its handler (its attempt is counted). */
  onBatchError?: (orgId: string, batchId: string, attempts: number, err: unknown) => void
  /** A batch was set aside in `bus_dead_letters` after its last attempt. */
  onDeadLetter?: (orgId: string, batchId: string) => void
  /**
   * Setting a batch aside failed (not a database outage): the batch stays pending, is retried
   * with backoff and the move tried again; the org's round goes on.
   */
  onDeadLetterError?: (orgId: string, batchId: string, err: unknown) => void
}

export const DEFAULT_MAX_ATTEMPTS = 5
export const DEFAULT_RETRY_BASE_MS = 1_000
const MAX_RETRY_MS = 60_000
/** Failed batches retried per org and round (one transaction each). */
const RETRIES_PER_ROUND = 5

/**
 * Batches waiting per consumer, across orgs (the discovery policy shows ids and nothing else).
 * Sessions and alerts also wait for what the pipeline has not handed on yet (issue 13): a stalled
 * pipeline shows in their backlog too.
 */
export async function busBacklog(sql: Sql): Promise<Record<string, number>> {
  const own: Record<string, number> = {}
  for (const consumer of CONSUMERS) {
    own[consumer] = await withSettings(sql, { 'app.bus_consumer': consumer }, async (tx) => {
      const [row] = await tx<{ n: number }[]>`select count(*)::int as n from bus_pending where consumer = ${consumer}`
      return row!.n
    })
  }
  return Object.fromEntries(CONSUMERS.map((c) => [c, own[c]! + (DOWNSTREAM.includes(c) ? own.pipeline! : 0)]))
}

/**
 * When the oldest batch still waiting for `consumer` (any org) was published, in epoch ms; null
 * when none waits. Batch ids grow with time, so the first by id is the oldest (a redriven batch
 * is a new one). For sessions and alerts, what still waits for the pipeline counts, and a batch
 * handed on keeps its publish time.
 */
export async function oldestPending(sql: Sql, consumer: ConsumerName): Promise<number | null> {
  const oldest = (name: ConsumerName) =>
    withSettings(sql, { 'app.bus_consumer': name }, async (tx) => {
      const [row] = await tx<{ at: Date }[]>`
        select created_at as at from bus_pending where consumer = ${name} order by batch_id limit 1`
      return row ? row.at.getTime() : null
    })
  const times = [await oldest(consumer), DOWNSTREAM.includes(consumer) ? await oldest('pipeline') : null]
  const known = times.filter((t): t is number => t !== null)
  return known.length === 0 ? null : Math.min(...known)
}

/**
 * A database that cannot be reached (or is shutting down) is nobody's fault: the batch's
 * attempt is not counted and the org is retried once it answers. Any other error counts,
 * statement timeouts, deadlocks and serialisation failures included: one that repeats
 * BUS_MAX_ATTEMPTS times, backing off, is the batch's.
 */
const COUNTED_TRANSIENT = new Set(['57014', '40001', '40P01', '55P03'])
export function databaseUnavailable(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (isTransientDbError(e) && !(typeof code === 'string' && COUNTED_TRANSIENT.has(code))) return true
  }
  return false
}

/** The delay before the next attempt of a batch that failed `attempts` times, as SQL. */
function retryDue(retryBaseMs: number) {
  return `last_failed_at + least(${Math.max(0, Math.floor(retryBaseMs))}::float8 * power(2, greatest(attempts - 1, 0)), ${MAX_RETRY_MS})
    * interval '1 millisecond' <= now()`
}

/** One round over the pending work of `consumer`; returns the number of batches applied. */
export async function drainOnce(sql: Sql, consumer: ConsumerName, handle: Handler, options: DrainOptions = {}): Promise<number> {
  const due = retryDue(options.retryBaseMs ?? DEFAULT_RETRY_BASE_MS)
  // Orgs whose only pending batches are waiting out a retry delay are not visited: with many of
  // them they would otherwise fill the round and starve the orgs that have work.
  const orgs = await withSettings(
    sql,
    { 'app.bus_consumer': consumer },
    (tx) =>
      tx<{ org_id: string }[]>`
      select org_id from bus_pending where consumer = ${consumer} and (attempts = 0 or ${tx.unsafe(due)})
       group by org_id order by min(batch_id) limit ${options.orgs ?? 32}`,
  )
  let applied = 0
  for (const { org_id } of orgs) {
    try {
      applied += await drainOrg(sql, org_id, consumer, handle, options, due)
    } catch (err) {
      if (!options.onOrgError) throw err
      options.onOrgError(org_id, err)
    }
  }
  return applied
}

/**
 * One org: its batches that never failed, together in one transaction; if that fails, each alone,
 * so that only the failing batch is held back (issue 14: one poison batch used to stall the org's
 * derived state forever). Then the failed batches whose retry is due, one per transaction. A
 * failure is counted in its own transaction after the rollback, and the batch moves to
 * `bus_dead_letters` at BUS_MAX_ATTEMPTS. The org's later batches do not wait for it: liveness
 * wins over order (docs/dead-letters.md).
 */
async function drainOrg(
  sql: Sql,
  orgId: string,
  consumer: ConsumerName,
  handle: Handler,
  o: DrainOptions,
  due: string,
): Promise<number> {
  const claimed: string[] = []
  let applied = 0
  let alone: string[] = []
  try {
    applied = await withOrg(sql, orgId, async (tx) => {
      const ids = await claim(tx, consumer, { fresh: o.batches ?? 10 })
      claimed.push(...ids)
      return ids.length === 0 ? 0 : apply(tx, consumer, handle, ids)
    })
  } catch (err) {
    if (databaseUnavailable(err)) throw err
    if (claimed.length === 1) await recordFailure(sql, orgId, consumer, claimed[0]!, err, o)
    else alone = claimed
  }
  for (const id of alone) applied += await applyAlone(sql, orgId, consumer, handle, id, o)
  const retries = await withOrg(
    sql,
    orgId,
    (tx) =>
      tx<{ batch_id: string }[]>`
      select batch_id from bus_pending where consumer = ${consumer} and attempts > 0 and ${tx.unsafe(due)}
       order by batch_id limit ${RETRIES_PER_ROUND}`,
  )
  for (const { batch_id } of retries) applied += await applyAlone(sql, orgId, consumer, handle, batch_id, o)
  return applied
}

/** One batch in its own transaction; a handler failure is counted (and may dead-letter it). */
async function applyAlone(
  sql: Sql,
  orgId: string,
  consumer: ConsumerName,
  handle: Handler,
  id: string,
  o: DrainOptions,
): Promise<number> {
  try {
    return await withOrg(sql, orgId, async (tx) => {
      const ids = await claim(tx, consumer, { id })
      return ids.length === 0 ? 0 : apply(tx, consumer, handle, ids)
    })
  } catch (err) {
    if (databaseUnavailable(err)) throw err
    await recordFailure(sql, orgId, consumer, id, err, o)
    return 0
  }
}

/**
 * Claims by deleting the pending rows, in batch order, past those another transaction is claiming
 * (`skip locked`): two loops of one consumer, or two instances, work on one org side by side
 * instead of the second waiting for the first to commit (issue 13), and a batch being retried by
 * one is not retried by the other at once (which would count two attempts per round). The ids are
 * picked once (`any(array(…))`); as `in (…)`, the planner may run the pick again per row and
 * claim more than `fresh` (seen: 164 in one round).
 */
async function claim(tx: Tx, consumer: ConsumerName, which: { fresh: number } | { id: string }): Promise<string[]> {
  // Safe without waiting for the WAL flush: a crash can only lose a whole consumer transaction,
  // claim and effects together, and the batch is then claimed again. The ack path (the bus
  // insert) keeps synchronous commit.
  await tx`select set_config('synchronous_commit', 'off', true)`
  const pick = 'id' in which ? tx`batch_id = ${which.id}` : tx`attempts = 0 order by batch_id limit ${which.fresh}`
  const rows = await tx<{ batch_id: string }[]>`
    delete from bus_pending where consumer = ${consumer} and batch_id = any(array(
      select batch_id from bus_pending where consumer = ${consumer} and ${pick} for update skip locked))
    returning batch_id`
  return rows.map((r) => r.batch_id).sort((x, y) => (BigInt(x) < BigInt(y) ? -1 : 1))
}

async function apply(tx: Tx, consumer: ConsumerName, handle: Handler, ids: string[]): Promise<number> {
  const rows = await tx<{ id: string; payload: Uint8Array; skip_keys: string[] | null }[]>`
    select id, payload, skip_keys from bus_batches where id = any(${ids}::bigint[]) order by id`
  const batches = rows.map((r) => ({ batchId: r.id, message: handedOn(decodePayload(r.payload), r.skip_keys) }))
  let finished = false
  const finish: Finish = async (stored) => {
    if (finished) return
    finished = true
    if (consumer === 'pipeline' && stored) await forward(tx, batches, stored)
    await finishBatches(tx, ids)
  }
  await handle(tx, batches, finish)
  await finish()
  return ids.length
}

/**
 * The last consumer to finish a batch removes it. A lock per batch (advisory: quint_app may update
 * only `skip_keys`, and a row lock would queue behind that update) serialises consumers finishing
 * together, and the delete, a new statement, then sees the others' committed claims.
 */
async function finishBatches(tx: Tx, ids: string[]): Promise<void> {
  await tx`
    select pg_advisory_xact_lock(hashtextextended('quint_bus:' || id, 0))
      from unnest(${ids}::bigint[]) id order by id`
  await tx`
    delete from bus_batches b where b.id = any(${ids}::bigint[])
       and not exists (select 1 from bus_pending p where p.org_id = b.org_id and p.batch_id = b.id)`
}

/** An error as stored with a dead letter: class and message, scrubbed of tokens, bounded. */
export function describeError(err: unknown): { errorClass: string; errorMessage: string } {
  const e = err as { name?: unknown; code?: unknown; message?: unknown }
  const name = typeof e?.name === 'string' && e.name !== '' ? e.name : 'Error'
  const code = typeof e?.code === 'string' ? ` ${e.code}` : ''
  const message = typeof e?.message === 'string' ? e.message : String(err)
  return { errorClass: scrub(`${name}${code}`).slice(0, 200), errorMessage: scrub(message).slice(0, 1000) }
}

/**
 * A message's JSON text as `jsonb` can hold it. Postgres's `json` (the bus's payload) keeps any
 * escape, but `jsonb` refuses `\u0000` (22P05) and lone surrogates (issue 14: a bus message with
 * a NUL in a lifecycle report's unknown field could never be dead-lettered, and the failed move
 * aborted the org's round every time). Those escapes become `\ufffd`, as ingest does for
 * free-form content; everything else is kept byte for byte. One left-to-right pass over the
 * escapes, so an escaped backslash (`\\u0000`, the text "\u0000") is never taken for one.
 */
export function storableJson(text: string): string {
  if (!text.includes('\\u')) return text
  return text.replace(
    /\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})|\\[^u]/g,
    (m: string, _high?: string, _low?: string, one?: string) => {
      if (one === undefined) return m
      const c = Number.parseInt(one, 16)
      return c === 0 || (c >= 0xd800 && c <= 0xdfff) ? '\\ufffd' : m
    },
  )
}

/**
 * Counts a failed attempt, in its own transaction (the failing one rolled back, and the count
 * with it, which is how a poison batch used to be retried forever), and dead-letters the batch
 * once it has used its attempts, in that same transaction: between a count and a move of their
 * own another loop or instance could take the batch for one attempt more (issue 13: seen with two
 * pipeline loops, 3 attempts of 2). The move runs behind a savepoint: one that fails for any
 * reason but an outage rolls back alone, is reported (onDeadLetterError) and leaves the batch
 * pending with its count, retried with backoff; it never aborts the org's round (issue 14).
 */
async function recordFailure(sql: Sql, orgId: string, consumer: ConsumerName, id: string, err: unknown, o: DrainOptions) {
  const outcome = await withOrg(sql, orgId, async (tx) => {
    const [row] = await tx<{ attempts: number }[]>`
      update bus_pending set attempts = attempts + 1, first_failed_at = coalesce(first_failed_at, now()), last_failed_at = now()
       where consumer = ${consumer} and batch_id = ${id}
      returning attempts`
    // Gone: another instance applied or dead-lettered it meanwhile.
    if (!row) return null
    if (row.attempts < (o.maxAttempts ?? DEFAULT_MAX_ATTEMPTS)) return { attempts: row.attempts }
    await tx`savepoint dead_letter`
    try {
      return { attempts: row.attempts, moved: await deadLetter(tx, consumer, id, err) }
    } catch (moveErr) {
      if (databaseUnavailable(moveErr)) throw moveErr
      await tx`rollback to savepoint dead_letter`
      return { attempts: row.attempts, moveErr }
    }
  })
  if (!outcome) return
  o.onBatchError?.(orgId, id, outcome.attempts, err)
  if ('moveErr' in outcome) o.onDeadLetterError?.(orgId, id, outcome.moveErr)
  else if (outcome.moved) o.onDeadLetter?.(orgId, id)
}

/** Moves this consumer's claim of batch `id` to `bus_dead_letters` (in the org's `tx`); false when it is already gone. */
async function deadLetter(tx: Tx, consumer: ConsumerName, id: string, err: unknown): Promise<boolean> {
  const { errorClass, errorMessage } = describeError(err)
  const [batch] = await tx<{ payload: Uint8Array; skip_keys: string[] | null }[]>`
    select payload, skip_keys from bus_batches where id = ${id}`
  if (!batch) return false
  // What this consumer was handed (a redrive must not bring it the events the pipeline
  // skipped); bytes that do not decode are kept as they are, so the batch is still set aside.
  let message: string
  try {
    message = JSON.stringify(handedOn(decodePayload(batch.payload), batch.skip_keys))
  } catch {
    message = JSON.stringify({ undecodable: Buffer.from(batch.payload).toString('base64') })
  }
  const [dead] = await tx<{ id: string }[]>`
    with p as (
      delete from bus_pending where consumer = ${consumer} and batch_id = ${id}
      returning org_id, batch_id, attempts, first_failed_at, last_failed_at
    )
    insert into bus_dead_letters (org_id, consumer, source, message_id, kind, payload, attempts, error_class,
                                  error_message, first_failed_at, last_failed_at)
    select p.org_id, ${consumer}, 'local', p.batch_id::text, b.kind, ${storableJson(message)}::text::jsonb, p.attempts,
           ${errorClass}, ${errorMessage}, p.first_failed_at, p.last_failed_at
      from p join bus_batches b on b.org_id = p.org_id and b.id = p.batch_id
    on conflict (org_id, consumer, source, message_id) do nothing
    returning id`
  await finishBatches(tx, [id])
  return dead !== undefined
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
  /**
   * Called at most once a second with when the oldest batch still waiting for this consumer was
   * published (epoch ms, null when none waits): the consumer lag gauge.
   */
  onLag?: (oldestMs: number | null) => void
}

const MAX_BACKOFF_MS = 5_000
const LAG_EVERY_MS = 1_000

/**
 * Runs one consumer until `signal` aborts: drain, then sleep until a NOTIFY on the bus channel
 * or the poll interval, whichever comes first. An org whose round fails as a whole (database
 * down) is retried with exponential backoff; its claim rolled back, so nothing is lost, and the
 * other orgs go on. A batch failing in its handler is retried on its own with backoff and
 * dead-lettered after `maxAttempts` (see `drainOrg`). Resolves after the round in progress when
 * aborted.
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
  let lagAt = 0
  // A database outage fails every round the same way: one line per kind and interval (issue 14).
  const throttled = new ThrottledLog(o.log)
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
            throttled.error(
              `org:${errorKind(err)}`,
              { err, consumer: o.consumer, org_id: orgId },
              'consumer round failed for org; will retry',
            )
          },
          onBatchError(orgId, batchId, attempts, err) {
            o.log.error(
              {
                err,
                consumer: o.consumer,
                org_id: orgId,
                batch_id: batchId,
                attempts,
                max_attempts: o.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
              },
              'bus batch failed in its handler; retried with backoff, then dead-lettered',
            )
            o.onBatchError?.(orgId, batchId, attempts, err)
          },
          onDeadLetter(orgId, batchId) {
            o.log.error(
              { consumer: o.consumer, org_id: orgId, batch_id: batchId },
              "bus batch dead-lettered; the org's later batches go on",
            )
            o.onDeadLetter?.(orgId, batchId)
          },
          onDeadLetterError(orgId, batchId, err) {
            o.log.error(
              { err, consumer: o.consumer, org_id: orgId, batch_id: batchId },
              'dead-lettering a bus batch failed; it stays pending and the move is tried again after its next attempt',
            )
            o.onDeadLetterError?.(orgId, batchId, err)
          },
        })
      } catch (err) {
        failed = true
        throttled.error(`round:${errorKind(err)}`, { err, consumer: o.consumer }, 'consumer round failed; will retry')
      }
      if (o.onLag && Date.now() - lagAt >= LAG_EVERY_MS) {
        lagAt = Date.now()
        // A gauge only: a database that does not answer leaves the last value (the lag then grows).
        await oldestPending(o.sql, o.consumer).then(o.onLag, () => {})
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
