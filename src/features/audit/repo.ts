/**
 * @module features/audit/repo
 * Append-only admin audit trail (quint_app can insert and read, never update or delete).
 */
import type { Principal } from '../../auth/credentials.ts'
import type { RequestFacts } from '../../http/request-context.ts'
import type { Tx } from '../../infra/db.ts'
import { AUDIT_EVENTS } from '../webhooks/schema.ts'

export interface AuditEntry {
  actorType: 'api_key' | 'cli' | 'system' | 'token' | 'member'
  actorId?: string
  action: string
  targetType?: string
  targetId?: string
  /** The request that made the change: its id, source IP and user agent. */
  request?: RequestFacts
  details?: Record<string, unknown>
}

/** Who did it, as the audit log names a request's principal: a member, a JWT or an opaque credential. */
export function auditActor(p: Principal): Pick<AuditEntry, 'actorType' | 'actorId'> {
  return { actorType: p.kind === 'member' ? 'member' : p.kind === 'jwt' ? 'token' : 'api_key', actorId: p.tokenId }
}

/**
 * Must run inside `withOrg`: the row takes the transaction's org. In the same statement, the
 * entry is queued for every enabled webhook subscribed to `audit.*` (issue 10: the audit log
 * streamed), as `audit.<action>` with the entry as `GET /v1/audit-log` shows it: it commits with
 * the change it records, or not at all.
 */
export async function recordAudit(tx: Tx, e: AuditEntry): Promise<void> {
  await tx`
    with entry as (
      insert into audit_log (org_id, actor_type, actor_id, action, target_type, target_id, request_id, source_ip, user_agent, details)
      values (app_current_org(), ${e.actorType}, ${e.actorId ?? null}, ${e.action}, ${e.targetType ?? null},
              ${e.targetId ?? null}, ${e.request?.id ?? null}, ${e.request?.sourceIp ?? null}::inet, ${e.request?.userAgent ?? null},
              ${tx.json((e.details ?? {}) as never)})
      returning *),
    queued as (
      insert into webhook_deliveries (org_id, webhook_id, message_id, event_type, payload, next_attempt_at)
      select app_current_org(), w.id, 'msg_audit_' || entry.id, 'audit.' || entry.action,
             jsonb_build_object(
               'type', 'audit.' || entry.action,
               'timestamp', to_char(entry.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'data', jsonb_build_object(
                 'id', entry.id::text,
                 'occurred_at', to_char(entry.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                 'actor_type', entry.actor_type,
                 'actor_id', entry.actor_id, 'action', entry.action, 'target_type', entry.target_type,
                 'target_id', entry.target_id, 'request_id', entry.request_id, 'source_ip', host(entry.source_ip),
                 'user_agent', entry.user_agent, 'details', entry.details)),
             now()
        from entry, webhooks w
       where w.enabled and ${AUDIT_EVENTS} = any(w.event_types)
      returning 1)
    insert into webhook_dispatch (org_id, due_at)
    select app_current_org(), 'epoch'::timestamptz where exists (select 1 from queued)
    on conflict (org_id) do update set due_at = least(webhook_dispatch.due_at, excluded.due_at)`
}
