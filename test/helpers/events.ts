import type { WireEvent } from '../../src/bus/bus.ts'
import { normalizeDaemonEvent, normalizeIngestItem, type ItemResult } from '../../src/features/ingest/events.ts'
/** A schema-v2 event (SPEC §8.2) with a fresh id, for tests that ingest; `over` replaces fields. */
export const v2Event = (over: Record<string, unknown> = {}) => ({
  schema_version: 2,
  event_id: crypto.randomUUID(),
  timestamp: new Date().toISOString(),
  source: 'proxy',
  platform: 'claude-code',
  action_type: 'tools/call',
  session_id: 's-1',
  agent_id: 'agent-1',
  tool_name: 'Bash',
  arguments_json: '{"command":"ls"}',
  decision: 'allow',
  labels: { process_name: 'claude' },
  ...over,
})

/** The bus form of a normalised item (throws on a rejected one): what the consumers see. */
export function wireOf(r: ItemResult): WireEvent {
  if (!r.ok) throw new Error(`rejected: ${r.path} ${r.reason}`)
  return { ...r.event, occurredAt: r.event.occurredAt.toISOString() }
}

/** Bus events as each input shape is normalised by ingest, for the consumers' unit tests. */
export const wireEvents = {
  v2: (over: Record<string, unknown> = {}) =>
    wireOf(
      normalizeIngestItem(
        {
          schema_version: 2,
          event_id: crypto.randomUUID(),
          action_type: 'tools/call',
          session_id: 's',
          decision: 'allow',
          ...over,
        },
        '',
        Date.now(),
      ),
    ),
  api: (over: Record<string, unknown>) => wireOf(normalizeIngestItem({ session_id: 's', ...over }, '', Date.now())),
  daemon: (over: Record<string, unknown>) =>
    wireOf(
      normalizeDaemonEvent(
        { event_id: 'tool-1', agent: 'claude', blocked: false, ...over },
        '',
        Date.now(),
        '11111111-2222-3333-4444-555555555555',
      ),
    ),
}
