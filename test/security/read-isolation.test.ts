/**
 * Tenant isolation of the read side (issue 9), over every GET route the app registers: org A
 * gets a machine (with its process snapshot and agent graph), sessions with a sub-agent, events,
 * alerts and an alert rule, all through the service's own ingest paths and consumers; org B has
 * nothing. Then, as B's admin:
 * - every GET route with a path id answers 404 problem+json for A's id of the right kind (and for
 *   A's session key where a session id is taken), and for a malformed id;
 * - every GET list or stats route, unfiltered and with each of A's filter values its query
 *   accepts (agent, session, machine, hostname, tool…), returns nothing of A's: no A identifier
 *   anywhere in the body, every count zero.
 * The same requests as A's admin succeed and show A's data, so every check can fail.
 *
 * Routes come from the route registry, so a route added later is covered without editing this
 * file; a GET route with a path id that has no A id of its kind fails the test until it is mapped
 * here (or excluded with its reason).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { evaluateAlerts } from '../../src/features/alerts/consumer.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { applySessions } from '../../src/features/sessions/consumer.ts'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'
import { SseReader } from '../helpers/sse.ts'

/** GET routes with a path id that this suite leaves to another, and why. */
const ELSEWHERE: Record<string, string> = {
  '/keys/public/:org_id': 'public by design: an org’s JWT verification keys',
  '/overrides/:event_id': 'override decisions: the override token’s own event (test/integration/overrides.test.ts)',
  '/v1/machines/:id/policies': 'a machine credential’s own route (test/integration/machines.test.ts)',
  '/v1/machines/:id/stream': 'the machine’s own credential only (test/integration/fleet-stream.test.ts)',
  '/v1/machines/:id/updates': 'the machine’s own credential only (test/integration/fleet-stream.test.ts)',
  '/v1/dead-letters/:id': 'the operator’s dead-letter queue (test/integration/dead-letters.test.ts)',
  '/v1/webhooks/:id/deliveries/:delivery_id': 'webhook deliveries (test/integration/webhook-isolation.test.ts)',
}
/** The read side's list and stats routes (tags of the route registry). */
const READ_TAGS = new Set([
  'events',
  'sessions',
  'agents',
  'machines',
  'alerts',
  'ingest',
  'policies',
  'threat signatures',
  // `GET /v1/overrides/pending` (issue 12): A's requests name A's events.
  'overrides',
])

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg
/** A's ids by kind, for the path ids. */
const ids: Record<string, string[]> = {}
/** A's values for list filters, by query parameter name. */
const filters: Record<string, string> = {}
/** Every identifier of A's data: none may appear in an answer to B. */
let markers: string[] = []

const ROOT = `4242-${Date.now()}`
const SUB = `${ROOT}:sub:1`
const AGENT = `iso-agent-${crypto.randomUUID().slice(0, 8)}`
const HOST = `iso-host-${crypto.randomUUID().slice(0, 8)}.local`
const CLIENT_MACHINE = crypto.randomUUID().replace(/-/g, '')

