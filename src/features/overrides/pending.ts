/**
 * @module features/overrides/pending
 * Approval requests (issue 12; docs/auth.md "Overrides"): an override token (`qt_override_`) is an
 * agent, or a management credential, asking a human to decide one event. It is pending while it
 * is not used (decided), not expired, and neither it nor any token above it is revoked, exactly
 * what `POST /overrides/{event_id}/decide` would still accept. Read from `auth.issued_tokens`
 * inside `withOrg` (RLS), for `GET /v1/overrides/pending` and for the live stream's `approval`
 * events (../live/read.ts), which read each named request as it is when read.
 *
 * An item carries the stored event the request is about, when it is stored: the override's
 * `event_id` is the daemon's event id, found through the ingest ledger (`event_keys`, as
 * `machineOfEvent` does), so the lookup is by primary key into the one month partition. The
 * daemon may ask before it sends the event: `event` is null until then.
 */
import type { Statement, Tx } from '../../infra/db.ts'
import type { Keyset } from '../../http/pagination.ts'
import { EVENT_COLUMNS, eventView, type EventRow } from '../events/view.ts'
import { eventKeyFor } from '../ingest/events.ts'

export interface ApprovalRow {
  /** The override token's jti (`id`: the keyset helpers key on it). */
  id: string
  event_id: string
  allowed_decisions: unknown
  request_reason: string | null
  issued_at: Date
  expires_at: Date
  /** `issued_at` as Postgres printed it: the cursor's sort key. */
  requested_key: string
  minter_kind: 'jwt' | 'opaque' | null
  minter_type: string | null
  minter_id: string | null
  minter_name: string | null
  minter_agent_id: string | null
}

/** What a request is when read for the live stream: its row, and whether (and how) it ended. */
export interface ApprovalStateRow extends ApprovalRow {
  used: boolean
  revoked: boolean
  expired: boolean
  decision: string | null
  decided_at: Date | null
  decision_reason: string | null
  cosignature: string | null
  decided_by: string | null
}

type StoredEvent = EventRow & { machine_hostname: string | null }

/** Whether a token above `t` (its parent, the parent's parent, …) is revoked: the decide route's `chainRevoked`. */
const chainRevoked = (tx: Tx) => tx`auth.chain_revoked(t.parent_jti)`

/**
 * The request's columns, with who asked: the opaque credential that minted it (`minted_by`: the
 * admin key), else the JWT it was minted under (an app, agent or sub-agent minting for itself).
 */
const APPROVAL_FROM = (tx: Tx) => tx`
  select t.jti::text as id, t.event_id, t.claims -> 'allowed_decisions' as allowed_decisions, t.request_reason,
         t.issued_at, t.expires_at, t.issued_at::text as requested_key,
         case when t.minted_by is not null then 'opaque' when t.parent_jti is not null then 'jwt' end as minter_kind,
         case when t.minted_by is not null then k.kind else p.token_type end as minter_type,
         coalesce(t.minted_by, t.parent_jti)::text as minter_id,
         case when t.minted_by is not null then k.name else p.name end as minter_name,
         case when t.minted_by is not null then null else p.agent_id end as minter_agent_id`

const APPROVAL_JOINS = (tx: Tx) => tx`
    from auth.issued_tokens t
    left join auth.issued_tokens p on p.org_id = t.org_id and p.jti = t.parent_jti
    left join api_tokens k on k.org_id = t.org_id and k.id = t.minted_by`

/**
 * The org's pending requests, newest first, keyset on (issued_at, jti). The partial index
 * `issued_tokens_pending_overrides` holds only unused, unrevoked overrides, read from now on by
 * expiry: the live ones (a few minutes' worth), never the org's history.
 */
