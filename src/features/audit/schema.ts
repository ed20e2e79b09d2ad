/**
 * @module features/audit/schema
 * `GET /v1/audit-log` (issue 10): its filters and its entries.
 */
import { Type } from '@sinclair/typebox'
import { Nullable } from '../../lib/schema.ts'

const Text = (description: string) => Type.Optional(Type.String({ minLength: 1, maxLength: 200, description }))
const Instant = (description: string) => Type.Optional(Type.String({ format: 'date-time', description }))

export const AuditLogQuery = Type.Object(
  {
    actor_id: Text('Who: a member id, a credential id or a token jti.'),
    action: Text('What: exact (`member.remove`), or every action of a kind with a trailing `*` (`member.*`).'),
    target_type: Text('What kind of thing changed: `member`, `api_token`, `alert_rule`, `webhook`, …'),
    target_id: Text('Which one.'),
    since: Instant('Inclusive.'),
    until: Instant('Exclusive.'),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Page size (1–200).' })),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: 'Opaque cursor from `next_cursor`.' })),
  },
  { additionalProperties: false },
)

export const AuditEntryView = Type.Object({
  id: Type.String({ description: 'Increasing with time.' }),
  occurred_at: Type.String({ format: 'date-time' }),
  actor_type: Type.String({ description: '`member`, `api_key` (an opaque credential), `token` (a qt_ JWT), `cli`, `system`.' }),
  actor_id: Nullable(Type.String()),
  action: Type.String({
    description: '`member.invite`, `admin_key.rotate`, `deploy_token.revoke`, `machine.disable`, `webhook.update`, …',
  }),
  target_type: Nullable(Type.String()),
  target_id: Nullable(Type.String()),
  request_id: Nullable(Type.String()),
  source_ip: Nullable(
    Type.String({ description: 'The client (TRUST_PROXY_HOPS says how it is found); null outside a request.' }),
  ),
  user_agent: Nullable(Type.String()),
  details: Type.Record(Type.String(), Type.Unknown(), {
    description: 'What changed; `before` and `after` where a thing was changed.',
  }),
})

export const AuditLogList = Type.Object({
  entries: Type.Array(AuditEntryView),
  next_cursor: Nullable(Type.String()),
})
