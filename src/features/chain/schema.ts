/**
 * @module features/chain/schema
 * Request and response schemas of the causal-chain reads (issue 9, docs/causal-chain.md):
 * `GET /v1/events/{id}/chain` and `GET /v1/sessions/{id}/timeline`.
 */
import { Type } from '@sinclair/typebox'
import { PageQuery } from '../../http/pagination.ts'
import { EventView } from '../events/view.ts'
import { SessionView } from '../sessions/view.ts'

/** Levels walked up or down from one event: far beyond any real process tree, and cycle-safe. */
export const MAX_DEPTH = 32
/** Descendants returned for one event, or for one timeline page: a bounded answer, never a slow scan. */
export const MAX_NODES = 1000

export const IdParams = Type.Object({
  id: Type.String({ description: 'The event id (UUID). A malformed or unknown id, or another org’s, answers 404.' }),
})

export const SessionIdParams = Type.Object({
  id: Type.String({
    description: 'The session: its UUID or the edge session key. An unknown one, or another org’s, answers 404.',
  }),
})

/** No query parameters: any given one is a 400 naming it. */
export const NoQuery = Type.Object({}, { additionalProperties: false })

export const TimelineQuery = Type.Object({ ...PageQuery.properties }, { additionalProperties: false })

export const ChainNode = Type.Recursive(
  (Self) =>
    Type.Object({
      ...EventView.properties,
      children: Type.Array(Self, { description: 'The events this one caused (parent_id = this id), oldest first.' }),
    }),
  { $id: 'ChainNode', description: 'An event and, nested, every event it caused.' },
)

export const EventChain = Type.Object({
  event: EventView,
  session: Type.Union([SessionView, Type.Null()], { description: 'The session of the event (null when it has none).' }),
  ancestors: Type.Array(EventView, {
    description: `What caused the event, root-most first: the tool call, then the processes, down to its parent (at most ${MAX_DEPTH}).`,
  }),
  effects: Type.Array(ChainNode, {
    description: `What the event caused, as a tree (processes → files, connections, child processes), oldest first.`,
  }),
  truncated: Type.Boolean({ description: `True when the effects were cut at ${MAX_NODES} events or ${MAX_DEPTH} levels.` }),
})

export const SessionTimeline = Type.Object({
  session: SessionView,
  items: Type.Array(ChainNode, {
    description:
      'The session’s events in time order (oldest first) that have no parent in this session (tool calls, unlinked events), each with what it caused nested.',
  }),
  next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last.' }),
  truncated: Type.Boolean({
    description: `True when this page’s nested events were cut at ${MAX_NODES} or ${MAX_DEPTH} levels.`,
  }),
})
