/**
 * @module features/fleet/schema
 * The fleet stream's and the fleet updates route's wire shapes (docs/fleet-stream.md).
 */
import { Type } from '@sinclair/typebox'

export const LastEventQuery = Type.Object({
  last_event_id: Type.Optional(
    Type.String({
      pattern: '^[0-9]{1,15}$',
      description:
        'Resume after this event (the `id:` of the last event received). The `Last-Event-ID` header, which browsers and SSE clients send on reconnect, takes precedence.',
    }),
  ),
})

export const UpdatesQuery = Type.Object({
  after: Type.Optional(
    Type.String({
      pattern: '^[0-9]{1,15}$',
      description: 'The `last_event_id` of the previous answer; absent: 0 (everything kept).',
    }),
  ),
})

const MachineConfig = {
  policy_hash: Type.String({ description: 'The ETag of `GET /v1/machines/{id}/policies` now' }),
  config_version: Type.String(),
  domains: Type.Array(Type.String(), { description: 'Hosts to route through the proxy (as in the heartbeat)' }),
}

export const FleetUpdate = Type.Object({
  id: Type.Integer({ description: 'Sequence number in the org log (the SSE `id:`)' }),
  event: Type.Union([Type.Literal('signature'), Type.Literal('override'), Type.Literal('policy')]),
  data: Type.Record(Type.String(), Type.Unknown()),
})

export const FleetUpdates = Type.Object({
  machine_id: Type.String(),
  ...MachineConfig,
  updates: Type.Array(FleetUpdate, {
    description: 'Signature and override events for this machine after `after`, oldest first (at most 500)',
  }),
  last_event_id: Type.Integer({ description: 'Pass as `after` next time' }),
  has_more: Type.Boolean(),
  gap: Type.Boolean({ description: 'True when events after `after` were pruned (kept 7 days): re-read what you need' }),
})
