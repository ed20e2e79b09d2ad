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
const Kind = Type.Union(
  INDICATOR_KINDS.map((k) => Type.Literal(k)),
  { description: 'What `value` is (docs/threat-signatures.md: how each is matched on the daemon).' },
)
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

export const CreateSignatureBody = Type.Object(
  {
    name: NameSchema,
    kind: Kind,
    value: Type.String({ minLength: 1, maxLength: 512, description: 'The indicator: `exfil.example`, `curl -d @~/.aws`, …' }),
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
  action: Type.String(),
  severity: Severity,
  status: Type.String({ description: '`expired` also once `expires_at` has passed.' }),
  enforced: Type.Boolean({ description: 'In the managed policy served to daemons now.' }),
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
