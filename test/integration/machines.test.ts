/**
 * The daemon ("machines") API against Postgres, with the status codes the public Gen-B daemon
 * accepts (SPEC §7.1, §17): idempotent registration and the service-token exchange, heartbeat
 * policy_hash equal to the policies ETag (304 on match), events through the ingest path (stored
 * once, with the machine), process snapshot replace, graph upserts 201/200, bad input → 4xx,
 * and another org's machines always 404.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { withOrg } from '../../src/infra/db.ts'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg
/** Org A's machine, registered with the org's deploy token. */
let machine: string
let service: string

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
  const r = await register(a.deploy_token, { machine_id: 'f'.repeat(32) })
  machine = r.body.machine_id
  service = r.body.service_token
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

const host = (over: Record<string, unknown> = {}) => ({
  machine_id: crypto.randomUUID().replace(/-/g, ''),
  hostname: 'mbp.local',
  os: 'darwin',
  arch: 'arm64',
  agent_version: '0.10.0',
  ...over,
})
const register = (token: string, over: Record<string, unknown> = {}) =>
  t.call('POST', '/v1/machines/register', { token, json: host(over) })
const post = (token: string, path: string, json: unknown) => t.call('POST', path, { token, json })
const hb = (
  token: string,
  id: string,
  json: unknown = { agent_version: '0.10.1', uptime: 3600, active_agents: 0, events_today: 12 },
) => post(token, `/v1/machines/${id}/heartbeat`, json)
const pipeline = () => drainOnce(db.app, 'pipeline', storeEvents)

function expectProblem(res: Awaited<ReturnType<typeof t.call>>, status: number) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toContain('application/problem+json')
  expect(res.body.status).toBe(status)
}

