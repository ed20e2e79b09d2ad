/**
 * @module features/sessions/schema
 * Request and response shapes of the sessions read API (issue 9, SPEC §7.4, §10): the list, one
 * session with its direct children, its events in time order, its children page by page, and the
 * whole delegation tree. Every session is the shared `SessionView` (./view.ts); docs/sessions.md
 * is the prose contract.
 */
import { Type } from '@sinclair/typebox'
import { EventView } from '../events/view.ts'
import { PageQuery } from '../../http/pagination.ts'
import { SessionView } from './view.ts'

/** Direct children inlined in `GET /v1/sessions/{id}`; the rest are at `/children` (issue 9). */
export const DETAIL_CHILDREN = 200
/** The most sessions one tree answer carries: a parent loop or a runaway fan-out stays bounded. */
export const TREE_MAX_NODES = 10_000
/** Ancestors listed above the requested session; delegation is never this deep in practice. */
export const MAX_ANCESTORS = 100

const NextCursor = Type.Union([Type.String(), Type.Null()], {
  description: 'Pass as `cursor` for the next page; null on the last.',
})

/**
 * Path ids are checked in the handler: an unknown or malformed id (or another org's) is a 404,
 * never a 400 (issue 9), so the schema only says what the id may be.
 */
export const SessionIdParams = Type.Object({
  id: Type.String({
    description: 'The session UUID, or the edge session key (`{rootPID}-{startUnixMs}`, `…:sub:{N}`), URL-encoded.',
  }),
})

export const SessionListQuery = Type.Object(
  {
    ...PageQuery.properties,
    state: Type.Optional(
      Type.Union([Type.Literal('active'), Type.Literal('idle'), Type.Literal('ended')], {
        description: 'Only sessions in this state.',
      }),
    ),
    platform: Type.Optional(
      Type.String({ minLength: 1, maxLength: 64, description: 'Only sessions of this platform (`claude-code`, `cursor`, …).' }),
    ),
    root_only: Type.Optional(
      Type.Boolean({
        description:
          'true: only top-level sessions (no parent session stored). A sub-agent whose parent was never seen counts as top-level.',
      }),
    ),
    since: Type.Optional(Type.String({ format: 'date-time', description: 'Only sessions started at or after this instant.' })),
    machine_id: Type.Optional(Type.String({ format: 'uuid', description: 'Only sessions of this machine (cloud machine id).' })),
    agent_id: Type.Optional(
      Type.String({ minLength: 1, maxLength: 256, description: 'Only sessions of this agent (the agent key, as on events).' }),
    ),
  },
  { additionalProperties: false },
)

export const SessionList = Type.Object({
  sessions: Type.Array(SessionView, { description: 'Newest first (started_at, then id).' }),
  next_cursor: NextCursor,
})

export const SessionDetail = Type.Object({
  ...SessionView.properties,
  children: Type.Array(SessionView, {
    description: `Direct children (sub-agents, delegated tasks), oldest first; at most ${DETAIL_CHILDREN}.`,
  }),
  children_count: Type.Integer({ minimum: 0, description: 'How many direct children the session has.' }),
  children_truncated: Type.Boolean({
    description: `True when there are more than ${DETAIL_CHILDREN} children: page through GET /v1/sessions/{id}/children.`,
  }),
})

export const SessionEventList = Type.Object({
  events: Type.Array(EventView, { description: 'The session\u2019s events in timestamp order, oldest first (then id).' }),
  next_cursor: NextCursor,
})

export const SessionChildList = Type.Object({
  children: Type.Array(SessionView, { description: 'Direct children, oldest first (started_at, then id).' }),
  next_cursor: NextCursor,
})

export const SessionTreeQuery = Type.Object(
  {
    max_nodes: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: TREE_MAX_NODES,
        default: TREE_MAX_NODES,
        description: `The most sessions to return, the requested one included (1–${TREE_MAX_NODES}); nearer levels come first.`,
      }),
    ),
  },
  { additionalProperties: false },
)

export const SessionTreeNode = Type.Recursive(
  (Self) =>
    Type.Object({
      ...SessionView.properties,
      depth: Type.Integer({ minimum: 0, description: 'Levels below the requested session (0 for it).' }),
      children: Type.Array(Self, { description: 'Direct children, oldest first.' }),
    }),
  { $id: 'SessionTreeNode', description: 'A session and its delegated sessions, to any depth.' },
)

export const SessionTree = Type.Object({
  root: SessionTreeNode,
  ancestors: Type.Array(SessionView, {
    description: `The sessions above the requested one, top-level first (at most ${MAX_ANCESTORS}); empty for a top-level session.`,
  }),
  node_count: Type.Integer({ minimum: 1, description: 'Sessions in `root`, the requested one included.' }),
  truncated: Type.Boolean({
    description:
      'True when the tree has more sessions than `max_nodes` (the deepest ones were left out) or more ancestors than listed.',
  }),
})
