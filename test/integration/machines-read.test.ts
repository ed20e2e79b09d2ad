/**
 * The fleet inventory (issue 9) against Postgres: `GET /v1/machines` filters and keyset pages,
 * `online` computed from the last heartbeat, the registering credential (never its secret), the
 * detail's sections (process snapshot, graphs, agents, counts) filled by the daemon's own routes
 * and the consumers, 404 for malformed, unknown and other-org ids, 400 naming a bad parameter,
 * and no collision with the daemon's `GET /v1/machines/{id}/policies`. Each machine's `policy`
 * block (issue 12): the hash it should hold and the one a heartbeat, a policies fetch or the fleet
 * stream last handed it.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { evaluateAlerts } from '../../src/features/alerts/consumer.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { applySessions } from '../../src/features/sessions/consumer.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'
import { SseReader } from '../helpers/sse.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg
/** Org A: a laptop seen now, a build box seen 10 min ago, a disabled desktop never seen; org B: one. */
const m = { laptop: '', box: '', desktop: '', other: '' }
let laptopToken: string

const register = async (token: string, json: Record<string, unknown>) => {
  const res = await t.call('POST', '/v1/machines/register', { token, json })
  expect(res.status).toBe(201)
  return res.body as { machine_id: string; service_token: string }
}

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
  const laptop = await register(a.deploy_token, {
    machine_id: 'a'.repeat(32),
    hostname: 'alice-MBP.local',
    os: 'darwin',
    arch: 'arm64',
    agent_version: '0.10.0',
    mac_hash: 'ab12',
  })
  m.laptop = laptop.machine_id
  laptopToken = laptop.service_token
  m.box = (
    await register(a.deploy_token, { machine_id: 'b'.repeat(32), hostname: 'build_box%1', os: 'linux', arch: 'amd64' })
  ).machine_id
  m.desktop = (await register(a.deploy_token, { machine_id: 'c'.repeat(32), hostname: 'desk', os: 'windows' })).machine_id
  m.other = (await register(b.deploy_token, { machine_id: 'a'.repeat(32), hostname: 'bob-MBP.local', os: 'darwin' })).machine_id
  // Registration order is the list order; make it unambiguous, and age two of them.
  await db.owner`update machines set registered_at = now() - interval '3 hours' where id = ${m.laptop}`
  await db.owner`update machines set registered_at = now() - interval '2 hours',
                                     last_seen_at = now() - interval '10 minutes' where id = ${m.box}`
  await db.owner`update machines set registered_at = now() - interval '1 hour', last_seen_at = null, status = 'disabled'
                  where id = ${m.desktop}`
  const hb = await t.call('POST', `/v1/machines/${m.laptop}/heartbeat`, {
    token: laptopToken,
    json: { agent_version: '0.10.1', uptime: 3600.7 },
  })
  expect(hb.status).toBe(200)
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

async function list(query: Record<string, string> = {}, token = a.admin_key) {
  const res = await t.call('GET', `/v1/machines?${new URLSearchParams(query)}`, { token })
  expect(res.status).toBe(200)
  return res.body as { machines: any[]; next_cursor: string | null }
}
const ids = (body: { machines: any[] }) => body.machines.map((x) => x.id)

function expectProblem(res: Awaited<ReturnType<typeof t.call>>, status: number) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  expect(res.body.status).toBe(status)
}