describe('POST /v1/machines/register', () => {
  test('first registration 201, the same host again 200 with the same cloud id; details and extra fields kept', async () => {
    const h = host({ mac_hash: 'ab12', labels: { team: 'x\u0000y' } })
    const first = await post(a.deploy_token, '/v1/machines/register', h)
    expect(first.status).toBe(201)
    expect(first.body.machine_id).toMatch(/^[0-9a-f-]{36}$/)
    expect(first.body.id).toBe(first.body.machine_id)
    expect(first.body.org_id).toBe(a.org_id)
    const again = await post(a.deploy_token, '/v1/machines/register', { ...h, agent_version: '0.11.0' })
    expect(again.status).toBe(200)
    expect(again.body.machine_id).toBe(first.body.machine_id)
    const [row] = await db.owner`
      select client_machine_id, hostname, os, arch, agent_version, metadata, org_id, last_seen_at is not null as seen
        from machines where id = ${first.body.machine_id}`
    expect(row).toMatchObject({
      client_machine_id: h.machine_id,
      hostname: 'mbp.local',
      os: 'darwin',
      arch: 'arm64',
      agent_version: '0.11.0',
      metadata: { mac_hash: 'ab12', labels: { team: 'x\uFFFDy' } },
      org_id: a.org_id,
      seen: true,
    })
  })

  test('an install token is exchanged for a machine-bound service token; re-registering rotates it, the install token stays valid', async () => {
    const h = host()
    const first = await post(a.deploy_token, '/v1/machines/register', h)
    expect(first.body.service_token).toMatch(/^qt_sk_[0-9a-f]{64}$/)
    const [tok] = await db.owner`
      select kind, scopes, machine_id, revoked_at from api_tokens where org_id = ${a.org_id} and machine_id = ${first.body.machine_id}`
    expect(tok).toMatchObject({
      kind: 'service',
      scopes: ['ingest'], // a machine sends events; it never reads the org's data (issue 9)
      machine_id: first.body.machine_id,
      revoked_at: null,
    })
    expect((await hb(first.body.service_token, first.body.machine_id)).status).toBe(200)

    const second = await post(a.deploy_token, '/v1/machines/register', h)
    expect(second.status).toBe(200)
    expect(second.body.service_token).toMatch(/^qt_sk_/)
    expect(second.body.service_token).not.toBe(first.body.service_token)
    expectProblem(await hb(first.body.service_token, first.body.machine_id), 401) // rotated out
    expect((await hb(second.body.service_token, first.body.machine_id)).status).toBe(200)
    const [live] = await db.owner<{ n: number }[]>`
      select count(*)::int as n from api_tokens where machine_id = ${first.body.machine_id} and revoked_at is null`
    expect(live!.n).toBe(1)
    expect((await hb(a.deploy_token, first.body.machine_id)).status).toBe(200) // never single-use
  })

  test('a service token works on every endpoint of its machine, re-registers it without a new token, and nothing else', async () => {
    expect((await hb(service, machine)).status).toBe(200)
    expect((await t.call('GET', `/v1/machines/${machine}/policies`, { token: service })).status).toBe(200)
    expect((await post(service, `/v1/machines/${machine}/events`, { events: [] })).status).toBe(200)
    expect((await post(service, `/v1/machines/${machine}/agents`, { agents: [] })).status).toBe(200)
    expect((await post(service, `/v1/machines/${machine}/graphs`, { graphs: [] })).status).toBe(200)
    const again = await register(service, { machine_id: 'f'.repeat(32) })
    expect(again.status).toBe(200)
    expect(again.body.machine_id).toBe(machine)
    expect(again.body).not.toHaveProperty('service_token')
    // Another machine of the same org: invisible to this token, and it cannot register one.
    const other = await register(a.deploy_token)
    expectProblem(await hb(service, other.body.machine_id), 404)
    expectProblem(await register(service), 403)
  })

  test('revoking the deploy token refuses new registrations; machines enrolled with it keep their service tokens', async () => {
    const created = await post(a.admin_key, '/v1/deploy-tokens', { name: 'laptops' })
    expect(created.status).toBe(201)
    const enrolled = await register(created.body.token)
    expect(enrolled.status).toBe(201)
    expect((await t.call('DELETE', `/v1/deploy-tokens/${created.body.id}`, { token: a.admin_key })).status).toBe(204)
    const refused = await register(created.body.token)
    expectProblem(refused, 403)
    expect(refused.body.code).toBe('token_retired')
    expect((await hb(enrolled.body.service_token, enrolled.body.machine_id)).status).toBe(200)
  })

  test('concurrent registrations of one host: one 201, one machine, exactly one live service token', async () => {
    const h = host()
    const all = await Promise.all(Array.from({ length: 6 }, () => post(a.deploy_token, '/v1/machines/register', h)))
    expect(all.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 201])
    expect(new Set(all.map((r) => r.body.machine_id)).size).toBe(1)
    const [live] = await db.owner<{ n: number }[]>`
      select count(*)::int as n from api_tokens where machine_id = ${all[0]!.body.machine_id} and revoked_at is null`
    expect(live!.n).toBe(1)
  })

  test('no credential → 401; bad bodies → 4xx problem, never 500', async () => {
    expectProblem(await t.call('POST', '/v1/machines/register', { json: host() }), 401)
    for (const over of [
      { machine_id: 'nul\u0000id' },
      { machine_id: '' },
      { machine_id: 'x'.repeat(129) },
      { machine_id: 42 },
      { machine_id: undefined },
      { hostname: 'a\u0007b' },
      { os: 'x'.repeat(65) },
      { agent_version: '\ud800' },
    ]) {
      expectProblem(await register(a.deploy_token, over), 422)
    }
    expectProblem(await post(a.deploy_token, '/v1/machines/register', [host()]), 422)
    expectProblem(
      await t.call('POST', '/v1/machines/register', {
        token: a.deploy_token,
        body: '{"machine_id":',
        headers: { 'content-type': 'application/json' },
      }),
      400,
    )
    expectProblem(
      await t.call('POST', '/v1/machines/register', {
        token: a.deploy_token,
        body: 'x',
        headers: { 'content-type': 'text/plain' },
      }),
      415,
    )
    expectProblem(await register(a.deploy_token, { padding: 'x'.repeat(70_000) }), 413)
    expectProblem(await register(a.deploy_token, { deep: JSON.parse('['.repeat(80) + ']'.repeat(80)) }), 422)
  })
})

