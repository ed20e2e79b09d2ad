/**
 * @module features/audit/repo
 * Append-only admin audit trail (quint_app can insert and read, never update or delete).
 */
import type { Principal } from '../../auth/credentials.ts'
import type { RequestFacts } from '../../http/request-context.ts'
import type { Tx } from '../../infra/db.ts'

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

/** Must run inside `withOrg`: the row takes the transaction's org. */
export async function recordAudit(tx: Tx, e: AuditEntry): Promise<void> {
  await tx`
    insert into audit_log (org_id, actor_type, actor_id, action, target_type, target_id, request_id, source_ip, user_agent, details)
    values (app_current_org(), ${e.actorType}, ${e.actorId ?? null}, ${e.action}, ${e.targetType ?? null},
            ${e.targetId ?? null}, ${e.request?.id ?? null}, ${e.request?.sourceIp ?? null}::inet, ${e.request?.userAgent ?? null},
            ${tx.json((e.details ?? {}) as never)})`
}
