/**
 * @module features/overrides/schema
 * Request and response shapes of `POST /overrides/{event_id}/decide` and `GET /overrides/{event_id}`
 * (SPEC §7.5, §16.7; docs/auth.md "Overrides").
 */
import { Type } from '@sinclair/typebox'

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