describe('heartbeat and policies', () => {
  const policies = (token: string, id: string, headers: Record<string, string> = {}) =>
    t.call('GET', `/v1/machines/${id}/policies`, { token, headers })

  test('heartbeat updates the machine and answers 200 with policy_hash', async () => {
    const res = await hb(a.deploy_token, machine, { agent_version: '0.10.7', uptime: 3600.9, active_agents: 0, events_today: 3 })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ config_version: expect.any(String), policy_hash: expect.any(String), domains: [] })
    expect(res.body.policy_hash).not.toBe('')
    const [row] =
      await db.owner`select agent_version, uptime_seconds::int as up, last_seen_at > now() - interval '1 minute' as fresh from machines where id = ${machine}`
    expect(row).toEqual({ agent_version: '0.10.7', up: 3600, fresh: true })
    expect((await hb(a.deploy_token, machine, {})).status).toBe(200) // every field optional
    expect((await hb(a.deploy_token, machine.toUpperCase())).status).toBe(200)
  })

  test('policies: bare array of enabled ones, priority descending, RFC 3339; ETag = policy_hash; 304 on If-None-Match', async () => {
    const empty = await policies(a.deploy_token, machine)
    expect(empty.status).toBe(200)
    expect(empty.body).toEqual([])
    await withOrg(db.app, a.org_id, async (tx) => {
      await tx`insert into enforcement_policies (org_id, name, priority, rules, created_at, updated_at) values
        (app_current_org(), 'low', 10, ${tx.json([{ tool: '*', agent: '*', action: 'flag', conditions: [] }])}, '2026-03-09T00:00:00Z', '2026-03-09T00:00:00Z'),
        (app_current_org(), 'high', 100, ${tx.json([{ tool: 'Bash', agent: '*', action: 'block', conditions: ['rm -rf'] }])}, now(), now())`
      await tx`insert into enforcement_policies (org_id, name, enabled, priority) values (app_current_org(), 'off', false, 1000)`
    })
    const res = await policies(a.deploy_token, machine)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('application/json')
    expect(res.body.map((p: { name: string }) => p.name)).toEqual(['high', 'low'])
    expect(res.body[1]).toEqual({
      id: expect.any(String),
      org_id: a.org_id,
      name: 'low',
      description: '',
      enabled: true,
      priority: 10,
      rules: [{ tool: '*', agent: '*', action: 'flag', conditions: [] }],
      created_at: '2026-03-09T00:00:00.000Z',
      updated_at: '2026-03-09T00:00:00.000Z',
    })
    const etag = res.headers.get('etag')!
    expect(etag).toMatch(/^[0-9a-f]{64}$/) // unquoted
    expect(etag).not.toBe(empty.headers.get('etag'))
    expect((await hb(a.deploy_token, machine)).body.policy_hash).toBe(etag)
    const same = await policies(a.deploy_token, machine, { 'if-none-match': etag })
    expect(same.status).toBe(304)
    expect(same.text).toBe('')
    expect(same.headers.get('etag')).toBe(etag)
    expect((await policies(a.deploy_token, machine, { 'if-none-match': `W/"${etag}"` })).status).toBe(304)
    expect((await policies(a.deploy_token, machine, { 'if-none-match': empty.headers.get('etag')! })).status).toBe(200)
    // Stable: the same content hashes the same.
    expect((await policies(service, machine)).headers.get('etag')).toBe(etag)
  })

  test('unknown, malformed and other-org machine ids → 404 problem; a NUL in the id → 400 naming it', async () => {
    for (const id of [crypto.randomUUID(), 'not-a-uuid', machine.slice(0, 35)]) {
      expectProblem(await hb(a.deploy_token, id), 404)
      expectProblem(await policies(a.deploy_token, id), 404)
    }
    const nul = await hb(a.deploy_token, '%00')
    expectProblem(nul, 400)
    expect(nul.body.errors[0].path).toBe('/id')
    expectProblem(await hb(b.deploy_token, machine), 404)
    expectProblem(await policies(b.deploy_token, machine), 404)
    expectProblem(await hb(a.deploy_token, machine, { uptime: 'long' }), 422)
    expectProblem(await hb(a.deploy_token, machine, { uptime: -1 }), 422)
  })
})

