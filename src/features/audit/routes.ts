/**
 * @module features/audit/routes
 * `GET /v1/audit-log` (issue 10, docs/audit-log.md): the org's administrative changes, newest
 * first, filtered by actor, action, target and time, in keyset pages. For whoever manages the org
 * (admins, owners, admin credentials).
 */
import { withOrg, type Sql, type Tx } from '../../infra/db.ts'
import { badQueryParam, type RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, paginate, type Keyset } from '../../http/pagination.ts'
import { AuditLogList, AuditLogQuery } from './schema.ts'
import type { Static } from '@sinclair/typebox'

interface AuditRow {
  id: string
  occurred_at: Date
  occurred_key: string
  actor_type: string
  actor_id: string | null
  action: string
  target_type: string | null
  target_id: string | null
  request_id: string | null
  source_ip: string | null
  user_agent: string | null
  details: Record<string, unknown>
}

const BIGINT_ID = /^[1-9][0-9]{0,18}$/

export function mountAuditLog(routes: RouteRegistry, deps: { sql: Sql }): void {
  routes.add(
    {
      method: 'get',
      path: '/v1/audit-log',
      operationId: 'listAuditLog',
      summary: "The org's administrative changes, newest first (who, what, from where, before and after)",
      tags: ['audit log'],
      permission: 'manage',
      query: AuditLogQuery,
      responses: {
        200: { description: 'A page of entries', schema: AuditLogList },
        400: { description: 'A malformed filter, a reversed range, or a bad cursor' },
      },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const after = decodeCursor(query.cursor, (id) => BIGINT_ID.test(id))
      if (query.since && query.until && Date.parse(query.since) >= Date.parse(query.until)) {
        throw badQueryParam('since', 'must be before until')
      }
      const rows = await withOrg(deps.sql, c.get('principal').orgId, (tx) => listAudit(tx, query, limit + 1, after))
      const { page, next } = paginate(rows, limit, (r) => r.occurred_key)
      return c.json({
        entries: page.map(({ occurred_key: _, occurred_at, ...r }) => ({ ...r, occurred_at: occurred_at.toISOString() })),
        next_cursor: next,
      } satisfies Static<typeof AuditLogList>)
    },
  )
}

function listAudit(tx: Tx, f: Static<typeof AuditLogQuery>, limit: number, after: Keyset | null) {
  const prefix = f.action?.endsWith('*') ? f.action.slice(0, -1) : null
  return tx<AuditRow[]>`
    select id::text, occurred_at, occurred_at::text as occurred_key, actor_type, actor_id, action, target_type,
           target_id, request_id, host(source_ip) as source_ip, user_agent, details
      from audit_log
     where true
       ${f.actor_id !== undefined ? tx`and actor_id = ${f.actor_id}` : tx``}
       ${prefix !== null ? tx`and starts_with(action, ${prefix})` : f.action !== undefined ? tx`and action = ${f.action}` : tx``}
       ${f.target_type !== undefined ? tx`and target_type = ${f.target_type}` : tx``}
       ${f.target_id !== undefined ? tx`and target_id = ${f.target_id}` : tx``}
       ${f.since !== undefined ? tx`and occurred_at >= ${f.since}::text::timestamptz` : tx``}
       ${f.until !== undefined ? tx`and occurred_at < ${f.until}::text::timestamptz` : tx``}
       ${after ? tx`and (occurred_at, id) < (${after.at}::text::timestamptz, ${after.id}::bigint)` : tx``}
     order by occurred_at desc, id desc
     limit ${limit}`
}