describe('GET /v1/machines', () => {
  test("the org's machines, newest registered first, with the registering credential and never its secret", async () => {
    const res = await t.call('GET', '/v1/machines', { token: a.admin_key })
    expect(res.status).toBe(200)
    expect(ids(res.body)).toEqual([m.desktop, m.box, m.laptop])
    expect(res.body.next_cursor).toBeNull()
    const laptop = res.body.machines[2]
    expect(laptop).toEqual({
      id: m.laptop,
      client_machine_id: 'a'.repeat(32),
      hostname: 'alice-MBP.local',
      os: 'darwin',
      arch: 'arm64',
      daemon_version: '0.10.1', // the heartbeat's, over register's
      status: 'active',
      tags: [],
      registered_at: expect.any(String),
      last_seen_at: expect.any(String),
      online: true,
      uptime_seconds: 3600,
      registered_by: {
        token_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        kind: 'install',
        name: expect.any(String),
        prefix: a.deploy_token.slice(0, 'qt_deploy_'.length + 4),
        revoked_at: null,
      },
      // Its heartbeat handed it the policy hash it should hold (issue 12).
      policy: {
        hash: expect.stringMatching(/^[0-9a-f]{64}$/),
        delivered_hash: laptop.policy.hash,
        delivered_at: expect.any(String),
        delivered_via: 'heartbeat',
        current: true,
      },
    })
    expect(Date.now() - Date.parse(laptop.last_seen_at)).toBeLessThan(60_000)
    const [tok] = await db.owner<{ id: string; token_hash: Buffer }[]>`
      select id, token_hash from api_tokens where org_id = ${a.org_id} and kind = 'install'`
    expect(laptop.registered_by.token_id).toBe(tok!.id)
    expect(res.text).not.toContain(tok!.token_hash.toString('hex'))
    expect(res.text).not.toContain(a.deploy_token)
    expect(res.body.machines[1]).toMatchObject({ online: false, uptime_seconds: null, daemon_version: null })
    // Never handed anything: the hash it should hold, nothing delivered.
    expect(res.body.machines[1].policy).toEqual({
      hash: laptop.policy.hash,
      delivered_hash: null,
      delivered_at: null,
      delivered_via: null,
      current: false,
    })
    expect(res.body.machines[0]).toMatchObject({ status: 'disabled', online: false, last_seen_at: null })
    expect(ids(await list({}, b.admin_key))).toEqual([m.other])
  })

  test.each([
    [{ status: 'disabled' }, ['desktop']],
    [{ status: 'active' }, ['box', 'laptop']],
    [{ online: 'true' }, ['laptop']],
    [{ online: 'false' }, ['desktop', 'box']],
    [{ os: 'linux' }, ['box']],
    [{ hostname: 'mbp' }, ['laptop']], // substring, case-insensitive
    [{ hostname: '%' }, ['box']], // literal, not a LIKE wildcard
    [{ hostname: '_' }, ['box']],
    [{ client_machine_id: 'c'.repeat(32) }, ['desktop']],
    [{ since: new Date(Date.now() - 5 * 60_000).toISOString() }, ['laptop']],
    [{ since: new Date(Date.now() - 60 * 60_000).toISOString() }, ['box', 'laptop']],
    [{ os: 'darwin', online: 'false' }, []],
  ] as [Record<string, string>, (keyof typeof m)[]][])('filter %j', async (query, want) => {
    expect(ids(await list(query))).toEqual(want.map((k) => m[k]))
  })

  test('an old heartbeat turns a machine offline; a new one brings it back', async () => {
    await db.owner`update machines set last_seen_at = now() - interval '121 seconds' where id = ${m.laptop}`
    expect((await list({ client_machine_id: 'a'.repeat(32) })).machines[0].online).toBe(false)
    await db.owner`update machines set last_seen_at = now() - interval '100 seconds' where id = ${m.laptop}`
    expect((await list({ client_machine_id: 'a'.repeat(32) })).machines[0].online).toBe(true)
    await t.call('POST', `/v1/machines/${m.laptop}/heartbeat`, { token: laptopToken, json: {} })
    expect(ids(await list({ online: 'true' }))).toEqual([m.laptop])
  })

  test('keyset pages: every machine once, in list order', async () => {
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const page: { machines: any[]; next_cursor: string | null } = await list({ limit: '1', ...(cursor ? { cursor } : {}) })
      expect(page.machines.length).toBeLessThanOrEqual(1)
      seen.push(...ids(page))
      cursor = page.next_cursor
    } while (cursor)
    expect(seen).toEqual([m.desktop, m.box, m.laptop])
  })

  test.each([
    ['status=gone', '/status'],
    ['online=yes', '/online'],
    ['since=yesterday', '/since'],
    ['hostname=', '/hostname'],
    ['os=' + 'x'.repeat(65), '/os'],
    ['limit=0', '/limit'],
    ['limit=201', '/limit'],
    ['bogus=1', '/bogus'],
  ])('bad query %s → 400 naming %s', async (q, path) => {
    const res = await t.call('GET', `/v1/machines?${q}`, { token: a.admin_key })
    expectProblem(res, 400)
    expect(res.body.errors.map((e: any) => e.path)).toContain(path)
  })

  test('a doctored cursor → 400', async () => {
    expectProblem(await t.call('GET', '/v1/machines?cursor=abc', { token: a.admin_key }), 400)
  })
})