describe('POST /v1/machines/{id}/events', () => {
  const daemonEvent = (over: Record<string, unknown> = {}) => ({
    event_id: `tool-${Date.now()}`,
    action: 'tool:Bash',
    agent: 'claude',
    timestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    risk_score: 40,
    blocked: false,
    metadata: { args: '{"command":"ls"}', process_name: 'claude', platform: 'claude-code' },
    ...over,
  })

  test('accepted (200), a resend after storage is duplicate, stored exactly once with the machine id', async () => {
    // One id for both, as the daemon's `evt-<unix ms>` ids repeat (two Date.now() calls may differ).
    const id = `tool-${Date.now()}`
    const events = [
      daemonEvent({ event_id: id, action: 'tool:Read' }),
      daemonEvent({ event_id: id, action: 'http:api.github.com:get.repos' }),
    ]
    const first = await post(a.deploy_token, `/v1/machines/${machine}/events`, { events })
    expect(first.status).toBe(200)
    expect(first.body).toMatchObject({ ingested: 2, accepted: 2, duplicates: 0, rejected: 0 })
    await pipeline()
    const again = await post(service, `/v1/machines/${machine}/events`, { events })
    expect(again.status).toBe(200)
    expect(again.body).toMatchObject({ ingested: 2, accepted: 0, duplicates: 2 })
    await pipeline()
    const rows = await db.owner`
      select machine_id, action, tool_name, source, arguments from actions
       where org_id = ${a.org_id} and event_id = ${events[0]!.event_id} order by action`
    expect(rows.map((r) => r.action)).toEqual(['http:api.github.com:get.repos', 'tool:Read'])
    expect(rows.every((r) => r.machine_id === machine && r.source === 'daemon')).toBe(true)
    expect(rows[1]).toMatchObject({ tool_name: 'Read', arguments: { command: 'ls' } })
  })

  test('rejected items are reported per item and the answer is still 200, even when every item was rejected', async () => {
    const some = await post(a.deploy_token, `/v1/machines/${machine}/events`, {
      events: [daemonEvent({ event_id: 'nul\u0000' }), daemonEvent({ action: 'tool:Write' }), 'junk'],
    })
    expect(some.status).toBe(200)
    expect(some.body).toMatchObject({ accepted: 1, rejected: 2 })
    expect(some.body.results[0]).toMatchObject({ status: 'rejected', path: '/events/0/event_id' })
    const all = await post(a.deploy_token, `/v1/machines/${machine}/events`, { events: [daemonEvent({ action: undefined })] })
    expect(all.status).toBe(200)
    expect(all.body).toMatchObject({ accepted: 0, rejected: 1 })
  })

  test('envelope errors and limits: 400 / 413 / 404, never 500', async () => {
    const path = `/v1/machines/${machine}/events`
    expectProblem(await post(a.deploy_token, path, { items: [] }), 400)
    expectProblem(await post(a.deploy_token, path, [daemonEvent()]), 400)
    expectProblem(await post(a.deploy_token, path, { events: Array.from({ length: 501 }, () => daemonEvent()) }), 413)
    expectProblem(
      await t.call('POST', path, { token: a.deploy_token, body: '{"events":[', headers: { 'content-type': 'application/json' } }),
      400,
    )
    expectProblem(
      await t.call('POST', path, {
        token: a.deploy_token,
        body: 'x'.repeat(10 * 1024 * 1024 + 1),
        headers: { 'content-type': 'application/json' },
      }),
      413,
    )
    expectProblem(await post(a.deploy_token, `/v1/machines/${crypto.randomUUID()}/events`, { events: [daemonEvent()] }), 404)
    expectProblem(await post(b.deploy_token, path, { events: [daemonEvent()] }), 404)
  })
})

