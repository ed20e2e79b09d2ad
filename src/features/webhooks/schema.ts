/**
 * @module features/webhooks/schema
 * Request and response shapes of `/v1/webhooks*` and of the SPEC §7.5 `POST /webhooks/register`.
 * The URL's rules beyond "a string" (scheme, credentials, fragment, SSRF) are checked in the
 * handler (./url-guard.ts) so each failure names its JSON Pointer with a precise message.
 */
import { Type } from '@sinclair/typebox'
import { PageQuery } from '../../http/pagination.ts'

/**
 * Event types a webhook may subscribe to. An empty list means every alert event; the audit log
 * (`audit.*`: every entry, as `audit.<action>`, issue 10) only goes where it is asked for, as it
 * carries the org's administrative history (docs/webhooks.md).
 */
export const AUDIT_EVENTS = 'audit.*'
export const EVENT_TYPES = ['alert.created', AUDIT_EVENTS] as const
/** Sent by `POST /v1/webhooks/{id}/test` whatever the subscription. */
export const TEST_EVENT_TYPE = 'webhook.test'

const Url = Type.String({
  minLength: 1,
  maxLength: 2048,
  description: 'HTTPS endpoint (no credentials, no fragment; public addresses only).',
})
const Description = Type.String({ maxLength: 500, description: 'Free text, at most 500 characters.' })
const EventTypes = Type.Array(Type.Union(EVENT_TYPES.map((t) => Type.Literal(t))), {
  maxItems: 20,
  uniqueItems: true,
  description:
    'Event types delivered to this endpoint; empty or absent: every alert event. `audit.*` (every audit log entry, as `audit.<action>`) only when listed.',
})
const Timestamp = Type.String({ format: 'date-time' })
const NullableTimestamp = Type.Union([Timestamp, Type.Null()])

export const CreateWebhookBody = Type.Object(
  {
    url: Url,
    description: Type.Optional(Type.Union([Description, Type.Null()])),
    event_types: Type.Optional(EventTypes),
  },
  { additionalProperties: false },
)

export const UpdateWebhookBody = Type.Object(
  {
    url: Type.Optional(Url),
    description: Type.Optional(Type.Union([Description, Type.Null()])),
    event_types: Type.Optional(EventTypes),
    enabled: Type.Optional(Type.Boolean({ description: 'Re-enabling clears `disabled_reason`.' })),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const RotateSecretBody = Type.Object(
  {
    grace_period_seconds: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 7 * 86_400,
        description: 'How long the old secret keeps signing (default 86400; 0: stop at once).',
      }),
    ),
  },
  { additionalProperties: false },
)

export const WebhookView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  url: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  event_types: Type.Array(Type.String()),
  enabled: Type.Boolean(),
  disabled_reason: Type.Union([Type.String(), Type.Null()]),
  previous_secret_expires_at: NullableTimestamp,
  created_at: Timestamp,
  updated_at: Timestamp,
})

export const CreatedWebhookView = Type.Object({
  ...WebhookView.properties,
  secret: Type.String({ description: '`whsec_…`: shown once, never again.' }),
})

export const RotatedSecretView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  secret: Type.String({ description: 'The new `whsec_…` secret: shown once.' }),
  previous_secret_expires_at: NullableTimestamp,
})

export const WebhookList = Type.Object({
  webhooks: Type.Array(WebhookView),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
})

const Attempt = Type.Object({
  at: Timestamp,
  duration_ms: Type.Integer(),
  status: Type.Union([Type.Integer(), Type.Null()], { description: 'HTTP status, or null when no response arrived.' }),
  error: Type.Union([Type.String(), Type.Null()]),
})

export const DeliveryView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  webhook_id: Type.String({ format: 'uuid' }),
  message_id: Type.String({ description: 'The `webhook-id` header: stable across retries and redeliveries.' }),
  event_type: Type.String(),
  status: Type.Union(['pending', 'succeeded', 'failed', 'dead'].map((s) => Type.Literal(s))),
  attempt_count: Type.Integer({ description: 'Attempts in the current round (a redelivery starts a new one).' }),
  next_attempt_at: NullableTimestamp,
  last_attempt_at: NullableTimestamp,
  last_status: Type.Union([Type.Integer(), Type.Null()]),
  last_error: Type.Union([Type.String(), Type.Null()]),
  delivered_at: NullableTimestamp,
  created_at: Timestamp,
  attempts: Type.Array(Attempt, { description: 'Every attempt, oldest first (at most the last 50).' }),
  payload: Type.Unknown({ description: 'The JSON body sent.' }),
})

export const DeliveryList = Type.Object({
  deliveries: Type.Array(DeliveryView),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
})

export const DeliveryListQuery = Type.Object(
  {
    ...PageQuery.properties,
    status: Type.Optional(Type.Union(['pending', 'succeeded', 'failed', 'dead'].map((s) => Type.Literal(s)))),
  },
  { additionalProperties: false },
)

export const QueuedView = Type.Object({
  delivery_id: Type.String({ format: 'uuid' }),
  message_id: Type.String(),
  status: Type.Literal('pending'),
})

export const IdParams = Type.Object({ id: Type.String({ description: 'Webhook id (UUID).' }) })
export const DeliveryParams = Type.Object({
  id: Type.String({ description: 'Webhook id (UUID).' }),
  delivery_id: Type.String({ description: 'Delivery id (UUID).' }),
})

/** SPEC §7.5 (Gen A auth service): `customer_id` is the org id. */
export const RegisterBody = Type.Object(
  {
    customer_id: Type.String({ minLength: 1, maxLength: 64, description: "The caller's own org id." }),
    endpoint_url: Url,
  },
  { additionalProperties: true },
)

export const RegisteredView = Type.Object({
  webhook_id: Type.String({ format: 'uuid' }),
  endpoint_url: Type.String(),
  secret: Type.String({ description: '`whsec_…`: shown once.' }),
})
