/**
 * @module features/overrides/schema
 * Request and response shapes of `POST /overrides/{event_id}/decide`, `GET /overrides/{event_id}`
 * (SPEC §7.5, §16.7) and `GET /v1/overrides/pending` (issue 12); docs/auth.md "Overrides".
 */
import { Type } from '@sinclair/typebox'
import { Nullable } from '../../lib/schema.ts'
import { EventView } from '../events/view.ts'

export const EventParams = Type.Object({ event_id: Type.String({ minLength: 1, maxLength: 256 }) })

export const DecideBody = Type.Object(
  {
    override_jti: Type.Optional(
      Type.String({
        format: 'uuid',
        description:
          'The override token. Required for a management credential; with the override token as bearer, optional and must be its own jti.',
      }),
    ),
    customer_id: Type.Optional(Type.String({ maxLength: 64, description: "Must be the caller's org id (404 otherwise)." })),
    // No `|` and no line break: the cosignature string separates its fields with `|`.
    decision: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: '^[^|\\r\\n]+$',
      description: "One of the token's allowed_decisions.",
    }),
    reason: Type.Optional(Type.String({ maxLength: 500 })),
  },
  { additionalProperties: false },
)

const Decision = {
  event_id: Type.String(),
  decision: Type.String(),
  override_jti: Type.String({ format: 'uuid' }),
  cosignature: Type.String({
    pattern: '^[0-9a-f]{64}$',
    description: 'hex HMAC-SHA256(override_secret, "override|{event_id}|{decision}|{override_jti}")',
  }),
  decided_at: Type.String({ format: 'date-time' }),
  reason: Type.Union([Type.String(), Type.Null()]),
}

export const DecisionView = Type.Object(Decision)

export const DecisionList = Type.Object({
  event_id: Type.String(),
  decisions: Type.Array(Type.Object({ ...Decision, decided_by: Type.String() })),
})

const Requester = Type.Object(
  {
    kind: Type.Union([Type.Literal('jwt'), Type.Literal('opaque')], {
      description:
        '`jwt`: an app, agent or sub-agent token minted it for itself; `opaque`: a management credential (the admin key).',
    }),
    type: Nullable(Type.String({ description: 'jwt: `app`, `agent`, `subagent`; opaque: `api_key`, `service`, …' })),
    id: Type.String({
      format: 'uuid',
      description: "The JWT's jti, or the opaque credential's id (as `GET /v1/tokens` lists it).",
    }),
    name: Nullable(Type.String({ description: 'Its name (an agent token: the agent name given at minting).' })),
    agent_id: Nullable(Type.String({ description: 'Agent and sub-agent tokens: the agent.' })),
  },
  { description: 'The credential that asked (minted the override token). Never a secret.' },
)

export const PendingApproval = Type.Object(
  {
    override_jti: Type.String({ format: 'uuid', description: 'The override token: name it as `override_jti` when deciding.' }),
    event_id: Type.String({ description: "The daemon's event id the request is about." }),
    allowed_decisions: Type.Array(Type.String(), { description: 'What may be decided (default `["approve","reject"]`).' }),
    reason: Nullable(Type.String({ description: 'Why it asked (`reason` when minted).' })),
    requested_at: Type.String({ format: 'date-time' }),
    expires_at: Type.String({ format: 'date-time', description: 'Past it the request is gone (not announced: drop it then).' }),
    requested_by: Nullable(Requester),
    event: Type.Union([EventView, Type.Null()], {
      description: 'The stored event with that event id, as `GET /v1/events` lists it; null while it is not stored.',
    }),
    machine: Nullable(
      Type.Object(
        { id: Type.String({ format: 'uuid' }), hostname: Nullable(Type.String()) },
        { description: "The event's machine." },
      ),
    ),
  },
  { $id: 'PendingApproval', description: 'An approval request: an override token not used, expired or revoked.' },
)

export const PendingList = Type.Object({
  pending: Type.Array(PendingApproval),
  next_cursor: Nullable(Type.String()),
})