describe('POST /v1/machines/{id}/agents', () => {
  const proc = (pid: number, over: Record<string, unknown> = {}) => ({
    platform: 'claude-code',
    pid,
    binary_path: '/usr/local/bin/claude',
    state: 'running',
    cpu_percent: 1.5,
    memory_mb: 210,
    started_at: '2026-03-15T18:00:00Z',
    ...over,
  })
  const held = async () =>
    (
      await db.owner`select platform, pid::int as pid, started_at from machine_processes where machine_id = ${machine} order by pid`
    ).map((r) => r.pid as number)

  test('each post replaces the snapshot; [] clears it; a repeated (platform, pid) keeps the first', async () => {
    const path = `/v1/machines/${machine}/agents`
    const first = await post(a.deploy_token, path, {
      agents: [proc(1), proc(2, { binary_path: undefined, cpu_percent: null, started_at: undefined })],
    })
    expect(first.status).toBe(200)
    expect(first.body).toEqual({ machine_id: machine, agents: 2 })
    expect(await held()).toEqual([1, 2])
    const [row] =
      await db.owner`select started_at, cpu_percent, memory_mb from machine_processes where machine_id = ${machine} and pid = 1`
    expect(row).toEqual({ started_at: new Date('2026-03-15T18:00:00Z'), cpu_percent: 1.5, memory_mb: 210 })
    const second = await post(a.deploy_token, path, { agents: [proc(3), proc(3, { state: 'other' })] })
    expect(second.body.agents).toBe(1)
    expect(await held()).toEqual([3])
    expect((await post(a.deploy_token, path, { agents: [] })).body.agents).toBe(0)
    expect(await held()).toEqual([])
  })

  test('concurrent snapshots never interleave: the result is exactly one of them', async () => {
    const path = `/v1/machines/${machine}/agents`
    const snaps = Array.from({ length: 6 }, (_, i) => Array.from({ length: 20 }, (_, j) => proc(i * 100 + j)))
    const res = await Promise.all(snaps.map((agents) => post(a.deploy_token, path, { agents })))
    expect(res.every((r) => r.status === 200)).toBe(true)
    const now = await held()
    expect(snaps.some((s) => JSON.stringify(s.map((p) => p.pid)) === JSON.stringify(now))).toBe(true)
  })

  test('bad input → 422, unknown or other-org machine → 404', async () => {
    const path = `/v1/machines/${machine}/agents`
    for (const bad of [
      { agents: [proc(1, { pid: 'one' })] },
      { agents: [proc(-1)] },
      { agents: [proc(1, { platform: 'a\u0000b' })] },
      { agents: [proc(1, { state: undefined })] },
      { agents: [proc(1, { started_at: '2026-02-31T00:00:00Z' })] },
      { agents: [proc(1, { started_at: 'yesterday' })] },
      { agents: {} },
      {},
    ]) {
      expectProblem(await post(a.deploy_token, path, bad), 422)
    }
    expectProblem(await post(a.deploy_token, `/v1/machines/${crypto.randomUUID()}/agents`, { agents: [] }), 404)
    expectProblem(await post(b.deploy_token, path, { agents: [] }), 404)
  })
})

