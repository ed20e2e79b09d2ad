import { describe, expect, test } from 'bun:test'
import { CLOCK_WINDOW, normalizeDaemonEvent, normalizeIngestItem, REJECT_CODES, type ItemResult } from './events.ts'

const NOW = Date.parse('2026-11-22T12:00:00.000Z')
const v2 = (over: Record<string, unknown> = {}) => ({
  schema_version: 2,
  event_id: '3f2b8c1e-6a4d-4e8f-9b1a-2c3d4e5f6a7b',
  timestamp: '2026-11-22T11:59:30.138Z',
  source: 'proxy',
  platform: 'claude-code',
  action_type: 'tools/call',
  session_id: '59247-1777085379101',
  agent_id: 'ne-pid-59247',
  tool_name: 'Bash',
  arguments_json: '{"command":"ls -la"}',
  decision: 'allow',
  labels: { process_name: 'claude', process_pid: '59247' },
  ...over,
})

function ok(r: ItemResult) {
  if (!r.ok) throw new Error(`rejected at ${r.path}: ${r.reason}`)
  return r.event
}
function rejected(r: ItemResult) {
  if (r.ok) throw new Error('accepted')
  return r
}

describe('schema v2 items', () => {
  test('map every documented field; the key is the lower-cased event id', () => {
    const e = ok(normalizeIngestItem(v2({ event_id: '3F2B8C1E-6A4D-4E8F-9B1A-2C3D4E5F6A7B' }), '/events/0', NOW))
    expect(e).toMatchObject({
      eventKey: 'e:3f2b8c1e-6a4d-4e8f-9b1a-2c3d4e5f6a7b',
      schemaVersion: 2,
      sessionKey: '59247-1777085379101',
      agentKey: 'ne-pid-59247',
      toolName: 'Bash',
      arguments: { command: 'ls -la' },
      decision: 'allow',
      blocked: false,
      labels: { process_name: 'claude', process_pid: '59247' },
      clientTimestamp: null,
      redactions: 0,
    })
    expect(e.occurredAt.toISOString()).toBe('2026-11-22T11:59:30.138Z')
  })

  test('unknown fields are kept, not dropped', () => {
    const e = ok(normalizeIngestItem(v2({ parent_session_id: 'p-1', capability: ['data:read'], nested: { a: 1 } }), '', NOW))
    expect(e.extra).toEqual({ parent_session_id: 'p-1', capability: ['data:read'], nested: { a: 1 } })
  })

  test.each([
    [{ event_id: undefined }, '/events/3/event_id', 'required'],
    [{ event_id: 42 }, '/events/3/event_id', 'string'],
    [{ event_id: 'a\u0000b' }, '/events/3/event_id', 'control'],
    [{ event_id: 'abc\uD800' }, '/events/3/event_id', 'surrogate'],
    [{ session_id: 'x'.repeat(300) }, '/events/3/session_id', '256'],
    [{ timestamp: 'yesterday' }, '/events/3/timestamp', 'RFC 3339'],
    [{ timestamp: 1732276800 }, '/events/3/timestamp', 'RFC 3339'],
    [{ timestamp: '99999-01-01T00:00:00Z' }, '/events/3/timestamp', 'RFC 3339'],
    [{ timestamp: '2026-02-31T00:00:00Z' }, '/events/3/timestamp', 'RFC 3339'],
    [{ risk_score: 101 }, '/events/3/risk_score', '0 to 100'],
    [{ risk_score: '80' }, '/events/3/risk_score', '0 to 100'],
    [{ labels: { pid: 123 } }, '/events/3/labels/pid', 'strings'],
    [{ labels: ['a'] }, '/events/3/labels', 'object'],
    [{ schema_version: 3 }, '/events/3/schema_version', 'unsupported'],
    [{ tool_name: { name: 'x' } }, '/events/3/tool_name', 'string'],
  ])('%j is rejected at its path', (over, path, reason) => {
    const r = rejected(normalizeIngestItem(v2(over), '/events/3', NOW))
    expect(r.path).toBe(path)
    expect(r.reason).toContain(reason)
  })

  test('non-objects are rejected', () => {
    for (const raw of [null, 1, 'x', [v2()]]) expect(rejected(normalizeIngestItem(raw, '/events/0', NOW)).path).toBe('/events/0')
  })

  test('NUL and lone surrogates in content are replaced and counted, never stored raw', () => {
    const e = ok(
      normalizeIngestItem(
        v2({ arguments_json: '{"cmd":"a\\u0000b","k\\u0000":"\\ud800x"}', labels: { l: 'x\u0000' }, note: 'y\uDC00' }),
        '',
        NOW,
      ),
    )
    expect(JSON.stringify(e)).not.toMatch(/\\u0000|\\ud800|\\udc00/i)
    expect(e.arguments).toEqual({ cmd: 'a\uFFFDb', 'k\uFFFD': '\uFFFDx' })
    expect(e.labels).toEqual({ l: 'x\uFFFD' })
    expect(e.extra).toEqual({ note: 'y\uFFFD' })
    expect(e.replacedChars).toBe(5)
  })

  test('a valid surrogate pair (emoji) is kept', () => {
    expect(ok(normalizeIngestItem(v2({ labels: { mood: '🚀' } }), '', NOW)).labels).toEqual({ mood: '🚀' })
  })

  test('absurd but well-formed timestamps are clamped to the window and the original kept', () => {
    const past = ok(normalizeIngestItem(v2({ timestamp: '1970-01-01T00:00:00Z' }), '', NOW))
    expect(past.occurredAt.getTime()).toBe(NOW - CLOCK_WINDOW.pastMs)
    expect(past.clientTimestamp).toBe('1970-01-01T00:00:00Z')
    const future = ok(normalizeIngestItem(v2({ timestamp: '2099-01-01T00:00:00+02:00' }), '', NOW))
    expect(future.occurredAt.getTime()).toBe(NOW + CLOCK_WINDOW.futureMs)
    const missing = ok(normalizeIngestItem(v2({ timestamp: undefined }), '', NOW))
    expect(missing.occurredAt.getTime()).toBe(NOW)
  })

  test('secrets in arguments, labels and unknown fields are redacted and counted', () => {
    const e = ok(
      normalizeIngestItem(
        v2({
          arguments_json: JSON.stringify({ command: 'aws configure set aws_access_key_id AKIAIOSFODNN7EXAMPLE' }),
          labels: { env: 'DATABASE_URL=postgres://app:s3cret@db/x' },
          debug: 'token qt_deploy_9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c',
        }),
        '',
        NOW,
      ),
    )
    const stored = JSON.stringify(e)
    for (const secret of ['AKIAIOSFODNN7EXAMPLE', 's3cret', '9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c'])
      expect(stored).not.toContain(secret)
    expect(e.redactions).toBe(3)
  })

  test('__proto__ in content stays data', () => {
    const e = ok(normalizeIngestItem(JSON.parse('{"schema_version":2,"event_id":"x1","__proto__":{"polluted":true}}'), '', NOW))
    expect(Object.keys(e.extra)).toEqual(['__proto__'])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  test('deep nesting is measured before any recursive walk: 100,000 levels, no id, rejected with its path (issue 14)', () => {
    let deep: unknown = []
    for (let i = 0; i < 100_000; i++) deep = [deep]
    // An API item without an id: its dedupe hash (a JSON.stringify) used to overflow the stack here.
    const r = rejected(normalizeIngestItem({ action_type: 'tools/call', parameters: deep }, '/events/4', NOW))
    expect(r).toMatchObject({ path: `/events/4/parameters${'/0'.repeat(31)}`, code: 'too_deep' })
    const daemon = rejected(normalizeDaemonEvent({ event_id: 'e', action: 'tool:x', deep }, '/events/0', NOW, 'm'))
    expect(daemon).toMatchObject({ path: `/events/0/deep${'/0'.repeat(31)}`, code: 'too_deep' })
  })

  test('JSON text inside arguments_json is measured before it is parsed', () => {
    const text = `${'['.repeat(200_000)}${']'.repeat(200_000)}`
    const r = rejected(normalizeIngestItem(v2({ arguments_json: text }), '/events/2', NOW))
    expect(r).toMatchObject({ path: `/events/2/arguments_json${'/0'.repeat(32)}`, code: 'too_deep' })
    const wide = rejected(normalizeIngestItem(v2({ arguments_json: `[${'0,'.repeat(60_000)}0]` }), '/events/2', NOW))
    expect(wide).toMatchObject({ path: '/events/2/arguments_json', code: 'too_many_values' })
  })

  test('every rejection carries a code from the fixed set', () => {
    for (const [over, code] of [
      [{ event_id: undefined }, 'missing_field'],
      [{ timestamp: 'x' }, 'invalid_timestamp'],
      [{ risk_score: 101 }, 'invalid_risk_score'],
      [{ schema_version: 3 }, 'unsupported_schema_version'],
      [{ tool_name: 1 }, 'wrong_type'],
      [{ session_id: 'x'.repeat(300) }, 'too_long'],
      [{ event_id: 'a\u0000' }, 'invalid_characters'],
    ] as const) {
      const r = rejected(normalizeIngestItem(v2(over), '', NOW))
      expect(REJECT_CODES).toContain(r.code)
      expect(r.code).toBe(code)
    }
  })

  test('deep nesting and oversized content are rejected, not truncated', () => {
    let deep: unknown = 'x'
    for (let i = 0; i < 40; i++) deep = { d: deep }
    expect(rejected(normalizeIngestItem(v2({ deep }), '/events/1', NOW)).reason).toContain('nested')
    const big = rejected(
      normalizeIngestItem(v2({ arguments_json: JSON.stringify({ a: 'x'.repeat(1_100_000) }) }), '/events/1', NOW),
    )
    expect(big.reason).toContain('exceeds')
  })
})

describe('API-reference items', () => {
  const api = {
    action_type: 'PROCESS_EXEC',
    tool_name: 'git',
    arguments: ['commit', '-m', 'wip'],
    session_id: 's',
    agent_id: 'a',
    timestamp: '2026-11-22T11:00:00Z',
  }

  test('without an id, the key is a content hash: an identical retry is the same event', () => {
    const a = ok(normalizeIngestItem(api, '', NOW))
    const b = ok(normalizeIngestItem({ ...api }, '', NOW))
    const c = ok(normalizeIngestItem({ ...api, arguments: ['push'] }, '', NOW))
    expect(a.eventKey).toMatch(/^h:[0-9a-f]{64}$/)
    expect(a.eventKey).toBe(b.eventKey)
    expect(c.eventKey).not.toBe(a.eventKey)
    expect(a.arguments).toEqual(['commit', '-m', 'wip'])
    expect(a.schemaVersion).toBeNull()
  })

  test('an `id` is used as the event id', () => {
    expect(ok(normalizeIngestItem({ ...api, id: 'evt-1' }, '', NOW)).eventKey).toBe('e:evt-1')
  })

  test('arguments must be strings', () => {
    expect(rejected(normalizeIngestItem({ ...api, arguments: ['ok', 3] }, '/events/0', NOW)).path).toBe('/events/0/arguments/1')
  })
})

describe('daemon events (POST /v1/machines/{id}/events)', () => {
  const daemon = {
    event_id: 'tool-1763812800000',
    action: 'tool:Bash',
    agent: 'claude',
    timestamp: '2026-11-22T11:59:00Z',
    risk_score: 85,
    blocked: true,
    metadata: { args: '{"command":"rm -rf /"}', result: 'ok', platform: 'claude-code', process_pid: '123' },
  }
  const M = '11111111-2222-3333-4444-555555555555'

  test('maps the daemon shape', () => {
    const e = ok(normalizeDaemonEvent(daemon, '/events/0', NOW, M))
    expect(e).toMatchObject({
      action: 'tool:Bash',
      toolName: 'Bash',
      actionType: 'tools/call',
      agentKey: 'claude',
      blocked: true,
      decision: 'block',
      riskScore: 85,
      platform: 'claude-code',
      arguments: { command: 'rm -rf /' },
      labels: { result: 'ok', platform: 'claude-code', process_pid: '123' },
      source: 'daemon',
    })
  })

  test('the key separates events that share the non-unique daemon id', () => {
    const a = ok(normalizeDaemonEvent(daemon, '', NOW, M))
    const same = ok(normalizeDaemonEvent({ ...daemon }, '', NOW, M))
    const otherAction = ok(normalizeDaemonEvent({ ...daemon, action: 'http:api.github.com:get.repos' }, '', NOW, M))
    const otherMachine = ok(normalizeDaemonEvent(daemon, '', NOW, '99999999-2222-3333-4444-555555555555'))
    expect(a.eventKey).toBe(same.eventKey)
    expect(new Set([a.eventKey, otherAction.eventKey, otherMachine.eventKey]).size).toBe(3)
  })

  test.each([
    [{ action: undefined }, '/events/2/action'],
    [{ blocked: 'yes' }, '/events/2/blocked'],
    [{ metadata: { pid: 1 } }, '/events/2/metadata/pid'],
    [{ event_id: '' }, '/events/2/event_id'],
  ])('%j is rejected', (over, path) => {
    expect(rejected(normalizeDaemonEvent({ ...daemon, ...over }, '/events/2', NOW, M)).path).toBe(path)
  })

  test('an empty agent is allowed (SPEC §8.1) and stored as no agent', () => {
    expect(ok(normalizeDaemonEvent({ ...daemon, agent: '' }, '', NOW, M)).agentKey).toBeNull()
  })
})
