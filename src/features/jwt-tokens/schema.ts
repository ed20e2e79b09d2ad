/**
 * @module features/jwt-tokens/schema
 * Request and response shapes of the token, key, revocation and introspection endpoints
 * (SPEC §7.5, both tables: the documented bodies and the client's parent-token-as-bearer bodies).
 * Parent-naming fields are optional: without them the bearer token itself is the parent.
 */
import { Type } from '@sinclair/typebox'
import { STORABLE_TEXT_PATTERN } from '../../http/text-guard.ts'

const Customer = Type.Optional(Type.String({ maxLength: 64, description: "Must be the caller's org id (404 otherwise)." }))
const Jti = (description: string) => Type.Optional(Type.String({ format: 'uuid', description }))
const Text = (description: string, max = 256) => Type.String({ minLength: 1, maxLength: max, description })
const Ttl = (unit: string) =>
  Type.Optional(
    Type.Number({
      exclusiveMinimum: 0,
      maximum: 1e6,
      description: `Lifetime in ${unit} (≤ the type maximum and the parent's remaining life).`,
    }),
  )
/** RBAC is checked by src/auth/rbac.ts (pointers under /rbac). */
const Rbac = Type.Unknown({ description: 'RBAC policy (SPEC §5.1; both sensitivity names accepted).' })

const strict = { additionalProperties: false } as const

export const AppBody = Type.Object(
  {
    customer_id: Customer,
    name: Type.Optional(Text('Label for the token.', 200)),
    scopes: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9:*_.-]+$' }), {
        minItems: 1,
        maxItems: 32,
        default: ['*'],
      }),
    ),
    ttl_days: Ttl('days'),
  },
  strict,
)

export const BearerBody = Type.Object(
  {
    customer_id: Customer,
    app_token_hash: Type.Optional(
      Type.String({ pattern: '^[0-9a-fA-F]{64}$', description: 'SHA-256 hex of the parent app token.' }),
    ),
    environment: Text('Environment the token is scoped to (`env` claim).', 64),
    ttl_days: Ttl('days'),
  },
  strict,
)

export const AgentBody = Type.Object(
  {
    customer_id: Customer,
    bearer_jti: Jti('Parent bearer token.'),
    agent_id: Text('Agent identity.'),
    agent_name: Type.Optional(Text('Display name.', 200)),
    rbac: Rbac,
    ttl_hours: Ttl('hours'),
  },
  strict,
)

export const SubagentBody = Type.Object(
  {
    customer_id: Customer,
    parent_agent_jti: Jti('Parent agent or sub-agent token.'),
    agent_id: Text('Sub-agent identity.'),
    agent_name: Type.Optional(Text('Display name.', 200)),
    rbac: Type.Optional(Rbac),
    ttl_hours: Ttl('hours'),
  },
  strict,
)

export const SessionBody = Type.Object(
  {
    customer_id: Customer,
    parent_jti: Jti('Parent agent or sub-agent token.'),
    parent_type: Type.Optional(Type.Union([Type.Literal('agent'), Type.Literal('subagent')])),
    session_id: Text('Session id.'),
    max_events: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000, default: 1000 })),
    ttl_minutes: Ttl('minutes'),
  },
  strict,
)

export const OverrideBody = Type.Object(
  {
    customer_id: Customer,
    event_id: Text('The event the override decides.'),
    // No `|`: the cosignature string separates fields with it (src/auth/override-cosign.ts).
    allowed_decisions: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64, pattern: '^[^|\\r\\n]+$', description: 'A decision.' }), {
        minItems: 1,
        maxItems: 16,
      }),
    ),
    reason: Type.Optional(Type.String({ maxLength: 500 })),
    ttl_minutes: Ttl('minutes'),
  },
  strict,
)

export const MintedToken = Type.Object(
  {
    token: Type.String({ description: 'The token (prefix + ES256 JWS). Shown only in this response.' }),
    jti: Type.String({ format: 'uuid' }),
    token_type: Type.String(),
    expires_at: Type.String({ format: 'date-time' }),
    claims: Type.Record(Type.String(), Type.Unknown()),
    action_key: Type.Optional(
      Type.String({
        pattern: '^[0-9a-f]{64}$',
        description: 'Agent, sub-agent and session tokens: the key for X-Action-Signature (hex). Shown only here.',
      }),
    ),
  },
  { additionalProperties: true },
)

export const KeyOrgBody = Type.Object({ customer_id: Customer }, strict)
export const KidParams = Type.Object({ kid: Type.String({ maxLength: 128 }) })
export const OrgParams = Type.Object({ org_id: Type.String({ maxLength: 128 }) })
export const JtiParams = Type.Object({ jti: Type.String({ maxLength: 128 }) })

export const SigningKeyView = Type.Object({
  key_id: Type.String(),
  kid: Type.String(),
  public_key: Type.String({ description: 'SPKI PEM.' }),
  key_type: Type.Literal('ES256'),
  jwk: Type.Record(Type.String(), Type.Unknown()),
  status: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
})

export const PublicKeys = Type.Object({
  org_id: Type.String(),
  customer_id: Type.String(),
  keys: Type.Array(Type.Record(Type.String(), Type.Unknown())),
  public_key: Type.String(),
})

// The revocation routes read this body themselves (it is optional), so the registry's text guard
// does not see it: the pattern refuses what Postgres cannot store (NUL, lone surrogates; issue 14).
const StorableText = (maxLength: number) => Type.String({ maxLength, pattern: STORABLE_TEXT_PATTERN })

export const RevokeBody = Type.Object(
  {
    token_type: Type.Optional(StorableText(32)),
    customer_id: Type.Optional(StorableText(64)),
    reason: Type.Optional(StorableText(500)),
  },
  strict,
)

export const CheckBody = Type.Object(
  {
    action: Type.String({ minLength: 1, maxLength: 256 }),
    resource: Type.Optional(Type.String({ maxLength: 1024 })),
    sensitivity: Type.Optional(Type.Number({ minimum: 0, maximum: 1000 })),
  },
  strict,
)
