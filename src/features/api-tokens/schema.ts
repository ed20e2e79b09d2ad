/**
 * @module features/api-tokens/schema
 * Request and response shapes of `/v1/tokens` (issue 10; docs/tokens.md): every opaque
 * credential's lifecycle, whatever its kind.
 */
import { Type } from '@sinclair/typebox'
import { SCOPES } from '../../http/permissions.ts'
import { NameSchema } from '../../lib/names.ts'
import { Nullable } from '../../lib/schema.ts'

export const TOKEN_KINDS = ['personal', 'service', 'deploy', 'enrollment', 'admin'] as const
export type TokenKindName = (typeof TOKEN_KINDS)[number]

export const TokenKind = Type.Union(
  TOKEN_KINDS.map((k) => Type.Literal(k)),
  {
    description:
      '`personal` (qt_pk_, a member’s own, within their role), `service` (qt_sk_, CI/CD), `deploy` (qt_deploy_, daemons), ' +
      '`enrollment` (qt_dk_, one registration), `admin` (qk_, every permission).',
  },
)

const Scope = Type.Union(
  SCOPES.map((s) => Type.Literal(s)),
  { description: 'One permission (docs/rbac.md). `ingest` is the daemon’s and CI’s calls; the others are people’s.' },
)

const Timestamp = Type.String({ format: 'date-time' })

export const CreateTokenBody = Type.Object(
  {
    kind: TokenKind,
    name: NameSchema,
    scopes: Type.Optional(
      Type.Array(Scope, {
        minItems: 1,
        maxItems: SCOPES.length,
        uniqueItems: true,
        description:
          'personal: default every permission of your role, never beyond it; service: required, only scopes you hold ' +
          '(`ingest` needs `manage`). deploy, enrollment and admin have fixed scopes and refuse this field.',
      }),
    ),
    expires_at: Type.Optional(
      Type.String({
        format: 'date-time',
        description:
          'RFC 3339, in the future. Defaults and limits per kind: personal 90 days (at most 1 year), enrollment 1 hour ' +
          '(at most 7 days), the others never (at most 10 years).',
      }),
    ),
  },
  { additionalProperties: false },
)

export const TokenView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  kind: TokenKind,
  name: Type.String(),
  token_prefix: Type.String({ description: 'First characters of the token, to recognise it; not a secret.' }),
  scopes: Type.Array(Type.String()),
  member_id: Nullable(Type.String({ format: 'uuid', description: 'The owner of a personal token.' })),
  machine_id: Nullable(
    Type.String({ format: 'uuid', description: 'The machine a service token minted at registration is bound to.' }),
  ),
  created_by: Nullable(Type.String({ description: 'The credential or member id that created it.' })),
  created_at: Timestamp,
  expires_at: Nullable(Timestamp),
  revoked_at: Nullable(Timestamp),
  replaced_by: Nullable(Type.String({ format: 'uuid', description: 'Rotation: the token that replaces this one.' })),
  last_used_at: Nullable(Timestamp),
  last_used_ip: Nullable(Type.String({ description: 'Client address of the latest use.' })),
  use_count: Type.Integer({ minimum: 0, description: 'Requests made with it; written at most once a minute per instance.' }),
  state: Type.Union([Type.Literal('active'), Type.Literal('expired'), Type.Literal('revoked')], {
    description: 'A revoked deploy token still serves the machines it registered (docs/tokens.md).',
  }),
})

export const CreatedToken = Type.Composite([
  TokenView,
  Type.Object({ token: Type.String({ description: 'The raw token. Shown only in this response.' }) }),
])

export const TokenList = Type.Object({ tokens: Type.Array(TokenView), next_cursor: Nullable(Type.String()) })

export const TokenListQuery = Type.Object(
  {
    kind: Type.Optional(TokenKind),
    member_id: Type.Optional(Type.String({ format: 'uuid', description: 'A member’s personal tokens.' })),
    active: Type.Optional(Type.Boolean({ description: 'true: only tokens neither revoked nor expired.' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Page size (1–200).' })),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: 'Opaque cursor from `next_cursor`.' })),
  },
  { additionalProperties: false },
)

export const RotateBody = Type.Object(
  {
    overlap_seconds: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 30 * 24 * 3600,
        default: 3600,
        description: 'How long the old token keeps working beside the new one (0: revoked now; at most 30 days).',
      }),
    ),
  },
  { additionalProperties: false },
)

export const RotatedToken = Type.Object({
  token: CreatedToken,
  previous: TokenView,
})

/** Checked in the handler: a malformed id is a 404 like an unknown one (docs/rbac.md "Errors"). */
export const TokenIdParams = Type.Object({
  id: Type.String({ description: 'Token id (UUID). A malformed or unknown id, or one of another org, is a 404.' }),
})
