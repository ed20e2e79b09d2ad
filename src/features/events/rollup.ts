/**
 * @module features/events/rollup
 * The hourly counts behind `GET /v1/events/stats` (sql/0017_read_side.sql, issue 9): grouping
 * 50,000 rows per request missed the 100 ms target, summing a few hundred hourly rows does not.
 * Written by the pipeline in the transaction that stores the actions, so a count is never lost,
 * doubled or ahead of the rows it counts.
 */
import type { Tx } from '../../infra/db.ts'
import type { StoredAction } from '../actions/store.ts'
import { riskBand } from './view.ts'

export const HOUR_MS = 3_600_000

/** The start of the UTC hour holding `ms`, as the stats' `date_bin('1 hour', …)` computes it. */
export const hourOf = (ms: number): number => Math.floor(ms / HOUR_MS) * HOUR_MS

export async function rollUp(tx: Tx, stored: StoredAction[]): Promise<void> {
  const counts = new Map<string, number>()
  const tops = new Map<string, number>()
  const add = (m: Map<string, number>, key: string) => m.set(key, (m.get(key) ?? 0) + 1)
  for (const { event, machineId } of stored) {
    const hour = new Date(hourOf(Date.parse(event.occurredAt))).toISOString()
    const band = riskBand(event.riskScore) ?? 'unscored'
    add(counts, JSON.stringify([hour, event.decision ?? '', event.blocked, band]))
    if (event.toolName !== null) add(tops, JSON.stringify([hour, 'tool', event.toolName]))
    if (event.agentKey !== null) add(tops, JSON.stringify([hour, 'agent', event.agentKey]))
    if (machineId !== null) add(tops, JSON.stringify([hour, 'machine', machineId]))
  }
  // Sorted keys: concurrent pipeline transactions of one org lock the same rows in the same
  // order, so they queue instead of deadlocking.
  const rows = (m: Map<string, number>) => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  const hourly = rows(counts).map(([k, n]) => [...(JSON.parse(k) as [string, string, boolean, string]), n] as const)
  await tx`
    insert into event_hourly (org_id, hour, decision, blocked, band, n)
    select app_current_org(), h::timestamptz, d, b, r, n
      from unnest(${hourly.map((r) => r[0])}::text[], ${hourly.map((r) => r[1])}::text[],
                  ${hourly.map((r) => String(r[2]))}::text[]::boolean[], ${hourly.map((r) => r[3])}::text[],
                  ${hourly.map((r) => r[4])}::int[]) as u(h, d, b, r, n)
    on conflict (org_id, hour, decision, blocked, band) do update set n = event_hourly.n + excluded.n`
  const top = rows(tops).map(([k, n]) => [...(JSON.parse(k) as [string, string, string]), n] as const)
  if (top.length === 0) return
  await tx`
    insert into event_hourly_top (org_id, hour, dim, key, n)
    select app_current_org(), h::timestamptz, d, k, n
      from unnest(${top.map((r) => r[0])}::text[], ${top.map((r) => r[1])}::text[], ${top.map((r) => r[2])}::text[],
                  ${top.map((r) => r[3])}::int[]) as u(h, d, k, n)
    on conflict (org_id, hour, dim, key) do update set n = event_hourly_top.n + excluded.n`
}