export function pendingApprovals(tx: Tx, limit: number, after: Keyset | null): Promise<ApprovalRow[]> {
  return tx<ApprovalRow[]>`
    ${APPROVAL_FROM(tx)}
    ${APPROVAL_JOINS(tx)}
     where t.token_type = 'override' and t.used_at is null and t.revoked_at is null and t.expires_at > now()
       and not ${chainRevoked(tx)}
       ${after ? tx`and (t.issued_at, t.jti) < (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by t.issued_at desc, t.jti desc
     limit ${limit}`
}

/** The override tokens `jtis` names (a subquery of uuids) as they are now, decided or not. */
export function approvalStates<T extends readonly Record<string, unknown>[]>(
  tx: Tx,
  jtis: Statement<T>,
): Promise<ApprovalStateRow[]> {
  return tx<ApprovalStateRow[]>`
    ${APPROVAL_FROM(tx)},
         t.used_at is not null as used, t.revoked_at is not null or ${chainRevoked(tx)} as revoked,
         t.expires_at <= now() as expired,
         d.decision, d.decided_at, d.reason as decision_reason, d.cosignature, d.decided_by
    ${APPROVAL_JOINS(tx)}
    left join auth.override_decisions d on d.org_id = t.org_id and d.override_jti = t.jti
     where t.jti = any(array(${jtis})) and t.token_type = 'override'
     order by t.issued_at, t.jti`
}

/**
 * The still pending override tokens at or below `jtis` (tokens just revoked): those whose
 * revocation ends a request. Overrides hang under app, agent and sub-agent tokens, which hang
 * under bearer and app tokens; a token never outlives its parent, so expired branches are skipped.
 */
export async function pendingBelow(tx: Tx, jtis: readonly string[]): Promise<string[]> {
  if (jtis.length === 0) return []
  // Children by the (org_id, parent_jti) index, one lateral lookup per token: `offset 0` keeps the
  // planner from flattening it into a join that hashes the org's whole token table at each level.
  const rows = await tx<{ jti: string }[]>`
    with recursive below(jti, token_type, used_at, expires_at, n) as (
      select jti, token_type, used_at, expires_at, 0 from auth.issued_tokens where jti = any(${jtis as string[]}::uuid[])
      union all
      select c.jti, c.token_type, c.used_at, c.expires_at, b.n + 1
        from below b
        cross join lateral (
          select q.jti, q.token_type, q.used_at, q.expires_at from auth.issued_tokens q
           where q.parent_jti = b.jti and q.expires_at > now() and q.token_type in ('bearer', 'agent', 'subagent', 'override')
          offset 0
        ) c
       where b.n < 64 and b.token_type <> 'override'
    )
    select distinct jti::text as jti from below
     where token_type = 'override' and used_at is null and expires_at > now()`
  return rows.map((r) => r.jti)
}

/**
 * The pending requests about these events (by their ledger keys): the pipeline announces them
 * again when it stores their event, since a request is usually minted before its event is stored.
 * Reads the org's live requests only (the partial index, from now on by expiry), a handful.
 */
export async function pendingForEvents(tx: Tx, eventKeys: readonly string[]): Promise<string[]> {
  if (eventKeys.length === 0) return []
  const rows = await tx<{ jti: string; event_id: string }[]>`
    select jti::text as jti, event_id from auth.issued_tokens
     where token_type = 'override' and used_at is null and revoked_at is null and expires_at > now()`
  const keys = new Set(eventKeys)
  return rows.filter((r) => keys.has(eventKeyFor(r.event_id))).map((r) => r.jti)
}

/** The stored events the requests are about (by the daemon's event id), with their machine's hostname. */
export async function eventsOf(tx: Tx, rows: readonly ApprovalRow[]): Promise<Map<string, StoredEvent>> {
  const keys = [...new Set(rows.map((r) => eventKeyFor(r.event_id)))]
  if (keys.length === 0) return new Map()
  const found = await tx<(StoredEvent & { key: string })[]>`
    select k.event_key as key, ${EVENT_COLUMNS(tx)}, m.hostname as machine_hostname
      from event_keys k
      join actions a on a.org_id = k.org_id and a.created_at = k.action_created_at and a.id = k.action_id
      left join machines m on m.org_id = a.org_id and m.id = a.machine_id
     where k.event_key = any(${keys}::text[])`
  return new Map(found.map((e) => [e.key, e]))
}

/** One request as `GET /v1/overrides/pending` lists it and the live stream's `approval` (`pending`) sends it. */
export function approvalView(r: ApprovalRow, events: ReadonlyMap<string, StoredEvent>) {
  const event = events.get(eventKeyFor(r.event_id))
  const decisions = Array.isArray(r.allowed_decisions) ? r.allowed_decisions.filter((d) => typeof d === 'string') : []
  return {
    override_jti: r.id,
    event_id: r.event_id,
    allowed_decisions: decisions as string[],
    reason: r.request_reason,
    requested_at: r.issued_at.toISOString(),
    expires_at: r.expires_at.toISOString(),
    requested_by:
      r.minter_kind && r.minter_id
        ? {
            kind: r.minter_kind,
            type: r.minter_type,
            id: r.minter_id,
            name: r.minter_name,
            agent_id: r.minter_agent_id,
          }
        : null,
    event: event ? eventView(event) : null,
    machine: event?.machine_id ? { id: event.machine_id, hostname: event.machine_hostname } : null,
  }
}

/** What the live stream sends for a request read after it changed (docs/live.md `approval`). */
export function approvalEvent(r: ApprovalStateRow, events: ReadonlyMap<string, StoredEvent>) {
  if (r.used && r.decision !== null && r.decided_at !== null) {
    // Exactly as an item of `GET /overrides/{event_id}`.
    return {
      state: 'decided' as const,
      event_id: r.event_id,
      decision: r.decision,
      override_jti: r.id,
      cosignature: r.cosignature,
      decided_at: r.decided_at.toISOString(),
      reason: r.decision_reason,
      decided_by: r.decided_by,
    }
  }
  if (r.revoked) return { state: 'revoked' as const, override_jti: r.id, event_id: r.event_id }
  // (Used without its decision row cannot be: both commit together. Ended either way.)
  if (r.expired || r.used) return { state: 'expired' as const, override_jti: r.id, event_id: r.event_id }
  return { state: 'pending' as const, ...approvalView(r, events) }
}
