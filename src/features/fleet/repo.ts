/**
 * @module features/fleet/repo
 * The org's fleet log (sql/0028_fleet_stream.sql, docs/fleet-stream.md): every change a daemon
 * must hear at once is one row, written in the transaction of the change itself, so a change
 * that commits is always announced and one that rolls back never is.
 *
 * The same transaction sends `NOTIFY quint_fleet, '<org id>'` (delivered at commit): the
 * doorbell of instances that share the Postgres (src/infra/bell.ts). In cluster mode the writer
 * also rings Redis (`fleet:ring`) after the commit; a consumer thread cannot, so it records the
 * org (src/infra/rung.ts) and its parent rings for it (src/bus/pool.ts).
 */
import type { Tx } from '../../infra/db.ts'
import { rungs } from '../../infra/rung.ts'

export const FLEET_NOTIFY_CHANNEL = 'quint_fleet'
export const FLEET_REDIS_CHANNEL = 'fleet:ring'

/** How long the log keeps an event: a daemon away for longer resumes from the current state. */
export const FLEET_LOG_DAYS = 7

export type FleetKind = 'policy' | 'signature' | 'domains' | 'machine' | 'override'

export interface FleetEvent {
  seq: number
  machine_id: string | null
  kind: FleetKind
  data: Record<string, unknown>
  created_at: Date
}

/** What a writer calls after its commit (the fleet hub, src/features/fleet/hub.ts). */
export interface FleetRing {
  ring(orgIds: readonly string[]): void
}

/**
 * Appends one event to the org's log (inside `withOrg`): `machineId` null for every machine of
 * the org. The cursor row's lock orders concurrent writers of one org until they commit.
 */
export async function recordFleetEvent(
  tx: Tx,
  event: { kind: FleetKind; machineId?: string | null; data: Record<string, unknown> },
): Promise<number> {
  const [row] = await tx<{ seq: string; org: string }[]>`
    insert into fleet_cursors (org_id, seq) values (app_current_org(), 1)
    on conflict (org_id) do update set seq = fleet_cursors.seq + 1
    returning seq, org_id::text as org`
  const seq = Number(row!.seq)
  await tx`
    insert into fleet_events (org_id, seq, machine_id, kind, data)
    values (app_current_org(), ${seq}, ${event.machineId ?? null}, ${event.kind}, ${tx.json(event.data as never)})`
  // Pruned as written, one org at a time: a bounded delete, every 100th event.
  if (seq % 100 === 0) {
    await tx`delete from fleet_events where created_at < now() - make_interval(days => ${FLEET_LOG_DAYS})`
  }
  await tx`select pg_notify(${FLEET_NOTIFY_CHANNEL}, ${row!.org})`
  rungs().fleet.add(row!.org)
  return seq
}

/** The org's last sequence number (0 before its first event). */
export async function lastSeq(tx: Tx): Promise<number> {
  const [row] = await tx<{ seq: string }[]>`select seq from fleet_cursors`
  return row ? Number(row.seq) : 0
}

/**
 * Events after `after` for these machines of the org (and those for every machine; `null`: all of
 * the org's, as the console's live stream reads them), oldest first, at most `limit`. The oldest
 * one kept, to tell a daemon that was away too long (null when the log is empty).
 */
export async function fleetEventsAfter(
  tx: Tx,
  after: number,
  machineIds: readonly string[] | null,
  limit: number,
): Promise<{ events: FleetEvent[]; oldest: number | null }> {
  const rows = await tx<(Omit<FleetEvent, 'seq'> & { seq: string })[]>`
    select seq, machine_id, kind, data, created_at from fleet_events
     where seq > ${after}
       ${machineIds ? tx`and (machine_id is null or machine_id = any(${machineIds as string[]}::uuid[]))` : tx``}
     order by seq limit ${limit}`
  const [oldest] = await tx<{ seq: string | null }[]>`select min(seq) as seq from fleet_events`
  return {
    events: rows.map((r) => ({ ...r, seq: Number(r.seq) })),
    oldest: oldest?.seq == null ? null : Number(oldest.seq),
  }
}

/**
 * Whether an active signature of the org reached its expiry after `since`: it left the managed
 * policy then, with no write to announce it (src/features/signatures/compile.ts).
 */
export async function expiredBetween(tx: Tx, since: Date): Promise<boolean> {
  const [row] = await tx<{ n: number }[]>`
    select count(*)::int as n from threat_signatures
     where status = 'active' and expires_at > ${since} and expires_at <= now()`
  return (row?.n ?? 0) > 0
}
