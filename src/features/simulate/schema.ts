/**
 * @module features/simulate/schema
 * Request and response shapes of `POST /v1/policies/simulate` (issue 11; docs/simulate.md). The
 * draft policy takes the same fields and bounds as `POST /v1/policies`, the draft signature those
 * of `POST /v1/threat-signatures` plus the flow-shape fields (docs/flow-shapes.md); what a schema
 * cannot say (exactly one draft, globs the daemon would read otherwise, indicator values, shapes,
 * the scope's machines, `replaces`) is checked by the route with the create routes' own helpers.
 */
import { Type } from '@sinclair/typebox'
import { Nullable } from '../../lib/schema.ts'
import { STORABLE_TEXT_PATTERN } from '../../http/text-guard.ts'
import { CreatePolicyBody, PolicyScope } from '../policies/schema.ts'
import { INDICATOR_KINDS } from '../signatures/schema.ts'

const policy = CreatePolicyBody.properties

export const DraftPolicy = Type.Object(
  {
    name: Type.Optional(policy.name),
    description: policy.description,
    enabled: Type.Optional(
      Type.Boolean({ default: true, description: 'A disabled draft decides nothing (the daemon skips disabled policies).' }),
    ),
    priority: policy.priority,
    rules: policy.rules,
    scope: Type.Optional(PolicyScope),
  },
  {
    additionalProperties: false,
    description: 'A policy as `POST /v1/policies` takes it (same fields and bounds); `name` is optional here.',
  },
)

// Free text that the route reads itself: storable (no NUL, no lone surrogate) by the schema, so a
// draft refused for another reason still names these fields.
const StorableText = (options: { minLength?: number; maxLength: number; description?: string }) =>
  Type.String({ ...options, pattern: STORABLE_TEXT_PATTERN })

export const DraftSignature = Type.Object(
  {
    kind: Type.Union([...INDICATOR_KINDS.map((k) => Type.Literal(k)), Type.Literal('flow_shape')], {
      description: 'An indicator kind (docs/threat-signatures.md) or `flow_shape` (docs/flow-shapes.md).',
    }),
    value: Type.Optional(
      StorableText({
        minLength: 1,
        maxLength: 512,
        description: 'The indicator (indicator kinds only), as a signature takes it.',
      }),
    ),
    action: Type.Union([Type.Literal('block'), Type.Literal('flag'), Type.Literal('require_approval'), Type.Literal('alert')], {
      description: 'As a signature: `alert` is served as `flag`. A flow shape raises an alert whatever its action.',
    }),
    scope: Type.Optional(PolicyScope),
    shape: Type.Optional(
      Type.Record(Type.String(), Type.Number(), {
        description: '`flow_shape` only: `"from>to"` transitions to weights (docs/flow-shapes.md).',
      }),
    ),
    max_jsd: Type.Optional(Type.Number({ description: '`flow_shape` only: a number in (0, 1].' })),
    agent_types: Type.Optional(
      Type.Array(StorableText({ maxLength: 128 }), {
        maxItems: 32,
        description: '`flow_shape` only: the agent types it applies to; absent or empty: every one.',
      }),
    ),
    min_transitions: Type.Optional(Type.Integer({ description: '`flow_shape` only: 1 to 1,000,000 (default 2).' })),
  },
  { additionalProperties: false, description: 'A threat signature as `POST /v1/threat-signatures` would create it.' },
)

export const SimulateBody = Type.Object(
  {
    policy: Type.Optional(DraftPolicy),
    signature: Type.Optional(DraftSignature),
    replaces: Type.Optional(
      Type.String({
        format: 'uuid',
        description:
          'A policy of the org to leave out of the current set (simulate an edit of it: the draft takes its place among equal priorities).',
      }),
    ),
    days: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 30, default: 7, description: 'Replay the actions received in the last `days` days.' }),
    ),
    samples: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 100, default: 20, description: 'At most this many sample events, newest first.' }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Exactly one of `policy` and `signature`: the draft, replayed over the org’s stored actions.',
  },
)

const count = (description: string) => Type.Optional(Type.Integer({ minimum: 0, description }))

/** Daemon semantics: `block`, `flag`, `require_approval` (all three present); flow shapes: `alert`. */
const COUNTS = {
  block: count('Events the draft would have blocked (daemon semantics).'),
  flag: count('Events the draft would have flagged (daemon semantics).'),
  require_approval: count('Events the draft would have sent for approval (daemon semantics).'),
  alert: count('Sessions the flow shape would have matched (flow_shape semantics).'),
}

