/**
 * @module features/events/schema
 * Request and response shapes of the events read API (issue 9): the `GET /v1/events` filters
 * (SPEC §7.4 plus ours), the list and stats responses. The event itself is `EventView`
 * (./view.ts), shared with every other read that returns events. Documented in docs/events.md.
 */
import { Type } from '@sinclair/typebox'
import { PageQuery } from '../../http/pagination.ts'
import { EventView } from './view.ts'

/** Longest `q`: a substring filter needs no more, and a bound keeps the pattern cheap. */
export const MAX_Q_LENGTH = 100

const Key = (description: string) => Type.String({ minLength: 1, maxLength: 256, description })
const Instant = (description: string) => Type.String({ format: 'date-time', description })
const Risk = (description: string) => Type.Integer({ minimum: 0, maximum: 100, description })
const Flag = (description: string) => Type.Boolean({ description: `${description} (\`true\` or \`false\`).` })

export const EventListQuery = Type.Object(
  {
    ...PageQuery.properties,
    agent_id: Type.Optional(Key('Only events of this agent (the agent key as sent on events).')),
    session_id: Type.Optional(
      Key('Only events of this session: the session key as sent on events, or a session UUID from `/v1/sessions`.'),
    ),
    machine_id: Type.Optional(Type.String({ format: 'uuid', description: 'Only events sent by this machine.' })),
    tool_name: Type.Optional(Key('Only events of this tool (exact, case-sensitive).')),
    action_type: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: '`PROCESS_EXEC`, `FILE_READ`, `tools/call`, … (exact).' }),
    ),
    decision: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: '`allow`, `block`, … (exact, as stored).' })),
    platform: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: '`claude-code`, `cursor`, … (exact).' })),
    blocked: Type.Optional(Flag('Only blocked, or only not blocked, events')),
    redacted: Type.Optional(Flag('Only events in which ingest redacted a secret, or only events without')),
    risk_min: Type.Optional(Risk('Only events scored at least this (events without a score are left out).')),
    risk_max: Type.Optional(Risk('Only events scored at most this (events without a score are left out).')),
    since: Type.Optional(Instant('Only events that happened at or after this instant.')),
    until: Type.Optional(Instant('Only events that happened before this instant.')),
    q: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: MAX_Q_LENGTH,
        description: 'Case-insensitive substring of the tool name or the action (`%` and `_` are literal).',
      }),
    ),
  },
  { additionalProperties: false },
)

export const EventList = Type.Object({
  events: Type.Array(EventView, { description: 'Newest first: by `timestamp`, then `id`, descending.' }),
  next_cursor: Type.Union([Type.String(), Type.Null()], {
    description: 'Pass as `cursor` for the next page; null on the last page.',
  }),
})

/** Path ids are checked in the handler: a malformed id is a 404 like an unknown one (issue 9). */
export const EventIdParams = Type.Object({ id: Type.String({ description: 'The event id (`id` of an event, a UUID).' }) })

export const EventStatsQuery = Type.Object(
  {
    since: Type.Optional(Instant('Start of the window (inclusive). Default: 24 hours before `until`.')),
    until: Type.Optional(Instant('End of the window (exclusive). Default: now.')),
    machine_id: Type.Optional(Type.String({ format: 'uuid', description: 'Only events sent by this machine.' })),
    agent_id: Type.Optional(Key('Only events of this agent (the agent key).')),
  },
  { additionalProperties: false },
)

const Count = Type.Integer({ minimum: 0 })
const Counts = (description: string) => Type.Record(Type.String(), Count, { description })

export const EventStats = Type.Object({
  since: Type.String({ format: 'date-time', description: 'Start of the window (inclusive).' }),
  until: Type.String({ format: 'date-time', description: 'End of the window (exclusive).' }),
  total: Count,
  by_decision: Counts('Events per decision as stored; events without a decision count under `none`.'),
  by_risk_band: Type.Object(
    {
      none: Count,
      low: Count,
      medium: Count,
      high: Count,
      critical: Count,
      unscored: Type.Integer({ minimum: 0, description: 'Events without a risk score.' }),
    },
    { description: 'SPEC §16.1 bands: 0–10 none, 11–30 low, 31–60 medium, 61–80 high, 81–100 critical.' },
  ),
  hourly: Type.Array(
    Type.Object({
      hour: Type.String({ format: 'date-time', description: 'Start of the UTC hour.' }),
      total: Count,
      blocked: Count,
      by_decision: Counts('Events per decision in this hour (`none` for no decision).'),
    }),
    { description: 'Every UTC hour that overlaps the window, oldest first, zeros included.' },
  ),
  top_tools: Type.Array(Type.Object({ tool_name: Type.String(), count: Count }), {
    description: 'The 10 tools with the most events (ties by name).',
  }),
  top_agents: Type.Array(Type.Object({ agent_id: Type.String(), count: Count }), {
    description: 'The 10 agents with the most events (ties by agent key).',
  }),
  top_machines: Type.Array(
    Type.Object({
      machine_id: Type.String({ format: 'uuid' }),
      hostname: Type.Union([Type.String(), Type.Null()]),
      count: Count,
    }),
    { description: 'The 10 machines with the most events (ties by id).' },
  ),
})
