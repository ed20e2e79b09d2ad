/**
 * @module features/alerts/schema
 * Request and response shapes of `/v1/alert-rules` and `/v1/alerts` (SPEC §12 leaves both
 * undefined; this is our contract, documented in docs/alert-rules.md).
 */
import { Type } from '@sinclair/typebox'
import { Nullable } from '../../lib/schema.ts'
import { NameSchema } from '../../lib/names.ts'
import { PageQuery } from '../../http/pagination.ts'
import { EventView } from '../events/view.ts'
import { SessionView } from '../sessions/view.ts'
import { ConditionSchema } from './condition.ts'

const SEVERITIES = ['low', 'medium', 'high', 'critical'] as const
export const ALERT_STATUSES = ['open', 'acknowledged', 'resolved', 'dismissed'] as const

const Severity = Type.Union(SEVERITIES.map((s) => Type.Literal(s)))
const Status = Type.Union(ALERT_STATUSES.map((s) => Type.Literal(s)))
const Description = Type.String({ maxLength: 2000, description: 'Free text, at most 2000 characters.' })
const Timestamp = Type.String({ format: 'date-time' })

/** Rule bodies are small; the limit also bounds how deeply a condition can nest before validation. */
export const RULE_BODY_LIMIT = 8 * 1024

export const CreateAlertRuleBody = Type.Object(
  {
    name: NameSchema,
    description: Type.Optional(Type.Union([Description, Type.Null()])),
    enabled: Type.Optional(Type.Boolean({ default: true })),
    severity: Severity,
    condition: ConditionSchema,
  },
  { additionalProperties: false },
)

export const UpdateAlertRuleBody = Type.Object(
  {
    name: Type.Optional(NameSchema),
    description: Type.Optional(Type.Union([Description, Type.Null()])),
    enabled: Type.Optional(Type.Boolean()),
    severity: Type.Optional(Severity),
    condition: Type.Optional(ConditionSchema),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const AlertRuleView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  rule_key: Type.String({ description: '`rule:<id>`: the rule_key its alerts carry.' }),
  name: Type.String(),
  description: Nullable(Type.String()),
  enabled: Type.Boolean(),
  severity: Severity,
  condition: Type.Unknown({ description: 'The condition as stored (AlertRuleCondition).' }),
  created_at: Timestamp,
  updated_at: Timestamp,
})

export const AlertRuleList = Type.Object({
  alert_rules: Type.Array(AlertRuleView),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
})

/** Path ids are checked in the handler: a malformed id is a 404 like an unknown one. */
export const IdParams = Type.Object({ id: Type.String({ description: 'Resource id (UUID).' }) })

export const AlertListQuery = Type.Object(
  {
    ...PageQuery.properties,
    status: Type.Optional(Status),
    severity: Type.Optional(Severity),
    session_key: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    rule_key: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: '`builtin:<name>` or `rule:<uuid>`.' })),
    since: Type.Optional(Type.String({ format: 'date-time', description: 'Only alerts created at or after this instant.' })),
    machine_id: Type.Optional(Type.String({ format: 'uuid', description: 'Only alerts from this machine (cloud machine id).' })),
    agent_id: Type.Optional(
      Type.String({ minLength: 1, maxLength: 256, description: 'Only alerts of this agent (the agent key, as on events).' }),
    ),
  },
  { additionalProperties: false },
)

/** The most events `preceding_events` may hold (issue 9: bounded, never a session-long scan). */
export const MAX_PRECEDING = 50

export const AlertDetailQuery = Type.Object(
  {
    preceding: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: MAX_PRECEDING,
        default: 20,
        description: 'How many events of the session, up to and including the triggering one, to return (0–50).',
      }),
    ),
  },
  { additionalProperties: false },
)

export const AlertView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  rule_key: Type.String(),
  rule_id: Nullable(Type.String({ format: 'uuid' })),
  event_key: Type.String({ description: 'The triggering event (the ingest dedupe key).' }),
  action_id: Nullable(Type.String({ format: 'uuid', description: 'The stored action, once the pipeline has stored it.' })),
  session_key: Nullable(Type.String()),
  machine_id: Nullable(Type.String({ format: 'uuid' })),
  machine: Type.Union(
    [
      Type.Object({
        id: Type.String({ format: 'uuid' }),
        hostname: Nullable(Type.String()),
      }),
      Type.Null(),
    ],
    { description: 'The machine whose credential sent the triggering event; null for events sent without one.' },
  ),
  agent_key: Nullable(Type.String()),
  severity: Severity,
  title: Type.String(),
  context: Type.Record(Type.String(), Type.Unknown(), { description: 'Snippet: action, tool, risk, decision, matching detail.' }),
  status: Status,
  created_at: Timestamp,
  updated_at: Timestamp,
})

export const AlertList = Type.Object({
  alerts: Type.Array(AlertView),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
})

export const AlertDetail = Type.Object(
  {
    ...AlertView.properties,
    event: Type.Union([EventView, Type.Null()], {
      description: 'The triggering event; null until the pipeline has stored it (or after retention removed it).',
    }),
    session: Type.Union([SessionView, Type.Null()], { description: "The triggering event's session, if it has one." }),
    preceding_events: Type.Array(EventView, {
      description:
        'The last `preceding` events of the same session up to and including the triggering one, oldest first ' +
        '(empty without a session).',
    }),
  },
  { description: 'An alert with what an analyst opens it for: the event, its session and what led up to it.' },
)

export const UpdateAlertBody = Type.Object({ status: Status }, { additionalProperties: false })