describe('POST /v1/machines/{id}/graphs', () => {
  const graph = (id: string, over: Record<string, unknown> = {}) => ({
    id,
    root_agent_id: 'ra-1',
    root_agent_name: 'claude',
    status: 'running',
    total_nodes: 3,
    nodes: { rootAgentId: 'ra-1', totalNodes: 3, nodes: [{ id: 'n1' }] },
    started_at: '2026-03-15T18:00:00.123456789Z',
    ...over,
  })
  const path = () => `/v1/machines/${machine}/graphs`

  test('201 when any graph is new, 200 when all were known (never 204); latest copy wins', async () => {
    const g1 = `g-${crypto.randomUUID()}`
    const g2 = `g-${crypto.randomUUID()}`
    const first = await post(a.deploy_token, path(), { graphs: [graph(g1), graph(g2)] })
    expect(first.status).toBe(201)
    expect(first.body).toEqual({ received: 2, created: 2, updated: 0 })
    const same = await post(a.deploy_token, path(), {
      graphs: [graph(g1, { status: 'completed', completed_at: '2026-03-15T18:05:00Z' }), graph(g2)],
    })
    expect(same.status).toBe(200)
    expect(same.body).toEqual({ received: 2, created: 0, updated: 2 })
    const mixed = await post(a.deploy_token, path(), { graphs: [graph(g1), graph(`g-${crypto.randomUUID()}`)] })
    expect(mixed.status).toBe(201)
    expect(mixed.body).toEqual({ received: 2, created: 1, updated: 1 })
    const empty = await post(a.deploy_token, path(), { graphs: [] })
    expect(empty.status).toBe(200)
    const dup = await post(a.deploy_token, path(), { graphs: [graph(g2, { status: 'a' }), graph(g2, { status: 'b' })] })
    expect(dup.status).toBe(200)
    const [row] =
      await db.owner`select status, total_nodes, graph, started_at, machine_id from machine_graphs where graph_id = ${g2}`
    expect(row).toEqual({
      status: 'b',
      total_nodes: 3,
      graph: { rootAgentId: 'ra-1', totalNodes: 3, nodes: [{ id: 'n1' }] },
      started_at: new Date('2026-03-15T18:00:00.123Z'),
      machine_id: machine,
    })
  })

  test('raw nodes are stored cleaned: NUL and lone surrogates replaced, __proto__ kept as data, secrets redacted', async () => {
    const id = `g-${crypto.randomUUID()}`
    const raw = `{"graphs":[{"id":"${id}","nodes":{"__proto__":{"x":1},"k\\u0000":"v\\ud800","cmd":"export GH=ghp_abcdefghijklmnopqrstuvwxyz0123456789AB"}}]}`
    const res = await t.call('POST', path(), {
      token: a.deploy_token,
      body: raw,
      headers: { 'content-type': 'application/json' },
    })
    expect(res.status).toBe(201)
    const [row] = await db.owner`select graph from machine_graphs where graph_id = ${id}`
    expect(Object.keys(row!.graph).sort()).toEqual(['__proto__', 'cmd', 'k\uFFFD'])
    expect(row!.graph['k\uFFFD']).toBe('v\uFFFD')
    expect(row!.graph.cmd).not.toContain('ghp_')
  })

  test('bad input → 422, unknown or other-org machine → 404', async () => {
    for (const bad of [
      { graphs: [graph('')] },
      { graphs: [graph('a\u0000')] },
      { graphs: [graph('x', { total_nodes: -1 })] },
      { graphs: [graph('x', { completed_at: 'soon' })] },
      { graphs: [graph('x', { started_at: '2026-13-01T00:00:00Z' })] },
      { graphs: [graph('x', { nodes: JSON.parse('{"a":'.repeat(70) + '1' + '}'.repeat(70)) })] },
      { graphs: 'no' },
    ]) {
      expectProblem(await post(a.deploy_token, path(), bad), 422)
    }
    expectProblem(await post(a.deploy_token, `/v1/machines/${crypto.randomUUID()}/graphs`, { graphs: [] }), 404)
    expectProblem(await post(b.deploy_token, path(), { graphs: [graph('x')] }), 404)
    const [n] = await db.owner<{ n: number }[]>`select count(*)::int as n from machine_graphs where org_id = ${b.org_id}`
    expect(n!.n).toBe(0)
  })
})

describe('tenancy and documentation', () => {
  test("the same client fingerprint in another org is a different machine; neither org reaches the other's", async () => {
    const inB = await register(b.deploy_token, { machine_id: 'f'.repeat(32) })
    expect(inB.status).toBe(201)
    expect(inB.body.machine_id).not.toBe(machine)
    expect(inB.body.org_id).toBe(b.org_id)
    expectProblem(await hb(a.deploy_token, inB.body.machine_id), 404)
    expectProblem(await hb(inB.body.service_token, machine), 404)
    expect((await hb(inB.body.service_token, inB.body.machine_id)).status).toBe(200)
  })

  test('/openapi.json documents every machines route', async () => {
    const res = await t.call('GET', '/openapi.json')
    const paths = res.body.paths
    expect(paths['/v1/machines/register'].post.responses).toHaveProperty('201')
    expect(paths['/v1/machines/{id}/policies'].get.responses).toHaveProperty('304')
    expect(paths['/v1/machines/{id}/graphs'].post.responses).not.toHaveProperty('204')
    for (const p of ['heartbeat', 'events', 'agents', 'graphs'])
      expect(paths[`/v1/machines/{id}/${p}`].post.security).toEqual([{ bearer: [] }])
  })
})
