/**
 * @module features/policies/schema
 * Request and response shapes of `/v1/policies` (issue 11; docs/policies.md). Rules are the
 * SPEC §11.1 format the daemon enforces; what a rule may say is checked here, before it reaches
 * a fleet.
 */
import { Type } from '@sinclair/typebox'
import { NameSchema } from '../../lib/names.ts'
import { Nullable } from '../../lib/schema.ts'
import { PageQuery } from '../../http/pagination.ts'

/** No control characters: they would reach every daemon's evaluator and logs. */
const CLEAN = '^[^\\u0000-\\u001f\\u007f]*$'

const Glob = (what: string) =>
  Type.String({
    minLength: 1,
    maxLength: 256,
    pattern: CLEAN,
    description: `${what}: case-insensitive; \`*\` any, \`x*\` prefix, \`*x\` suffix, \`*x*\` contains, else exact (SPEC §11.2).`,
  })

export const PolicyRule = Type.Object(
  {
    tool: Glob('Tool name, or `http:{domain}:{verb}.{slug}` for HTTP traffic'),
    agent: Type.Optional(Glob('Agent name (default `*`)')),
    action: Type.Union([Type.Literal('block'), Type.Literal('flag'), Type.Literal('require_approval')], {
      description: 'Only `block` is enforced inline by the daemon; `flag` and `require_approval` are recorded.',
    }),
    conditions: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 512, pattern: CLEAN }), {
        maxItems: 50,
        description:
          'Any one matching suffices: a case-insensitive substring of the raw arguments JSON (`*` removed). None: the rule matches on tool and agent alone.',
      }),
    ),
  },
  { additionalProperties: false },
)

export const TAG_PATTERN = '^[a-z0-9][a-z0-9_.:-]{0,62}$'
export const Tag = Type.String({ pattern: TAG_PATTERN, description: 'Lower case letters, digits, `_ . : -`; at most 63.' })

export const PolicyScope = Type.Object(
  {
    all: Type.Optional(Type.Boolean({ description: '`true`: every machine of the org (then no machine_ids or tags).' })),
    machine_ids: Type.Optional(Type.Array(Type.String({ format: 'uuid' }), { maxItems: 1000 })),
    tags: Type.Optional(Type.Array(Tag, { maxItems: 50 })),
  },
  {
    additionalProperties: false,
    description:
      'Which machines enforce it: `{"all": true}`, or the machines listed and those with a tag listed (at least one). Absent on creation: every machine. Never implied by empty lists.',
  },
)

const Priority = Type.Integer({
  minimum: -1_000_000,
  maximum: 1_000_000,
  description: 'Higher first; the first matching rule of the first policy in this order wins (SPEC §11.2).',
})
const Description = Type.String({ maxLength: 2000, pattern: CLEAN })
const Rules = Type.Array(PolicyRule, { minItems: 1, maxItems: 100 })

export const CreatePolicyBody = Type.Object(
  {
    name: NameSchema,
    description: Type.Optional(Nullable(Description)),
    enabled: Type.Optional(Type.Boolean({ default: true })),
    priority: Type.Optional(Priority),
    rules: Rules,
    scope: Type.Optional(PolicyScope),
  },
  { additionalProperties: false },
)

export const UpdatePolicyBody = Type.Object(
  {
    name: Type.Optional(NameSchema),
    description: Type.Optional(Nullable(Description)),
    enabled: Type.Optional(Type.Boolean()),
    priority: Type.Optional(Priority),
    rules: Type.Optional(Rules),
    scope: Type.Optional(PolicyScope),
  },
  { additionalProperties: false, minProperties: 1, description: 'The fields to change; the others stay.' },
)

const Timestamp = Type.String({ format: 'date-time' })

export const PolicyView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  description: Nullable(Type.String()),
  enabled: Type.Boolean(),
  priority: Type.Integer(),
  rules: Type.Array(PolicyRule),
  scope: Type.Object({
    all: Type.Boolean(),
    machine_ids: Type.Array(Type.String({ format: 'uuid' })),
    tags: Type.Array(Type.String()),
  }),
  version: Type.Integer({ minimum: 1, description: 'Bumped by every change.' }),
  created_at: Timestamp,
  updated_at: Timestamp,
})

export const PolicyList = Type.Object({ policies: Type.Array(PolicyView), next_cursor: Nullable(Type.String()) })

export const PolicyListQuery = Type.Object(
  {
    ...PageQuery.properties,
    enabled: Type.Optional(Type.Boolean({ description: 'Only enabled (true) or disabled (false) policies.' })),
  },
  { additionalProperties: false },
)

export const PolicyVersionView = Type.Object({
  version: Type.Integer({ minimum: 1 }),
  policy: Nullable(PolicyView),
  deleted: Type.Boolean({ description: 'This version deleted the policy (`policy` is then null).' }),
  changed_by: Nullable(Type.String({ description: 'The member or credential id that made the change.' })),
  changed_at: Timestamp,
})

export const PolicyVersionList = Type.Object({ versions: Type.Array(PolicyVersionView) })

export const PolicyIdParams = Type.Object({
  id: Type.String({ description: 'Policy id (UUID). A malformed or unknown id, or one of another org, is a 404.' }),
})
