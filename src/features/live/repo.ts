/**
 * @module features/live/repo
 * The org's live log (sql/0031_live_log.sql, docs/live.md): each commit that stored actions,
 * raised or triaged alerts, changed which policy hash a machine holds, or asked for or ended an
 * approval (minted, decided or revoked an override token) appends one row naming them, as the
 * last statement of its transaction, so a commit is announced exactly when it is
 * visible and a rollback never is. The console's live stream (./hub.ts) reads the log after its
 * cursor and fetches the rows it names by id: commit order, nothing re-read, nothing missed.
 *
 * Writers ring the instances after their commit (src/infra/bell.ts: NOTIFY `quint_live`, or Redis
 * `live:ring`); a consumer thread cannot, so it records the org (src/infra/rung.ts) and its
 * parent rings for it (src/bus/pool.ts), as the fleet log does (../fleet/repo.ts).
 */
import type { Tx } from '../../infra/db.ts'
import { ALERT_SELECT, type AlertRow } from '../alerts/repo.ts'
import { EVENT_COLUMNS, type EventRow } from '../events/view.ts'
import { approvalStates, type ApprovalStateRow } from '../overrides/pending.ts'
import { rungs } from '../../infra/rung.ts'

export const LIVE_NOTIFY_CHANNEL = 'quint_live'
export const LIVE_REDIS_CHANNEL = 'live:ring'

/** What a writer calls after its commit (the live hub, ./hub.ts). */
export interface LiveRing {
  ring(orgIds: readonly string[]): void
}

export type LiveKind = 'event' | 'alert' | 'delivery' | 'approval'

/**
 * How long the log keeps a row. A reader is seconds behind (a ring, or the next keep-alive tick);
 * one further behind than this (its pumps failing) tells its streams `gap`.
 */
const KEEP_MINUTES = 10
/** The log is pruned as written, every this many rows of an org (a bounded delete of that org's rows). */
const PRUNE_EVERY = 100

/**
 * Appends one row naming `ids` (actions, alerts, machines or override jtis) to the org's live log, inside
 * `withOrg`. Call it last in the transaction, after every other write and lock (the bus's batch
 * locks too: consumers call their `finish` first, src/bus/consume-local.ts): the cursor row's lock
 * orders the org's writers until they commit, so it is held for the commit only, and a writer
 * that locked anything after it (a heartbeat's `ingest_stats` row) would deadlock with one that
 * takes the same locks before it (the pipeline).
 */
export async function recordLive(tx: Tx, kind: LiveKind, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return
  const [row] = await tx<{ seq: string; org: string }[]>`
    with c as (
      insert into live_cursors (org_id, seq) values (app_current_org(), 1)
      on conflict (org_id) do update set seq = live_cursors.seq + 1
      returning org_id, seq)
    insert into live_log (org_id, seq, kind, ids)
    select org_id, seq, ${kind}, ${ids as string[]}::text[]::uuid[] from c
    returning seq, org_id::text as org`
  const seq = Number(row!.seq)
  if (seq % PRUNE_EVERY === 0) {
    await tx`delete from live_log where seq < ${seq} and created_at < now() - make_interval(mins => ${KEEP_MINUTES})`
  }
  rungs().live.add(row!.org)
}

/** Where the org's log ends now: a new stream's reader starts after it. */
export async function liveLogEnd(tx: Tx): Promise<number> {
  const [row] = await tx<{ seq: string }[]>`select seq from live_cursors`
  return row ? Number(row.seq) : 0
}

export interface LiveLogRow {
  seq: number
  kind: LiveKind
  /** How many ids the row names. */
  n: number
  /** The first `maxIds` of them (a row past the reader's bound is not read whole). */
  ids: string[]
}

/**
 * Log rows after `after`, oldest first, at most `limit`; and the oldest row the log still keeps
 * (a reader that fell behind the pruning is told). Each row's ids are cut to `maxIds`.
 */
export async function liveLogAfter(
  tx: Tx,
  after: number,
  limit: number,
  maxIds: number,
): Promise<{ rows: LiveLogRow[]; oldest: number }> {
  const rows = await tx<{ seq: string; kind: LiveKind; n: number; ids: string[]; oldest: string }[]>`
    select seq, kind, cardinality(ids) as n, ids[1:${maxIds}]::text[] as ids, (select min(seq) from live_log) as oldest
      from live_log where seq > ${after} order by seq limit ${limit}`
  return {
    rows: rows.map((r) => ({ seq: Number(r.seq), kind: r.kind, n: r.n, ids: r.ids })),
    oldest: rows.length > 0 ? Number(rows[0]!.oldest) : after + 1,
  }
}

/** The ids the log rows `seqs` name, each once (a subquery). */
const loggedIds = (tx: Tx, seqs: readonly number[]) =>
  tx`select unnest(ids) from live_log where seq = any(${seqs.map(String)}::text[]::bigint[])`

/** The actions the log rows name, in the order they were stored. */
export function loggedEvents(tx: Tx, seqs: readonly number[]): Promise<EventRow[]> {
  return tx<EventRow[]>`
    select ${EVENT_COLUMNS(tx)} from actions a where a.id = any(array(${loggedIds(tx, seqs)}))
     order by a.created_at, a.occurred_at, a.id`
}

/** The alerts the log rows name, as they are now (a triage read after it committed shows its status). */
export function loggedAlerts(tx: Tx, seqs: readonly number[]): Promise<AlertRow[]> {
  return tx<AlertRow[]>`${ALERT_SELECT(tx)} where a.id = any(array(${loggedIds(tx, seqs)})) order by a.updated_at, a.id`
}

export interface DeliveryRow {
  id: string
  policy_delivered_hash: string
  policy_delivered_at: Date
  policy_delivered_via: string
}

/** The policy deliveries of the machines the log rows name, as recorded now. */
export function loggedDeliveries(tx: Tx, seqs: readonly number[]): Promise<DeliveryRow[]> {
  return tx<DeliveryRow[]>`
    select id, policy_delivered_hash, policy_delivered_at, policy_delivered_via from machines
     where id = any(array(${loggedIds(tx, seqs)})) and policy_delivered_hash is not null
     order by policy_delivered_at, id`
}

/** The approval requests (override tokens) the log rows name, as they are now: pending, decided or ended. */
export function loggedApprovals(tx: Tx, seqs: readonly number[]): Promise<ApprovalStateRow[]> {
  return approvalStates(tx, loggedIds(tx, seqs))
}