describe('GET /v1/machines/{id}', () => {
  test('the machine with its process snapshot, graphs, agents and counts, filled by the daemon and the consumers', async () => {
    const agents = await t.call('POST', `/v1/machines/${m.laptop}/agents`, {
      token: laptopToken,
      json: {
        agents: [
          { platform: 'claude-code', pid: 4242, binary_path: '/usr/local/bin/claude', state: 'running', cpu_percent: 1.5 },
          { platform: 'cursor', pid: 77, state: 'idle', memory_mb: 300, started_at: '2026-01-01T00:00:00Z' },
        ],
      },
    })
    expect(agents.status).toBe(200)
    const graphs = await t.call('POST', `/v1/machines/${m.laptop}/graphs`, {
      token: laptopToken,
      json: {
        graphs: [{ id: 'g-1', root_agent_id: 'claude', status: 'running', total_nodes: 2, nodes: [{ id: 'n1' }, { id: 'n2' }] }],
      },
    })
    expect(graphs.status).toBe(201)
    const event = (i: number, command: string) => ({
      event_id: `tool-${i}`,
      action: 'tool:Bash',
      agent: 'claude',
      timestamp: new Date(Date.now() - (10 - i) * 1000).toISOString(),
      blocked: false,
      metadata: { args: JSON.stringify({ command }), session_id: 'laptop-s1', platform: 'claude-code' },
    })
    const sent = await t.call('POST', `/v1/machines/${m.laptop}/events`, {
      token: laptopToken,
      json: { events: [event(1, 'ls'), event(2, 'rm -rf /')] },
    })
    expect(sent.body.accepted).toBe(2)
    await drainOnce(db.app, 'pipeline', storeEvents)
    await drainOnce(db.app, 'sessions', applySessions)
    await drainOnce(db.app, 'alerts', evaluateAlerts)

    const res = await t.call('GET', `/v1/machines/${m.laptop}`, { token: a.admin_key })
    expect(res.status).toBe(200)
    const listed = (await list({ client_machine_id: 'a'.repeat(32) })).machines[0]
    expect(res.body).toMatchObject({ ...listed, last_seen_at: expect.any(String), metadata: { mac_hash: 'ab12' } })
    expect(res.body.processes).toEqual([
      {
        platform: 'claude-code',
        pid: 4242,
        binary_path: '/usr/local/bin/claude',
        state: 'running',
        cpu_percent: 1.5,
        memory_mb: null,
        started_at: null,
        reported_at: expect.any(String),
      },
      {
        platform: 'cursor',
        pid: 77,
        binary_path: null,
        state: 'idle',
        cpu_percent: null,
        memory_mb: 300,
        started_at: '2026-01-01T00:00:00.000Z',
        reported_at: expect.any(String),
      },
    ])
    expect(res.body.graphs).toEqual([
      expect.objectContaining({ graph_id: 'g-1', root_agent_id: 'claude', total_nodes: 2, nodes: [{ id: 'n1' }, { id: 'n2' }] }),
    ])
    expect(res.body.graph_count).toBe(1)
    expect(res.body.agents).toEqual([
      expect.objectContaining({ agent_id: 'claude', event_count: 2, session_count: 1, first_seen_at: expect.any(String) }),
    ])
    expect(res.body.agent_count).toBe(1)
    expect(res.body.session_count).toBe(1)
    expect(res.body.open_alert_count).toBe(1) // the destructive command
    expect(Date.parse(res.body.last_event_at)).toBeGreaterThan(Date.now() - 60_000)

    // A machine with nothing pushed: empty sections, zero counts.
    const quiet = await t.call('GET', `/v1/machines/${m.box.toUpperCase()}`, { token: a.admin_key })
    expect(quiet.body).toMatchObject({
      id: m.box,
      processes: [],
      graphs: [],
      agents: [],
      session_count: 0,
      open_alert_count: 0,
      last_event_at: null,
      graph_count: 0,
      agent_count: 0,
    })
  })

  test("malformed, unknown, fingerprint and another org's ids → 404 problem (never 400)", async () => {
    for (const id of ['nope', '123', crypto.randomUUID(), `${m.laptop}x`, 'a'.repeat(32), 'a'.repeat(300), m.other]) {
      expectProblem(await t.call('GET', `/v1/machines/${id}`, { token: a.admin_key }), 404)
    }
    expectProblem(await t.call('GET', `/v1/machines/${m.laptop}`, { token: b.admin_key }), 404)
  })

  test("no collision with the daemon's own routes: its credential keeps /policies and is refused the inventory", async () => {
    const policies = await t.call('GET', `/v1/machines/${m.laptop}/policies`, { token: laptopToken })
    expect(policies.status).toBe(200)
    expect(Array.isArray(policies.body)).toBe(true)
    expectProblem(await t.call('GET', `/v1/machines/${m.laptop}`, { token: laptopToken }), 403)
    expectProblem(await t.call('GET', '/v1/machines', { token: laptopToken }), 403)
    expect((await t.call('GET', `/v1/machines/${m.laptop}/policies`, { token: a.admin_key })).status).toBe(200)
  })

  test('/openapi.json documents both routes with their parameters', async () => {
    const doc = (await t.call('GET', '/openapi.json')).body
    expect(doc.paths['/v1/machines'].get.parameters.map((p: any) => p.name)).toEqual([
      'limit',
      'cursor',
      'status',
      'tag',
      'online',
      'os',
      'hostname',
      'client_machine_id',
      'since',
    ])
    expect(doc.paths['/v1/machines/{id}'].get.operationId).toBe('getMachine')
    expect(doc.paths['/v1/machines/{id}/policies'].get.operationId).toBe('machinePolicies')
  })
})

