/**
 * @module features/actions/store
 * The pipeline consumer: stores events in `actions` through the `(org_id, event_key)` ledger.
 * The ledger insert answers which keys are new; only those become actions, so a retried event
 * (same key, any batch, any month) is stored once. On the local bus, sessions and alerts follow
 * the pipeline: `finish` hands the bus the keys each batch stored (issue 13). Array parameters (`unnest`) make each batch
 * a fixed number of statements whatever its size. The causal-chain links (issue 9,
 * docs/causal-chain.md) are planned before the insert and written with the rows (one query); a
 * late parent adopts its stored children (one query, plus two only when there are some). The
 * stored actions are named on the org's live log (issue 12, ../live/repo.ts) as the last statement,
 * with the approval requests (override tokens) pending on them, which a console then hears again
 * with their event.
 */
import type { Tx } from '../../infra/db.ts'
import type { WireEvent } from '../../bus/bus.ts'
import type { Claimed, Finish } from '../../bus/consume-local.ts'
import { adoptLinks, planLinks } from '../chain/linker.ts'
import { recordStored } from '../ingest/stats.ts'
import { rollUp } from '../events/rollup.ts'
import { recordLive } from '../live/repo.ts'
import { pendingForEvents } from '../overrides/pending.ts'

/** An action as this batch stores it: what the causal chain and the ingest statistics read. */
export interface StoredAction {
  event: WireEvent
  id: string
  /** The server's receive time (ISO): `actions.created_at`. */
  createdAt: string
  machineId: string | null
}
/** The batch that brought the event first (a repeat in a later batch of the same call is not stored). */
type Row = StoredAction & { batchId: string }

/** The pipeline consumer's handler (see src/bus/consume-local.ts `Handler`, and its `finish`). */
export async function storeEvents(tx: Tx, batches: Claimed[], finish?: Finish): Promise<void> {
  const rows = new Map<string, Row>()
  for (const { batchId, message } of batches) {
    if (message.kind !== 'events') continue
    for (const event of message.events) {
      if (!rows.has(event.eventKey)) {
        rows.set(event.eventKey, {
          event,
          id: crypto.randomUUID(),
          createdAt: message.receivedAt,
          machineId: message.machineId,
          batchId,
        })
      }
    }
  }
  if (rows.size === 0) return
  // Pipeline transactions of one org run side by side (two loops, issue 13); the chain's part is
  // serial (../chain/linker.ts `lockChain`), and so is everything from the org's stats row on.
  // Keys in order: two transactions bringing the same keys (a retry beside its original) wait
  // for each other in one order, never in a cycle.
  const all = [...rows.values()].sort((x, y) => (x.event.eventKey < y.event.eventKey ? -1 : 1))
  const fresh = await tx<{ event_key: string }[]>`
    insert into event_keys (org_id, event_key, action_id, action_created_at)
    select app_current_org(), k, i, c
      from unnest(${all.map((r) => r.event.eventKey)}::text[], ${all.map((r) => r.id)}::text[]::uuid[],
                  ${all.map((r) => r.createdAt)}::text[]::timestamptz[]) as u(k, i, c)
    on conflict do nothing
    returning event_key`
  if (fresh.length === 0) return
  const keep = fresh.map((f) => rows.get(f.event_key)!)
  // Every column travels as text[] and is cast by the server: postgres.js infers an array's type
  // from its first element and gets booleans and nullable numbers wrong.
  const col = (f: (r: Row) => string | number | boolean | null) =>
    keep.map((r) => {
      const v = f(r)
      return v === null ? null : String(v)
    })
  const json = (v: unknown) => JSON.stringify(v ?? null)
  const links = await planLinks(tx, keep)
  await tx`
    insert into actions (org_id, id, created_at, event_key, event_id, occurred_at, client_timestamp, machine_id,
                         session_key, agent_key, schema_version, source, platform, action_type, action, tool_name,
                         arguments, decision, blocked, risk_score, labels, extra, redacted, parent_action_id, parent_link)
    select app_current_org(), id::uuid, created_at::timestamptz, event_key, event_id, occurred_at::timestamptz,
           client_ts, machine_id::uuid, session_key, agent_key, schema_version::smallint, source, platform,
           action_type, action, tool_name, arguments::jsonb, decision, blocked::bool, risk_score::smallint,
           labels::jsonb, extra::jsonb, redacted::bool, parent_id::uuid, parent_link
      from unnest(
        ${col((r) => r.id)}::text[], ${col((r) => r.createdAt)}::text[], ${col((r) => r.event.eventKey)}::text[],
        ${col((r) => r.event.eventId)}::text[], ${col((r) => r.event.occurredAt)}::text[],
        ${col((r) => r.event.clientTimestamp)}::text[], ${col((r) => r.machineId)}::text[],
        ${col((r) => r.event.sessionKey)}::text[], ${col((r) => r.event.agentKey)}::text[],
        ${col((r) => r.event.schemaVersion)}::text[], ${col((r) => r.event.source)}::text[],
        ${col((r) => r.event.platform)}::text[], ${col((r) => r.event.actionType)}::text[],
        ${col((r) => r.event.action)}::text[], ${col((r) => r.event.toolName)}::text[],
        ${col((r) => json(r.event.arguments))}::text[], ${col((r) => r.event.decision)}::text[],
        ${col((r) => r.event.blocked)}::text[], ${col((r) => r.event.riskScore)}::text[],
        ${col((r) => json(r.event.labels))}::text[], ${col((r) => json(r.event.extra))}::text[],
        ${col((r) => r.event.redactions > 0)}::text[], ${col((r) => links.get(r.id)?.parentId ?? null)}::text[],
        ${col((r) => links.get(r.id)?.rule ?? null)}::text[]
      ) as u(id, created_at, event_key, event_id, occurred_at, client_ts, machine_id, session_key, agent_key,
             schema_version, source, platform, action_type, action, tool_name, arguments, decision, blocked,
             risk_score, labels, extra, redacted, parent_id, parent_link)`
  // In the same transaction as the rows: a link or a count is never lost or doubled on a retry.
  await adoptLinks(tx, keep)
  await recordStored(tx, keep)
  await rollUp(tx, keep)
  // Approval requests waiting on these events were announced without them: announced again.
  const waiting = await pendingForEvents(
    tx,
    keep.map((r) => r.event.eventKey),
  )
  // Last, after the bus's own bookkeeping (its batch locks): the console's live stream hears of
  // them at commit (issue 12), and the log's per-org lock is held only for the commit.
  // Which events each batch stored: on the local bus sessions and alerts take these, and only
  // these, after this commit (src/bus/consume-local.ts `forward`).
  const stored = new Map<string, Set<string>>()
  for (const r of keep) {
    let keys = stored.get(r.batchId)
    if (!keys) stored.set(r.batchId, (keys = new Set()))
    keys.add(r.event.eventKey)
  }
  await finish?.(stored)
  await recordLive(
    tx,
    'event',
    keep.map((r) => r.id),
  )
  await recordLive(tx, 'approval', waiting)
}
