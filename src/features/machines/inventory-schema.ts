/**
 * @module features/machines/inventory-schema
 * Request and response shapes of the fleet inventory (issue 9): `GET /v1/machines` and
 * `GET /v1/machines/{id}`, read by people and read credentials (never by a machine's own
 * credential), and the admin's `PATCH`/`DELETE /v1/machines/{id}` (issue 10). The daemon's own
 * routes under `/v1/machines/{id}/…` are in ./schema.ts.
 */
import { Type, type Static } from '@sinclair/typebox'
import { Nullable } from '../../lib/schema.ts'
import { PageQuery } from '../../http/pagination.ts'
import { Tag, TAG_PATTERN } from '../policies/schema.ts'

const Timestamp = Type.String({ format: 'date-time' })

export const MachineListQuery = Type.Object(
  {
    ...PageQuery.properties,
    status: Type.Optional(
      Type.Union([Type.Literal('active'), Type.Literal('disabled')], { description: 'Only machines in this state.' }),
    ),
    tag: Type.Optional(Type.String({ pattern: TAG_PATTERN, description: 'Only machines with this tag.' })),
    online: Type.Optional(
      Type.Boolean({ description: '`true`: seen within two heartbeat intervals (120 s); `false`: not (or never) seen since.' }),
    ),
    os: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Exact OS (Go GOOS: darwin, linux, windows…).' })),
    hostname: Type.Optional(
      Type.String({ minLength: 1, maxLength: 255, description: 'Hostname contains this text (case-insensitive).' }),
    ),
    client_machine_id: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: "The daemon's own machine fingerprint (exact)." }),
    ),
    since: Type.Optional(Type.String({ format: 'date-time', description: 'Only machines last seen at or after this instant.' })),
  },
  { additionalProperties: false },
)
export type MachineListQuery = Static<typeof MachineListQuery>

/** Checked in the handler: a malformed id is a 404 like an unknown one (issue 9, docs/rbac.md). */
export const MachineIdParams = Type.Object({
  id: Type.String({
    description:
      'The cloud machine id (UUID) returned by register. Anything else, the client fingerprint included, or a machine of ' +
      'another org, is a 404; find a machine by fingerprint with `GET /v1/machines?client_machine_id=`.',
  }),
})

export const RegisteredBy = Type.Object(
  {
    token_id: Type.String({ format: 'uuid' }),
    kind: Type.String({
      description: '`install` (deploy token), `enrollment`, `service` (machine service token), `personal` or `api_key`.',
    }),
    name: Type.String(),
    prefix: Type.String({ description: 'The first characters of the token, to recognise it; never the secret.' }),
    revoked_at: Nullable(Timestamp),
  },
  { description: 'The credential of the latest registration (re-registering with another credential changes it).' },
)

export const MachinePolicy = Type.Object(
  {
    hash: Type.String({
      description:
        'The policy_hash this machine should hold now: exactly what its heartbeat would answer (the ETag of its `GET …/policies`).',
    }),
    delivered_hash: Nullable(
      Type.String({ description: 'The last policy_hash this server handed it; null: never since it was recorded.' }),
    ),
    delivered_at: Nullable(Timestamp),
    delivered_via: Nullable(
      Type.Union([Type.Literal('heartbeat'), Type.Literal('policies'), Type.Literal('stream')], {
        description:
          'How it was handed: a heartbeat answer, a `GET /v1/machines/{id}/policies` 200, or a fleet stream `policy` event.',
      }),
    ),
    current: Type.Boolean({
      description: '`delivered_hash` equals `hash`: the machine has been handed its policies as they are now.',
    }),
  },
  { description: 'Which policy hash the machine should hold, and which it was last handed (issue 12, docs/machines.md).' },
)