describe('policy delivery (issue 12): which machines hold the policy hash', () => {
  test('heartbeat, policies and the fleet stream record what they hand; the views show it; nothing else writes', async () => {
    const org = await createOrg(db.app, `delivery ${crypto.randomUUID()}`, 'cli')
    const one = await register(org.deploy_token, { machine_id: crypto.randomUUID().replace(/-/g, ''), hostname: 'one' })
    const two = await register(org.deploy_token, { machine_id: crypto.randomUUID().replace(/-/g, ''), hostname: 'two' })
    const view = async (id: string) => {
      const res = await t.call('GET', `/v1/machines/${id}`, { token: org.admin_key })
      expect(res.status).toBe(200)
      return res.body.policy as {
        hash: string
        delivered_hash: string | null
        delivered_at: string | null
        delivered_via: string | null
        current: boolean
      }
    }
    const stored = async (id: string) =>
      (
        await db.owner<{ hash: string | null; at: Date | null; via: string | null }[]>`
          select policy_delivered_hash as hash, policy_delivered_at as at, policy_delivered_via as via from machines where id = ${id}`
      )[0]!

    // Registered, never handed anything.
    const fresh = await view(one.machine_id)
    expect(fresh).toEqual({
      hash: expect.stringMatching(/^[0-9a-f]{64}$/),
      delivered_hash: null,
      delivered_at: null,
      delivered_via: null,
      current: false,
    })

    // A heartbeat hands the hash it answers.
    const hb = await t.call('POST', `/v1/machines/${one.machine_id}/heartbeat`, { token: one.service_token, json: {} })
    expect(hb.status).toBe(200)
    const first = await view(one.machine_id)
    expect(first).toEqual({
      hash: hb.body.policy_hash,
      delivered_hash: hb.body.policy_hash,
      delivered_at: expect.any(String),
      delivered_via: 'heartbeat',
      current: true,
    })
    // The steady state writes nothing new: the same hash keeps its first delivery.
    const before = await stored(one.machine_id)
    await Bun.sleep(5)
    expect(
      (await t.call('POST', `/v1/machines/${one.machine_id}/heartbeat`, { token: one.service_token, json: {} })).status,
    ).toBe(200)
    expect(await stored(one.machine_id)).toEqual(before)

    // A new policy: the hash it should hold moves, what it was handed does not.
    const pol = await t.call('POST', '/v1/policies', {
      token: org.admin_key,
      json: { name: 'no curl', rules: [{ tool: 'Bash', action: 'block', conditions: ['curl'] }] },
    })
    expect(pol.status).toBe(201)
    const stale = await view(one.machine_id)
    expect(stale.hash).not.toBe(first.hash)
    expect(stale).toMatchObject({ delivered_hash: first.hash, delivered_via: 'heartbeat', current: false })
    // The list shows the same block, one computation for both machines (same tags, named by no scope).
    const listed = (await t.call('GET', '/v1/machines', { token: org.admin_key })).body.machines as {
      id: string
      policy: unknown
    }[]
    expect(listed.find((x) => x.id === one.machine_id)!.policy).toEqual(stale)
    expect(listed.find((x) => x.id === two.machine_id)!.policy).toMatchObject({
      hash: stale.hash,
      delivered_hash: null,
      current: false,
    })

    // GET …/policies: a 304 hands nothing; a 200 hands the document's hash.
    const refetched = await t.call('GET', `/v1/machines/${one.machine_id}/policies`, {
      token: one.service_token,
      headers: { 'if-none-match': first.hash },
    })
    expect(refetched.status).toBe(200) // it held the old hash: the new document is sent
    expect(refetched.headers.get('etag')).toBe(stale.hash)
    expect(await view(one.machine_id)).toMatchObject({ delivered_hash: stale.hash, delivered_via: 'policies', current: true })
    const again = await t.call('GET', `/v1/machines/${one.machine_id}/policies`, {
      token: one.service_token,
      headers: { 'if-none-match': stale.hash },
    })
    expect(again.status).toBe(304)
    expect(await view(one.machine_id)).toMatchObject({ delivered_via: 'policies', current: true })

    // The fleet stream's first `policy` event hands the other machine its hash.
    const abort = new AbortController()
    const res = await t.app.fetch(
      new Request(`http://test/v1/machines/${two.machine_id}/stream`, {
        headers: { authorization: `Bearer ${two.service_token}` },
        signal: abort.signal,
      }),
    )
    expect(res.status).toBe(200)
    const reader = new SseReader(res)
    const policy = await reader.next((e) => e.event === 'policy')
    expect(policy.data.policy_hash).toBe(stale.hash)
    await waitFor(async () => (await view(two.machine_id)).delivered_via === 'stream')
    expect(await view(two.machine_id)).toMatchObject({ delivered_hash: stale.hash, delivered_via: 'stream', current: true })
    abort.abort()

    // PATCH answers the same block (its tags may change what it should hold).
    const patched = await t.call('PATCH', `/v1/machines/${two.machine_id}`, { token: org.admin_key, json: { tags: ['ci'] } })
    expect(patched.status).toBe(200)
    expect(patched.body.policy).toMatchObject({ hash: stale.hash, delivered_via: 'stream', current: true })
  })
})

async function waitFor(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await Bun.sleep(25)
  }
}