beforeAll(async () => {
  db = await testDatabase()
  // Webhooks to a local address are refused by default; this suite only needs one to exist.
  t = testApp(db, { WEBHOOK_ALLOW_INSECURE: 'true', WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' })
  a = await createOrg(db.app, 'org A', 'cli')
  b = await createOrg(db.app, 'org B', 'cli')

  const reg = await t.call('POST', '/v1/machines/register', {
    token: a.deploy_token,
    json: { machine_id: CLIENT_MACHINE, hostname: HOST, os: 'darwin', arch: 'arm64', agent_version: '1.0.0' },
  })
  expect(reg.status).toBe(201)
  const machine: string = reg.body.machine_id
  const service: string = reg.body.service_token
  const inventory = [
    [`/v1/machines/${machine}/heartbeat`, { agent_version: '1.0.1', uptime: 3600, active_agents: 1, events_today: 5 }],
    [`/v1/machines/${machine}/agents`, { agents: [{ platform: 'claude-code', pid: 500, state: 'running' }] }],
    [`/v1/machines/${machine}/graphs`, { graphs: [{ id: 'g-iso', root_agent_id: AGENT, status: 'running', nodes: {} }] }],
  ] as const
  for (const [path, json] of inventory) expect((await t.call('POST', path, { token: service, json })).status).toBeLessThan(300)

  // A tool call, the process it ran and that process reading a credential, then a sub-agent.
  const events = [
    v2Event({ session_id: ROOT, agent_id: AGENT, tool_name: 'Bash', labels: { tool_use_id: 'toolu_iso', process_pid: '500' } }),
    v2Event({
      session_id: ROOT,
      agent_id: AGENT,
      action_type: 'PROCESS_EXEC',
      tool_name: undefined,
      arguments_json: undefined,
      labels: { pid: '600', ppid: '500', tool_use_id: 'toolu_iso' },
    }),
    v2Event({
      session_id: ROOT,
      agent_id: AGENT,
      tool_name: 'Read',
      arguments_json: JSON.stringify({ file_path: '/Users/al/.aws/credentials' }),
      risk_score: 85,
    }),
    v2Event({ session_id: SUB, agent_id: AGENT, tool_name: 'Bash', arguments_json: '{"command":"rm -rf /"}', decision: 'block' }),
  ]
  const sent = await t.call('POST', '/v1/ingest', { token: service, json: { events } })
  expect(sent.status).toBe(200)
  await drainOnce(db.app, 'pipeline', storeEvents)
  await drainOnce(db.app, 'sessions', applySessions)
  await drainOnce(db.app, 'alerts', evaluateAlerts)
  const rule = await t.call('POST', '/v1/alert-rules', {
    token: a.admin_key,
    json: { name: 'any curl', severity: 'low', condition: { field: 'tool_name', op: 'eq', value: 'curl' } },
  })
  expect(rule.status).toBe(201)
  const hook = await t.call('POST', '/v1/webhooks', { token: a.admin_key, json: { url: 'http://127.0.0.1:9/hook' } })
  expect(hook.status).toBe(201)
  const policy = await t.call('POST', '/v1/policies', {
    token: a.admin_key,
    json: {
      name: 'iso policy',
      rules: [{ tool: 'Bash', action: 'block', conditions: ['rm -rf'] }],
      scope: { machine_ids: [machine] },
    },
  })
  expect(policy.status).toBe(201)

  // A's rows, read as the owner: what the API must never show B.
  const col = async (q: Promise<{ v: string }[]>) => (await q).map((r) => r.v)
  ids.events = await col(db.owner`select id::text as v from actions where org_id = ${a.org_id} order by occurred_at`)
  ids.sessions = [
    ...(await col(db.owner`select id::text as v from sessions where org_id = ${a.org_id} order by session_key`)),
    ROOT,
    SUB,
  ]
  ids.alerts = await col(db.owner`select id::text as v from alerts where org_id = ${a.org_id}`)
  ids.agents = [AGENT]
  ids.machines = [machine]
  ids['alert-rules'] = [rule.body.id]
  ids.webhooks = [hook.body.id]
  ids.policies = [policy.body.id]
  const signature = await t.call('POST', '/v1/threat-signatures', {
    token: a.admin_key,
    json: { name: 'iso sig', kind: 'domain', value: 'iso-exfil.example', action: 'block', severity: 'high' },
  })
  expect(signature.status).toBe(201)
  ids['threat-signatures'] = [signature.body.id]
  expect(ids.events).toHaveLength(4)
  expect(ids.sessions).toHaveLength(4)
  expect(ids.alerts.length).toBeGreaterThan(0)
  Object.assign(filters, {
    agent_id: AGENT,
    session_id: ROOT,
    session_key: ROOT,
    machine_id: machine,
    hostname: HOST,
    client_machine_id: CLIENT_MACHINE,
    tool_name: 'Read',
    rule_key: 'builtin:credential_read',
  })
  const eventKeys = await col(db.owner`select event_id as v from actions where org_id = ${a.org_id}`)
  // An approval waiting on A's blocked event (an override token minted for it).
  const asked = await t.call('POST', '/tokens/override', { token: a.admin_key, json: { event_id: eventKeys[0], reason: 'iso' } })
  expect(asked.status).toBe(201)
  ids.overrides = [asked.body.jti]
  markers = [...Object.values(ids).flat(), ...eventKeys, HOST, CLIENT_MACHINE, AGENT, ROOT]
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

const getRoutes = () => t.routes.specs.filter((s) => s.method === 'get')
const paramNames = (path: string) => [...path.matchAll(/:(\w+)/g)].map((m) => m[1]!)
const kindOf = (path: string) => /^\/v1\/([\w-]+)\//.exec(path)?.[1] ?? ''

/** `path` with every `:param` set to `value`. */
const fill = (path: string, value: string) => path.replace(/:\w+/g, encodeURIComponent(value))

function expectProblem(res: Awaited<ReturnType<typeof t.call>>, status: number, what: string) {
  expect({ what, status: res.status, type: res.headers.get('content-type') }).toEqual({
    what,
    status,
    type: 'application/problem+json',
  })
}

/** Every number in a JSON value. */
const numbers = (v: unknown): number[] =>
  typeof v === 'number' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(numbers) : []

describe('org B cannot reach org A’s data through any read route (issue 9)', () => {
  test('every GET route with a path id answers 404 to B for A’s ids, and 200 to A', async () => {
    const routes = getRoutes().filter((s) => paramNames(s.path).length > 0 && !(s.path in ELSEWHERE))
    expect(routes.map((s) => s.path)).toContain('/v1/events/:id/chain')
    const unmapped = routes.filter((s) => !ids[kindOf(s.path)]).map((s) => s.path)
    expect(unmapped).toEqual([])
    let checked = 0
    for (const s of routes) {
      for (const id of ids[kindOf(s.path)]!) {
        const path = fill(s.path, id)
        expectProblem(await t.call('GET', path, { token: b.admin_key }), 404, `B: GET ${path}`)
        const own = await t.call('GET', path, { token: a.admin_key })
        expect({ path, status: own.status }).toEqual({ path, status: 200 })
        checked++
      }
      // A malformed id answers as an unknown one does, to either org (issue 9).
      for (const token of [a.admin_key, b.admin_key]) {
        expectProblem(await t.call('GET', fill(s.path, 'not-an-id'), { token }), 404, `GET ${fill(s.path, 'not-an-id')}`)
      }
    }
    expect(checked).toBeGreaterThan(20)
  })

  test('every read list and stats route, with each of A’s filter values, shows B nothing of A’s', async () => {
    const routes = getRoutes().filter((s) => paramNames(s.path).length === 0 && s.tags.some((tag) => READ_TAGS.has(tag)))
    expect(routes.map((s) => s.path)).toEqual(
      expect.arrayContaining(['/v1/events', '/v1/events/stats', '/v1/sessions', '/v1/agents', '/v1/machines', '/v1/alerts']),
    )
    let filtered = 0
    for (const s of routes) {
      const accepted = Object.keys((s.query as { properties?: Record<string, unknown> } | undefined)?.properties ?? {})
      const queries = [{}, ...accepted.filter((k) => k in filters).map((k) => ({ [k]: filters[k]! }))]
      for (const q of queries) {
        const path = `${s.path}?${new URLSearchParams(q)}`
        const theirs = await t.call('GET', path, { token: b.admin_key })
        expect({ path, status: theirs.status }).toEqual({ path, status: 200 })
        expect({ path, leaked: markers.filter((m) => theirs.text.includes(m)) }).toEqual({ path, leaked: [] })
        expect({ path, counts: numbers(theirs.body).filter((n) => n !== 0) }).toEqual({ path, counts: [] })
        // The same request shows A its own data: the filter value is real, the check can fail.
        const own = await t.call('GET', path, { token: a.admin_key })
        expect({ path, status: own.status }).toEqual({ path, status: 200 })
        expect({ path, shows: markers.some((m) => own.text.includes(m)) }).toEqual({ path, shows: true })
        if (Object.keys(q).length > 0) filtered++
      }
    }
    expect(filtered).toBeGreaterThan(10)
  })

  test('the live stream (issue 12): B’s console hears nothing of what A stores, raises, triages, changes or asks', async () => {
    const open = async (token: string) => {
      const res = await t.app.fetch(new Request('http://test/v1/live', { headers: { authorization: `Bearer ${token}` } }))
      expect(res.status).toBe(200)
      const reader = new SseReader(res)
      await reader.next((e) => e.event === 'ready')
      return { reader, res }
    }
    const theirs = await open(b.admin_key)
    const own = await open(a.admin_key)
    const sent = v2Event({ session_id: ROOT, agent_id: AGENT, arguments_json: '{"command":"rm -rf /"}', risk_score: 99 })
    const machineId = (await db.owner<{ id: string }[]>`select id from machines where org_id = ${a.org_id}`)[0]!.id
    expect((await t.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events: [sent] } })).status).toBe(200)
    await drainOnce(db.app, 'pipeline', storeEvents)
    await drainOnce(db.app, 'alerts', evaluateAlerts)
    // In-process consumers ring nothing: the ring their thread's parent would send.
    t.live.ring([a.org_id])
    const alert = await own.reader.next((e) => e.event === 'alert' && e.data.context.event_id === sent.event_id)
    await own.reader.next((e) => e.event === 'event' && e.data.event_id === sent.event_id)
    expect(
      (await t.call('PATCH', `/v1/alerts/${alert.data.id}`, { token: a.admin_key, json: { status: 'resolved' } })).status,
    ).toBe(200)
    await own.reader.next((e) => e.event === 'alert' && e.data.status === 'resolved')
    expect((await t.call('PATCH', `/v1/machines/${machineId}`, { token: a.admin_key, json: { tags: ['iso'] } })).status).toBe(200)
    await own.reader.next((e) => e.event === 'fleet' && e.data.kind === 'machine')
    const asked = await t.call('POST', '/tokens/override', { token: a.admin_key, json: { event_id: sent.event_id } })
    expect(asked.status).toBe(201)
    await own.reader.next((e) => e.event === 'approval' && e.data.state === 'pending' && e.data.override_jti === asked.body.jti)
    const decided = await t.call('POST', `/overrides/${sent.event_id}/decide`, {
      token: asked.body.token,
      json: { decision: 'approve' },
    })
    expect(decided.status).toBe(200)
    await own.reader.next((e) => e.event === 'approval' && e.data.state === 'decided' && e.data.override_jti === asked.body.jti)
    await Bun.sleep(300)
    expect(theirs.reader.events.filter((e) => e.event !== 'ready')).toEqual([])
    const text = JSON.stringify(theirs.reader.events)
    expect({ leaked: [...markers, sent.event_id].filter((m) => text.includes(m)) }).toEqual({ leaked: [] })
    await theirs.res.body?.cancel().catch(() => {})
    await own.res.body?.cancel().catch(() => {})
  })
})