const Counts = Type.Object(COUNTS, {
  description: 'Daemon semantics: `block`, `flag` and `require_approval`; flow_shape semantics: `alert` (sessions).',
})

export const SimulationResult = Type.Object({
  days: Type.Integer({ description: 'The window replayed, in days.' }),
  since: Type.String({ format: 'date-time', description: 'Start of the window: actions the cloud received from then on.' }),
  until: Type.String({ format: 'date-time', description: 'End of the window (when the simulation started).' }),
  evaluated: Type.Integer({ minimum: 0, description: 'Stored actions replayed.' }),
  totals: Counts,
  shadowed: Type.Integer({
    minimum: 0,
    description: "Events the draft's rules match that an earlier policy decides first (daemon semantics; 0 for flow shapes).",
  }),
  shadowed_by: Type.Array(
    Type.Object({
      policy_id: Type.String({ description: 'The policy that decides first (an org policy or a managed signature policy).' }),
      name: Type.String({ description: 'Its name.' }),
      action: Type.String({ description: 'What it decides: `block`, `flag` or `require_approval`.' }),
      count: Type.Integer({ minimum: 1, description: 'Events it decides before the draft.' }),
    }),
    { maxItems: 10, description: 'Who shadows the draft, most events first (at most 10).' },
  ),
  by_machine: Type.Array(
    Type.Object({
      machine_id: Nullable(Type.String({ format: 'uuid', description: 'The machine; null: events sent without one.' })),
      hostname: Nullable(Type.String({ description: 'Its host name as last reported.' })),
      ...COUNTS,
    }),
    { maxItems: 50, description: 'Per machine, most events first, then by id (at most 50).' },
  ),
  by_agent: Type.Array(
    Type.Object({ agent: Type.String({ description: 'The agent name the daemon matches (`""`: none).' }), ...COUNTS }),
    { maxItems: 50, description: 'Per agent, most events first (at most 50).' },
  ),
  by_tool: Type.Array(
    Type.Object({
      tool: Type.String({ description: 'The tool name the daemon matches (`http:{domain}:{verb}.{slug}` for HTTP).' }),
      ...COUNTS,
    }),
    { maxItems: 50, description: 'Per tool, most events first (at most 50).' },
  ),
  samples: Type.Array(
    Type.Object({
      id: Type.String({ format: 'uuid', description: 'The stored action (`GET /v1/events/{id}`).' }),
      event_id: Type.String({ description: "The sender's event id." }),
      occurred_at: Type.String({ format: 'date-time', description: 'When it happened, by the sender.' }),
      machine_id: Nullable(Type.String({ format: 'uuid', description: 'The machine that sent it, if any.' })),
      agent: Type.String({ description: 'The agent name the daemon matches.' }),
      tool: Type.String({ description: 'The tool name the daemon matches.' }),
      action: Type.String({
        description: 'What the draft decided: `block`, `flag`, `require_approval`, or `alert` (flow shapes).',
      }),
      policy_id: Nullable(
        Type.String({
          description:
            'The policy the daemon would name: `replaces`, or the managed signature policy; null for a new policy or a flow shape.',
        }),
      ),
      rule_index: Nullable(
        Type.Integer({ description: "The draft's rule that decided (0 for a signature; null for a flow shape)." }),
      ),
    }),
    { description: 'Events the draft decided (the event that completed the shape, for flow shapes), newest first.' },
  ),
  semantics: Type.Union([Type.Literal('daemon'), Type.Literal('flow_shape')], {
    description: '`daemon`: SPEC §11.2 evaluation per event; `flow_shape`: sessions matched as the alerts consumer does.',
  }),
})

export const BackfillBody = Type.Object(
  {
    days: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 30,
        default: 7,
        description: 'Run over the actions received in the last `days` days.',
      }),
    ),
  },
  { additionalProperties: false },
)

export const BackfillResult = Type.Object({
  days: Type.Integer({ description: 'The window, in days.' }),
  since: Type.String({ format: 'date-time', description: 'Actions received from then …' }),
  until: Type.String({ format: 'date-time', description: '… until then.' }),
  evaluated: Type.Integer({ description: 'Stored actions read.' }),
  matched: Type.Integer({
    description: 'Events that match (a flow shape: sessions that match, at the event that completed it).',
  }),
  created: Type.Integer({
    description:
      'Alerts raised now; `matched − created` existed already (a rule fires once per event, a shape once per session).',
  }),
})
