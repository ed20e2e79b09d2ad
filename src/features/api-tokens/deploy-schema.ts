/**
 * @module features/api-tokens/deploy-schema
 * Request and response shapes of `/v1/deploy-tokens` (SPEC §7.4: `{"id","name","token","created_at"}`).
 */
import { Type } from '@sinclair/typebox'
import { Nullable } from '../../lib/schema.ts'
import { NameSchema } from '../../lib/names.ts'

export const CreateDeployTokenBody = Type.Object(
  {
    name: NameSchema,
    expires_at: Type.Optional(
      Type.String({ format: 'date-time', description: 'RFC 3339 expiry in the future; omitted: never expires.' }),
    ),
  },
  { additionalProperties: false },
)

const Timestamp = Type.String({ format: 'date-time' })

export const DeployTokenView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  token_prefix: Type.String({ description: 'First characters of the token, to recognise it; not a secret.' }),
  scopes: Type.Array(Type.String()),
  created_at: Timestamp,
  expires_at: Nullable(Timestamp),
  revoked_at: Nullable(Timestamp),
  last_used_at: Nullable(Timestamp),
})

export const CreatedDeployToken = Type.Composite([
  DeployTokenView,
  Type.Object({ token: Type.String({ description: 'The raw token (qt_deploy_…). Shown only in this response.' }) }),
])

export const DeployTokenList = Type.Object({
  deploy_tokens: Type.Array(DeployTokenView),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
})

/** Checked in the handler: a malformed id is a 404 like an unknown one (issue 9, docs/rbac.md). */
export const TokenIdParams = Type.Object({
  id: Type.String({ description: 'Deploy token id (UUID). A malformed or unknown id, or one of another org, is a 404.' }),
})
