/**
 * @module features/agents/schema
 * Request and response shapes of the agents read API (issue 9, docs/sessions.md). An agent is
 * what events call `agent_id`: the agent KEY. The store keeps one `agents` row per (machine, key),
 * since keys such as `ne-pid-59247` repeat across machines; the API groups those rows by key.
 */
import { Type } from '@sinclair/typebox'
import { Nullable } from '../../lib/schema.ts'
import { PageQuery } from '../../http/pagination.ts'

const Timestamp = Type.String({ format: 'date-time' })

/** Checked in the handler: an unknown or malformed id (or another org's) is a 404 (issue 9). */
export const AgentIdParams = Type.Object({
  id: Type.String({
    description: 'The agent key as events carry it (`agent_id`), URL-encoded; or the UUID of one stored agent row.',
  }),
})

export const AgentListQuery = Type.Object(
  {
    ...PageQuery.properties,
    platform: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Only agents seen on this platform.' })),
    machine_id: Type.Optional(
      Type.String({ format: 'uuid', description: 'Only agents seen on this machine (cloud machine id).' }),
    ),
    since: Type.Optional(Type.String({ format: 'date-time', description: 'Only agents last seen at or after this instant.' })),
  },
  { additionalProperties: false },
)

export const AgentView = Type.Object({
  id: Type.String({ description: 'The agent key (what events carry as `agent_id`).' }),
  name: Nullable(Type.String()),
  platforms: Type.Array(Type.String(), { description: 'Platforms it was seen on, sorted.' }),
  machines: Type.Array(
    Type.Object({
      machine_id: Type.String({ format: 'uuid' }),
      hostname: Nullable(Type.String()),
    }),
    { description: 'Machines it was seen on (events sent without a machine credential count towards none).' },
  ),
  first_seen_at: Timestamp,
  last_seen_at: Timestamp,
  event_count: Type.Integer({ minimum: 0, description: 'Events stored with this agent key, all machines.' }),
  session_count: Type.Integer({ minimum: 0, description: 'Sessions attributed to this agent.' }),
  risk: Type.Object(
    {
      max_risk: Nullable(Type.Integer({ minimum: 0, maximum: 100 })),
      avg_risk: Nullable(Type.Number({ description: 'Mean risk over the scored events of its sessions.' })),
      blocked_count: Type.Integer({ minimum: 0, description: 'Blocked events in its sessions.' }),
    },
    { description: 'From its sessions.' },
  ),
})

export const AgentList = Type.Object({
  agents: Type.Array(AgentView, { description: 'Most recently seen first.' }),
  next_cursor: Nullable(Type.String({ description: 'Pass as `cursor` for the next page; null on the last.' })),
})
