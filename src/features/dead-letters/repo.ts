/**
 * @module features/dead-letters/repo
 * The dead-letter store (`bus_dead_letters`, sql/0015_dead_letters.sql), shared by the admin
 * routes and the `quint-cloud dead-letters` command. Tenant work runs in `withOrg`; only counts
 * and ids are read across orgs (the `dead_letter_discovery` policy), for the waiting gauge and
 * for operators.
 *
 * A redrive deletes the dead letter and hands its message back to the one consumer that failed
 * it (Bus.redeliver) in the same tenant transaction: if the bus refuses, the dead letter stays.
 */
import type { Bus, BusMessage, ConsumerName } from '../../bus/bus.ts'
import { CONSUMERS } from '../../bus/bus.ts'
import { withOrg, withSettings, type Sql, type Tx } from '../../infra/db.ts'
import type { Keyset } from '../../http/pagination.ts'

export interface DeadLetterRow {
  id: string
  org_id: string
  consumer: ConsumerName
  source: string
  message_id: string
  kind: 'events' | 'lifecycle'
  events: number
  attempts: number
  error_class: string
  error_message: string
  first_failed_at: Date
  last_failed_at: Date
  created_at: Date
  /** created_at as Postgres prints it (microseconds), for cursors. */
  created_key: string
}

const COLUMNS = (tx: Tx) => tx`
  id, org_id, consumer, source, message_id, kind, attempts, error_class, error_message, first_failed_at, last_failed_at,
  created_at, created_at::text as created_key,
  case when kind = 'events' then coalesce(jsonb_array_length(payload -> 'events'), 0) else 0 end as events`

/** Newest first, keyset-paginated; inside the org's transaction. */
export function listDeadLetters(
  tx: Tx,
  o: { limit: number; after: Keyset | null; consumer?: ConsumerName },
): Promise<DeadLetterRow[]> {
  return tx<DeadLetterRow[]>`
    select ${COLUMNS(tx)} from bus_dead_letters
     where true
       ${o.consumer ? tx`and consumer = ${o.consumer}` : tx``}
       ${o.after ? tx`and (created_at, id) < (${o.after.at}::text::timestamptz, ${o.after.id}::uuid)` : tx``}
     order by created_at desc, id desc
     limit ${o.limit}`
}

export async function getDeadLetter(tx: Tx, id: string): Promise<(DeadLetterRow & { payload: BusMessage }) | null> {
  const [row] = await tx<(DeadLetterRow & { payload: BusMessage })[]>`
    select ${COLUMNS(tx)}, payload from bus_dead_letters where id = ${id}`
  return row ?? null
}

/** Redrives one dead letter of `orgId`; null when there is none with that id. */
export function redriveOne(
  sql: Sql,
  bus: Bus,
  orgId: string,
  id: string,
  onRedriven?: (tx: Tx, row: DeadLetterRow) => Promise<void>,
) {
  return withOrg(sql, orgId, async (tx) => {
    const [row] = await tx<(DeadLetterRow & { payload: BusMessage })[]>`
      delete from bus_dead_letters where id = ${id} returning ${COLUMNS(tx)}, payload`
    if (!row) return null
    await bus.redeliver(row.payload, { consumer: row.consumer, source: row.source, redriveId: row.id }, { orgId, tx })
    await onRedriven?.(tx, row)
    return row
  })
}

/** Oldest first, at most `limit` (a bounded call; the caller repeats while some remain). */
export async function redriveAll(
  sql: Sql,
  bus: Bus,
  orgId: string,
  o: { consumer?: ConsumerName; limit: number; onRedriven?: (tx: Tx, row: DeadLetterRow) => Promise<void> },
): Promise<{ redriven: number; remaining: number }> {
  const ids = await withOrg(
    sql,
    orgId,
    (tx) =>
      tx<{ id: string }[]>`
      select id from bus_dead_letters ${o.consumer ? tx`where consumer = ${o.consumer}` : tx``}
       order by created_at, id limit ${o.limit}`,
  )
  let redriven = 0
  for (const { id } of ids) if (await redriveOne(sql, bus, orgId, id, o.onRedriven)) redriven++
  const [left] = await withOrg(
    sql,
    orgId,
    (tx) =>
      tx<{ n: number }[]>`
      select count(*)::int as n from bus_dead_letters ${o.consumer ? tx`where consumer = ${o.consumer}` : tx``}`,
  )
  return { redriven, remaining: left!.n }
}

/** Dead letters waiting, per consumer, all orgs (the `quint_bus_dead_letters_waiting` gauge). */
export async function deadLettersWaiting(sql: Sql): Promise<Record<string, number>> {
  const rows = await withSettings(
    sql,
    { 'app.dead_letter_discovery': 'on' },
    (tx) => tx<{ consumer: string; n: number }[]>`select consumer, count(*)::int as n from bus_dead_letters group by consumer`,
  )
  const out: Record<string, number> = Object.fromEntries(CONSUMERS.map((c) => [c, 0]))
  for (const r of rows) out[r.consumer] = r.n
  return out
}

/** Operators: dead letters of every org (or one), oldest first, without payloads. */
export function listAcrossOrgs(sql: Sql, o: { orgId?: string; id?: string; limit: number }): Promise<DeadLetterRow[]> {
  return withSettings(
    sql,
    { 'app.dead_letter_discovery': 'on' },
    (tx) =>
      tx<DeadLetterRow[]>`
      select ${COLUMNS(tx)} from bus_dead_letters
       where true
         ${o.orgId ? tx`and org_id = ${o.orgId}` : tx``}
         ${o.id ? tx`and id = ${o.id}` : tx``}
       order by created_at, id
       limit ${o.limit}`,
  )
}
