/**
 * @module features/machines/schema
 * Request and response shapes of the daemon API `/v1/machines/…` (SPEC §7.1, §11.1). Identifier
 * strings must be clean (no control character, no lone surrogate: 422), because they are stored
 * as text and Postgres cannot hold a NUL. Optional fields also accept `null`, and unknown fields
 * are allowed everywhere: the public daemon is not ours to change, and a rejected body is retried
 * forever.
 */
import { Type, type TSchema } from '@sinclair/typebox'
import { MAX_BATCH_EVENTS } from '../ingest/routes.ts'
import { DroppedEvents } from '../ingest/schema.ts'

// Code-unit based (TypeBox compiles patterns without the `u` flag): a surrogate is accepted only
// as part of a pair.
const CLEAN = '^(?:[^\\u0000-\\u001f\\u007f\\ud800-\\udfff]|[\\ud800-\\udbff][\\udc00-\\udfff])*$'

const clean = (maxLength: number, minLength = 0, description?: string) =>
  Type.String({ minLength, maxLength, pattern: CLEAN, ...(description ? { description } : {}) })

/** Absent, `null`, or a value of `schema`. */
const opt = <T extends TSchema>(schema: T) => Type.Optional(Type.Union([schema, Type.Null()]))

const Uuid = Type.String({ format: 'uuid' })

export const MachineParams = Type.Object({
  id: Type.String({
    description: 'The cloud machine id returned by register. Any other value, or a machine of another org, is a 404.',
  }),
})

export const RegisterBody = Type.Object(
  {
    machine_id: clean(
      128,
      1,
      "The client's machine fingerprint (Gen-B: 32 hex of sha256(host:os:arch)); any clean 1–128 character id.",
    ),
    hostname: opt(clean(255)),
    os: opt(clean(64, 0, 'Go GOOS value: darwin, linux, windows…')),
    arch: opt(clean(64, 0, 'Go GOARCH value: amd64, arm64…')),
    agent_version: opt(clean(64)),
  },
  { description: 'Unknown fields are kept in the machine metadata (cleaned, secrets redacted).' },
)

export const RegisterResponse = Type.Object({
  machine_id: Type.String({ format: 'uuid', description: 'Cloud machine id: the {id} of every later call.' }),
  id: Type.String({ format: 'uuid', description: 'Same value as machine_id (first Gen-B client read `id`).' }),
  org_id: Uuid,
  service_token: Type.Optional(
    Type.String({
      description:
        'qt_sk_… service token bound to this machine, returned only when the caller presented an install or enrollment ' +
        "credential. Shown once. Minting a new one revokes the machine's previous service token.",
    }),
  ),
})

export const HeartbeatBody = Type.Object({
  agent_version: opt(clean(64)),
  uptime: opt(Type.Number({ minimum: 0, maximum: 1e12, description: 'Seconds since the daemon started.' })),
  active_agents: opt(Type.Number({ description: 'Accepted, not stored (Gen-B always sends 0).' })),
  events_today: opt(Type.Number({ description: "Accepted, not stored (Gen-B sends its forwarder's buffer length)." })),
  dropped_events: DroppedEvents,
})

export const HeartbeatResponse = Type.Object({
  config_version: Type.String({ description: "Changes whenever this machine's policies or the org's proxied domains change." }),
  policy_hash: Type.String({ description: 'Exactly the ETag of GET /v1/machines/{id}/policies (unquoted).' }),
  domains: Type.Array(Type.String(), {
    description: "Hosts the daemon routes through its proxy (the PAC file), the org's `proxy_domains` (PATCH /v1/org).",
  }),
})

/** SPEC §11.1, as decoded by the daemon's Go `CloudPolicy` (RFC 3339 times). */
export const CloudPolicy = Type.Object({
  id: Uuid,
  org_id: Uuid,
  name: Type.String(),
  description: Type.String(),
  enabled: Type.Boolean(),
  priority: Type.Integer(),
  rules: Type.Array(
    Type.Object(
      {
        tool: Type.Optional(Type.String()),
        agent: Type.Optional(Type.String()),
        action: Type.Optional(Type.String({ description: 'block, flag or require_approval' })),
        conditions: Type.Optional(Type.Array(Type.String())),
      },
      { additionalProperties: true },
    ),
  ),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
})

export const PolicyList = Type.Array(CloudPolicy, {
  description: 'Enabled policies of the org, priority descending (ties: oldest first).',
})

/** `{"events":[EventPayload…]}` (SPEC §8.1); validated item by item, like /v1/ingest. */
export const EventsEnvelope = Type.Object({
  events: Type.Array(
    Type.Object(
      {
        event_id: Type.String(),
        action: Type.String(),
        agent: Type.Optional(Type.String()),
        timestamp: Type.Optional(Type.String({ format: 'date-time' })),
        risk_score: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
        blocked: Type.Optional(Type.Boolean()),
        metadata: Type.Optional(Type.Record(Type.String(), Type.String())),
      },
      { additionalProperties: true },
    ),
    { maxItems: MAX_BATCH_EVENTS },
  ),
})

/** The body `/v1/ingest` answers (features/ingest/routes.ts `batchBody`). */
export { BatchResponse as EventsResponse } from '../ingest/routes.ts'

export const MAX_AGENTS = 1000

export const AgentProcess = Type.Object({
  platform: clean(64, 1, 'claude-code, cursor, …'),
  pid: Type.Integer({ minimum: 0, maximum: 4294967295 }),
  binary_path: opt(clean(4096)),
  state: clean(32, 1, 'Gen-B always sends "running".'),
  cpu_percent: opt(Type.Number({ minimum: 0, maximum: 1e6 })),
  memory_mb: opt(Type.Number({ minimum: 0, maximum: 1e9 })),
  started_at: opt(Type.String({ format: 'date-time' })),
})

export const AgentsBody = Type.Object({
  agents: Type.Array(AgentProcess, {
    maxItems: MAX_AGENTS,
    description:
      'The full process snapshot: replaces the previous one; [] clears it. A repeated (platform, pid) keeps the first.',
  }),
})

export const AgentsResponse = Type.Object({
  machine_id: Uuid,
  agents: Type.Integer({ description: 'Processes now held for the machine.' }),
})

export const MAX_GRAPHS = 1000

export const AgentGraph = Type.Object({
  id: clean(256, 1, "The daemon's graph id; upsert key per machine."),
  root_agent_id: opt(clean(256)),
  root_agent_name: opt(clean(512)),
  status: opt(clean(64)),
  total_nodes: opt(Type.Integer({ minimum: 0, maximum: 2147483647 })),
  nodes: Type.Optional(Type.Unknown({ description: 'The whole raw local graph object; stored as sent (cleaned, redacted).' })),
  started_at: opt(Type.String({ description: 'RFC 3339; empty means unknown.' })),
  completed_at: opt(Type.String({ description: 'RFC 3339; omitted or empty while running.' })),
})

export const GraphsBody = Type.Object({
  graphs: Type.Array(AgentGraph, { maxItems: MAX_GRAPHS, description: 'A repeated id in one body: the last copy wins.' }),
})

export const GraphsResponse = Type.Object({
  received: Type.Integer(),
  created: Type.Integer(),
  updated: Type.Integer(),
})
