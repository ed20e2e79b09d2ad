/**
 * @module features/machines/delivery
 * Which policy hash this server last handed each machine (issue 12, sql/0030_policy_delivery.sql,
 * docs/machines.md "Policy delivery"): a heartbeat's answer, a `GET …/policies` 200, or the fleet
 * stream's `policy` event. The console's Policies page shows, after a save, which machines hold
 * the new hash. Written only when the hash changed, and then announced on the org's live log, so
 * `fleet` subscribers of the live stream hear a `delivery` event.
 */
import type { Tx } from '../../infra/db.ts'
import { recordLive } from '../live/repo.ts'

export type DeliveredVia = 'heartbeat' | 'policies' | 'stream'

export interface PolicySent {
  machineId: string
  policyHash: string
}

/**
 * Records the hashes handed to these machines (inside `withOrg`); returns the machines whose
 * hash changed (the others cost a read of their row, no write). It appends them to the live log,
 * so it must be the last statement of its transaction (../live/repo.ts `recordLive`).
 */
export async function recordDeliveries(tx: Tx, via: DeliveredVia, sent: readonly PolicySent[]): Promise<string[]> {
  if (sent.length === 0) return []
  const rows = await tx<{ id: string }[]>`
    update machines m
       set policy_delivered_hash = u.hash, policy_delivered_at = now(), policy_delivered_via = ${via}
      from unnest(${sent.map((s) => s.machineId)}::text[]::uuid[], ${sent.map((s) => s.policyHash)}::text[]) as u(id, hash)
     where m.id = u.id and m.policy_delivered_hash is distinct from u.hash
    returning m.id`
  const changed = rows.map((r) => r.id)
  await recordLive(tx, 'delivery', changed)
  return changed
}

/**
 * The heartbeat's own update, with the delivery folded in: the row is written by every heartbeat
 * anyway (`last_seen_at`), so recording the hash it answers costs nothing more; `delivered_at`
 * and `delivered_via` move only when the hash changed. Returns whether it did; the caller then
 * names the machine on the live log (`recordLive(tx, 'delivery', [machineId])`) as the last
 * statement of its transaction, after whatever else the heartbeat writes (its `ingest_stats`
 * row: the pipeline writes those rows before its own append, so taking the log's lock first
 * would deadlock with it).
 */
export async function heartbeatUpdate(
  tx: Tx,
  machineId: string,
  body: { agentVersion: string | null; uptime: number | null },
  policyHash: string,
): Promise<boolean> {
  const changed = tx`policy_delivered_hash is distinct from ${policyHash}`
  const [row] = await tx<{ changed: boolean }[]>`
    update machines set last_seen_at = now(),
           agent_version = coalesce(${body.agentVersion}, agent_version),
           uptime_seconds = coalesce(${body.uptime}, uptime_seconds),
           policy_delivered_at = case when ${changed} then now() else policy_delivered_at end,
           policy_delivered_via = case when ${changed} then 'heartbeat' else policy_delivered_via end,
           policy_delivered_hash = ${policyHash}
     where id = ${machineId}
    returning policy_delivered_at = now() and policy_delivered_via = 'heartbeat' as changed`
  return row?.changed ?? false
}