const MachineFields = {
  id: Type.String({ format: 'uuid', description: 'The cloud machine id (the `{id}` of every machine route).' }),
  client_machine_id: Type.String({ description: "The daemon's machine fingerprint (`machine_id` at register)." }),
  hostname: Nullable(Type.String()),
  os: Nullable(Type.String()),
  arch: Nullable(Type.String()),
  daemon_version: Nullable(Type.String({ description: 'The daemon version from register or the last heartbeat.' })),
  status: Type.Union([Type.Literal('active'), Type.Literal('disabled')]),
  tags: Type.Array(Type.String(), { description: 'For policy scopes (PATCH /v1/machines/{id}).' }),
  registered_at: Timestamp,
  last_seen_at: Nullable(Timestamp),
  online: Type.Boolean({ description: 'Seen (register, heartbeat) within two heartbeat intervals (120 s) of now.' }),
  uptime_seconds: Nullable(Type.Integer({ description: 'Daemon uptime reported by the last heartbeat that carried it.' })),
  registered_by: Nullable(RegisteredBy),
  policy: MachinePolicy,
}

export const MachineView = Type.Object(MachineFields)
export type MachineView = Static<typeof MachineView>

export const MachineList = Type.Object({
  machines: Type.Array(MachineView),
  next_cursor: Nullable(Type.String()),
})

export const ProcessView = Type.Object({
  platform: Type.String(),
  pid: Type.Integer(),
  binary_path: Nullable(Type.String()),
  state: Type.String(),
  cpu_percent: Nullable(Type.Number()),
  memory_mb: Nullable(Type.Number()),
  started_at: Nullable(Timestamp),
  reported_at: Timestamp,
})

export const GraphView = Type.Object({
  graph_id: Type.String(),
  root_agent_id: Nullable(Type.String()),
  root_agent_name: Nullable(Type.String()),
  status: Nullable(Type.String()),
  total_nodes: Nullable(Type.Integer()),
  nodes: Type.Unknown({ description: "The daemon's raw graph (`nodes`) as stored: cleaned, secrets redacted." }),
  started_at: Nullable(Timestamp),
  completed_at: Nullable(Timestamp),
  first_seen_at: Timestamp,
  updated_at: Timestamp,
})

export const MachineAgentView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  agent_id: Type.String({ description: 'The agent key (as on events).' }),
  name: Nullable(Type.String()),
  platform: Nullable(Type.String()),
  event_count: Type.Integer(),
  session_count: Type.Integer(),
  first_seen_at: Timestamp,
  last_seen_at: Timestamp,
})

export const MachineDetail = Type.Object({
  ...MachineFields,
  metadata: Type.Record(Type.String(), Type.Unknown(), {
    description: 'Extra fields the daemon sent at register (cleaned, secrets redacted).',
  }),
  session_count: Type.Integer({ description: 'Sessions recorded on this machine.' }),
  open_alert_count: Type.Integer({ description: 'Alerts of this machine in status `open`.' }),
  last_event_at: Nullable(Timestamp),
  processes: Type.Array(ProcessView, { description: 'The latest process snapshot (every row of the last push, ≤ 1000).' }),
  graphs: Type.Array(GraphView, { description: 'The most recently updated agent graphs (at most 10).' }),
  graph_count: Type.Integer({ description: 'All agent graphs of the machine.' }),
  agents: Type.Array(MachineAgentView, { description: 'Agents seen on the machine, most recently seen first (at most 50).' }),
  agent_count: Type.Integer({ description: 'All agents seen on the machine.' }),
})
export type MachineDetail = Static<typeof MachineDetail>

export const MachineUpdateBody = Type.Object(
  {
    status: Type.Optional(
      Type.Union([Type.Literal('active'), Type.Literal('disabled')], {
        description:
          '`disabled`: the machine is refused (403 `machine_disabled`) from its next request whatever credential it presents, ' +
          'and its service tokens are revoked. `active`: it may register again.',
      }),
    ),
    tags: Type.Optional(
      Type.Array(Tag, {
        maxItems: 50,
        uniqueItems: true,
        description: 'Replaces its tags; policies scoped to a tag apply to the machines that have it (docs/policies.md).',
      }),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
)
