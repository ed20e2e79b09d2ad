/**
 * @module features/audit/repo
 * Append-only admin audit trail (quint_app can insert and read, never update or delete).
 */
import type { Tx } from '../../infra/db.ts'

export interface AuditEntry {
  actorType: 'api_key' | 'cli' | 'system' | 'token'
  actorId?: string
  action: string
  targetType?: string
  targetId?: string
  requestId?: string
  details?: Record<string, unknown>
}

/** Must run inside `withOrg`: the row takes the transaction's org. */
export async function recordAudit(tx: Tx, e: AuditEntry): Promise<void> {
  await tx`
    insert into audit_log (org_id, actor_type, actor_id, action, target_type, target_id, request_id, details)
    values (app_current_org(), ${e.actorType}, ${e.actorId ?? null}, ${e.action}, ${e.targetType ?? null},
            ${e.targetId ?? null}, ${e.requestId ?? null}, ${tx.json((e.details ?? {}) as never)})`
}
