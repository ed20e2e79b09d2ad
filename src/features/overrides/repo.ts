/**
 * @module features/overrides/repo
 * `auth.issued_tokens.used_at` (the single-use switch) and `auth.override_decisions` (the record),
 * inside tenant transactions.
 */
import type { Tx } from '../../infra/db.ts'
import { eventKeyFor } from '../ingest/events.ts'

/**
 * Marks the override used, atomically: only the first caller of all instances gets a row back.
 * Also refuses a token revoked or expired meanwhile. Null when nothing was marked.
 */
export async function markUsed(tx: Tx, jti: string): Promise<Date | null> {
  const rows = await tx<{ used_at: Date }[]>`
    update auth.issued_tokens set used_at = now()
     where jti = ${jti} and token_type = 'override' and used_at is null and revoked_at is null and expires_at > now()
    returning used_at`
  return rows[0]?.used_at ?? null
}

/** Why `markUsed` found nothing to mark. */
export async function whyUnusable(tx: Tx, jti: string): Promise<'used' | 'revoked' | 'expired'> {
  const [r] = await tx<{ used: boolean; revoked: boolean }[]>`
    select used_at is not null as used, revoked_at is not null as revoked from auth.issued_tokens where jti = ${jti}`
  if (r?.used) return 'used'
  return r?.revoked ? 'revoked' : 'expired'
}

export interface DecisionRow {
  event_id: string
  decision: string
  override_jti: string
  cosignature: string
  decided_at: Date
  reason: string | null
  decided_by: string
}

export async function insertDecision(tx: Tx, d: Omit<DecisionRow, 'decided_at'> & { decided_at: Date }): Promise<void> {
  await tx`
    insert into auth.override_decisions (org_id, event_id, override_jti, decision, reason, cosignature, decided_by, decided_at)
    values (app_current_org(), ${d.event_id}, ${d.override_jti}, ${d.decision}, ${d.reason}, ${d.cosignature}, ${d.decided_by}, ${d.decided_at})`
}

/** The org's decisions for one event, oldest first (RLS: other orgs' rows are invisible). */
export async function decisionsFor(tx: Tx, eventId: string): Promise<DecisionRow[]> {
  return tx<DecisionRow[]>`
    select event_id, decision, override_jti::text as override_jti, cosignature, decided_at, reason, decided_by
      from auth.override_decisions where event_id = ${eventId}
     order by decided_at, id
     limit 1000`
}

/** The machine that sent the event (the one waiting for the decision), when the event is stored. */
export async function machineOfEvent(tx: Tx, eventId: string): Promise<string | null> {
  const [row] = await tx<{ machine_id: string | null }[]>`
    select a.machine_id from event_keys k
      join actions a on a.org_id = k.org_id and a.created_at = k.action_created_at and a.id = k.action_id
     where k.event_key = ${eventKeyFor(eventId)}`
  return row?.machine_id ?? null
}
