/**
 * @module features/ingest/schema
 * The three item shapes the ingest endpoints accept, as TypeBox schemas for the OpenAPI document
 * (issue 14: the batch items were documented as empty objects, so generated clients knew nothing
 * of them). They describe what ./events.ts enforces item by item; they do not validate requests:
 * a batch is read whole and each item judged on its own, so one bad item is rejected in the
 * per-item results (207, or 200 for the daemon) while the others are kept.
 */
import { Type, type TSchema } from '@sinclair/typebox'
import { CLOCK_WINDOW, MAX_EVENT_BYTES } from './events.ts'

/** Events in one request: more is a 413 (`too_many_events`). */
export const MAX_BATCH_EVENTS = 500
/** Largest `dropped_events` one report may carry: far above any real buffer, far below a bigint sum's reach. */
export const MAX_DROPPED_EVENTS = 1_000_000_000

// Code-unit based, as ./events.ts tests identity fields: no control character, surrogates only
// in pairs (Postgres cannot store a NUL, and ids are stored as text).
const CLEAN = '^(?:[^\\u0000-\\u001f\\u007f\\ud800-\\udfff]|[\\ud800-\\udbff][\\udc00-\\udfff])*$'

/** Absent, `null`, or a value of `schema` (./events.ts treats `null` as absent everywhere). */
const opt = <T extends TSchema>(schema: T) => Type.Optional(Type.Union([schema, Type.Null()]))

const identity = (description: string) => Type.String({ minLength: 1, maxLength: 256, pattern: CLEAN, description })

const text = (description?: string) => Type.String({ maxLength: 1024, ...(description ? { description } : {}) })

const Timestamp = Type.String({
  format: 'date-time',
  description:
    `RFC 3339 time of the event on the client. Absent: the time it was received. Outside [now − ${CLOCK_WINDOW.pastMs / 86_400_000} ` +
    `days, now + ${CLOCK_WINDOW.futureMs / 60_000} minutes] it is clamped to that window and the original kept.`,
})

const RiskScore = Type.Integer({ minimum: 0, maximum: 100 })

const Labels = Type.Record(Type.String(), Type.String(), { description: 'String values only.' })

/** Fields the schema v2 and API-reference items share (`normalizeIngestItem`). */
const common = {
  timestamp: opt(Timestamp),
  session_id: opt(identity('Session the event belongs to.')),
  agent_id: opt(identity('Agent that acted.')),
  source: opt(text()),
  platform: opt(text('claude-code, cursor, …')),
  action_type: opt(text('For example tools/call, http, file.')),
  action: opt(text()),
  tool_name: opt(text()),
  arguments_json: opt(
    Type.String({
      description: 'The arguments as JSON text; stored parsed when it is a JSON object or array. Wins over `arguments`.',
    }),
  ),
  arguments: opt(Type.Array(Type.String(), { description: 'The arguments as a list of strings.' })),
  decision: opt(text('allow, block, deny, …; block, deny and denied mark the event blocked.')),
  risk_score: opt(RiskScore),
  labels: opt(Labels),
}

const ITEM_NOTES =
  'Unknown fields are kept. Secrets in free-form content are redacted; NUL and lone-surrogate characters in it are replaced ' +
  `by U+FFFD. An event over ${MAX_EVENT_BYTES / 1024 / 1024} MiB of content, or nested too deeply, is rejected.`

export const IngestEventV2 = Type.Object(
  {
    schema_version: Type.Literal(2),
    event_id: identity(
      'Client-made unique id (a UUID is recommended): a retry with the same id is a duplicate, not a new event.',
    ),
    id: Type.Optional(identity('Read as the event id when `event_id` is absent.')),
    ...common,
  },
  { $id: 'IngestEventV2', description: `A schema_version 2 event. ${ITEM_NOTES}`, additionalProperties: true },
)

export const ApiReferenceEvent = Type.Object(
  {
    id: Type.Optional(identity('Client-made unique id; without `id` or `event_id`, identical items are the same event.')),
    event_id: Type.Optional(identity('Same as `id` (wins over it).')),
    ...common,
  },
  {
    $id: 'ApiReferenceEvent',
    description: `An API-reference item: no \`schema_version\`. ${ITEM_NOTES}`,
    additionalProperties: true,
  },
)

/** The edge's drop report on a batch or a heartbeat (issue 9, docs/ingest-stats.md). */
export const DroppedEvents = opt(
  Type.Integer({
    minimum: 0,
    maximum: MAX_DROPPED_EVENTS,
    description:
      'Events the sender dropped before sending (buffer overflow…) since its previous successful report: a delta, reset ' +
      'by the sender once answered 2xx. Counted as `edge_dropped` in GET /v1/ingest/stats. Anything but such an ' +
      'integer or null is a 422.',
  }),
)

/** `POST /v1/ingest` and `POST /v1/events/ingest`. */
export const IngestBatch = Type.Object(
  {
    events: Type.Array(Type.Union([IngestEventV2, ApiReferenceEvent]), {
      maxItems: MAX_BATCH_EVENTS,
      description: 'Each item is judged on its own: an invalid item is rejected in `results`, the others are kept.',
    }),
    dropped_events: DroppedEvents,
  },
  { description: 'At most 500 events and 10 MiB; the body may be gzip or deflate encoded (Content-Encoding).' },
)

/** The public daemon's `EventPayload` (`normalizeDaemonEvent`). */
export const DaemonEvent = Type.Object(
  {
    event_id: identity(
      'The daemon id (`evt-<unix ms>`); not unique on its own, so duplicates are detected on the whole identity.',
    ),
    action: text('For example `tool:Bash` or `http:GET`.'),
    agent: opt(Type.String({ maxLength: 256, pattern: CLEAN, description: 'Agent name; empty means none.' })),
    timestamp: opt(Timestamp),
    risk_score: opt(RiskScore),
    blocked: Type.Optional(Type.Boolean()),
    metadata: opt(
      Type.Record(Type.String(), Type.String(), {
        description:
          'String values only; `session_id`, `platform` and `args` (arguments as JSON text) are read, the rest kept as labels.',
      }),
    ),
  },
  { $id: 'DaemonEvent', description: `An event of the public daemon. ${ITEM_NOTES}`, additionalProperties: true },
)

/** `POST /v1/machines/{id}/events`. */
export const DaemonEventBatch = Type.Object(
  {
    events: Type.Array(DaemonEvent, {
      maxItems: MAX_BATCH_EVENTS,
      description: 'Each item is judged on its own: an invalid item is rejected in `results`, the others are kept.',
    }),
    dropped_events: DroppedEvents,
  },
  { description: 'At most 500 events and 10 MiB; the body may be gzip or deflate encoded (Content-Encoding).' },
)
