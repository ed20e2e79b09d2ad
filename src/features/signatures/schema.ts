/**
 * @module features/signatures/schema
 * Request and response shapes of `/v1/threat-signatures` (issue 11; docs/threat-signatures.md).
 */
import { Type } from '@sinclair/typebox'
import { PageQuery } from '../../http/pagination.ts'
import { NameSchema } from '../../lib/names.ts'
import { Nullable } from '../../lib/schema.ts'
import { PolicyScope } from '../policies/schema.ts'

export const INDICATOR_KINDS = ['domain', 'url', 'command', 'file_path', 'mcp_tool', 'prompt_injection'] as const
export const Kind = Type.Union([...INDICATOR_KINDS.map((k) => Type.Literal(k)), Type.Literal('flow_shape')], {
  description:
    'What `value` is (docs/threat-signatures.md: how each is matched on the daemon); `flow_shape`: no value, a `shape` matched on the server (docs/flow-shapes.md).',
})
const Action = Type.Union(
  [Type.Literal('block'), Type.Literal('flag'), Type.Literal('require_approval'), Type.Literal('alert')],
  {
    description:
      'What daemons do on a match: `block` refuses the call; `flag` and `require_approval` are recorded; `alert` is served as `flag`.',
  },
)
const Severity = Type.Union([Type.Literal('low'), Type.Literal('medium'), Type.Literal('high'), Type.Literal('critical')])
const Status = Type.Union([
  Type.Literal('active'),
  Type.Literal('expired'),
  Type.Literal('resolved'),
  Type.Literal('false_positive'),
])
/** `proposed`: distilled from an alert that was not critical; an admin accepts it by setting `active`. */
const AnyStatus = Type.Union([Type.Literal('proposed'), ...Status.anyOf])
const Timestamp = Type.String({ format: 'date-time' })
const Description = Type.String({ maxLength: 2000 })

/** A flow shape's definition (docs/flow-shapes.md "Writing your own"); validated by `parseShape`. */
export const FlowShapeFields = {
  shape: Type.Optional(
    Type.Record(Type.String(), Type.Number(), {
      description: '`flow_shape` only: transition (`"read>send"`) → weight; normalised, at least one positive.',
    }),
  ),
  max_jsd: Type.Optional(Type.Number({ description: '`flow_shape` only: a session matches at this JSD or below, in (0, 1].' })),
  agent_types: Type.Optional(
    Type.Array(Type.String({ maxLength: 128 }), {
      maxItems: 32,
      description: '`flow_shape` only: the platforms it applies to (`claude-code`, …); empty or absent: all.',
    }),
  ),
  min_transitions: Type.Optional(
    Type.Integer({ description: '`flow_shape` only: transitions a session needs before it can match (default 2).' }),
  ),
}

export const CreateSignatureBody = Type.Object(
  {
    name: NameSchema,
    kind: Kind,
    value: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 512,
        description: 'The indicator: `exfil.example`, `curl -d @~/.aws`, … (every kind but `flow_shape`).',
      }),
    ),
    ...FlowShapeFields,
    action: Action,
    severity: Severity,
    description: Type.Optional(Nullable(Description)),
    scope: Type.Optional(PolicyScope),
    expires_at: Type.Optional(
      Nullable(Type.String({ format: 'date-time', description: 'When it stops being enforced; null: never.' })),
    ),
  },
  { additionalProperties: false },
)

export const UpdateSignatureBody = Type.Object(
  {
    status: Type.Optional(Status),
    name: Type.Optional(NameSchema),
    description: Type.Optional(Nullable(Description)),
    action: Type.Optional(Action),
    severity: Type.Optional(Severity),
    scope: Type.Optional(PolicyScope),
    expires_at: Type.Optional(Nullable(Type.String({ format: 'date-time' }))),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description:
      '`status`: `expired` (withdraw it now), `resolved`, `false_positive`, or `active` again. Kind and value are fixed.',
  },
)

export const SignatureView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  key: Type.String({ description: 'One per kind and value in an org.' }),
  name: Type.String(),
  description: Nullable(Type.String()),
  kind: Type.String(),
  value: Nullable(Type.String()),
  flow_shape: Nullable(
    Type.Object({
      shape: Type.Record(Type.String(), Type.Number()),
      max_jsd: Type.Number(),
      agent_types: Type.Array(Type.String()),
      min_transitions: Type.Integer(),
    }),
  ),
  action: Type.String(),
  severity: Severity,
  status: Type.String({ description: '`expired` also once `expires_at` has passed.' }),
  enforced: Type.Boolean({
    description:
      'In force now: an indicator is in the managed policy served to daemons; a flow shape is matched on every new event.',
  }),
  scope: Type.Object({ all: Type.Boolean(), machine_ids: Type.Array(Type.String()), tags: Type.Array(Type.String()) }),
  expires_at: Nullable(Timestamp),
  source: Type.String({ description: '`custom` (made here), `distilled` (from an alert), `imported`.' }),
  source_alert_id: Nullable(Type.String({ format: 'uuid' })),
  created_at: Timestamp,
  updated_at: Timestamp,
})

export const SignatureList = Type.Object({ threat_signatures: Type.Array(SignatureView), next_cursor: Nullable(Type.String()) })

export const SignatureListQuery = Type.Object(
  {
    ...PageQuery.properties,
    status: Type.Optional(AnyStatus),
    kind: Type.Optional(Kind),
  },
  { additionalProperties: false },
)

export const SignatureIdParams = Type.Object({ id: Type.String({ description: 'Signature id (UUID).' }) })
