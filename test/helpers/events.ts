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
