/**
 * The agents read API on a real Postgres (issue 9): an agent is its key, grouped across the
 * machines it was seen on. Events arrive through /v1/ingest (no machine) and through two
 * registered machines' daemon routes; the pipeline and sessions consumers are drained explicitly.
 * Covers the grouped shape (platforms, machines, counts, risk from its sessions), lookup by key
 * (URL-encoded, slashes included) and by a stored row's UUID, each list filter, a cursor walk
 * through agents seen at the same instant, bad input and org separation.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { applySessions } from '../../src/features/sessions/consumer.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg
const machines: { id: string; hostname: string }[] = []

const BASE = Date.now() - 60 * 60_000
// Whole seconds: the daemon's timestamps have second precision (SPEC §8.1).
const at = (seconds: number) => new Date(Math.floor(BASE / 1000) * 1000 + seconds * 1000).toISOString().replace('.000Z', 'Z')
const SLASHED = 'team/agent one'

async function ingest(org: CreatedOrg, events: unknown[]) {
  const res = await t.call('POST', '/v1/ingest', { token: org.deploy_token, json: { events } })
  expect(res.status).toBe(200)
  expect(res.body.accepted).toBe(events.length)
}
async function daemon(machine: string, events: Record<string, unknown>[]) {
  const res = await t.call('POST', `/v1/machines/${machine}/events`, {
    token: a.deploy_token,
    json: { events: events.map((e) => ({ event_id: crypto.randomUUID(), action: 'tool:Bash', blocked: false, ...e })) },
  })
  expect(res.status).toBe(200)
}
const get = (org: CreatedOrg, path: string) => t.call('GET', path, { token: org.admin_key })
async function ok(org: CreatedOrg, path: string) {
  const res = await get(org, path)
  expect(res.status).toBe(200)
  return res.body
}
const enc = encodeURIComponent
async function listIds(query: Record<string, string>, org = a): Promise<string[]> {
  return (await ok(org, `/v1/agents?${new URLSearchParams({ limit: '200', ...query })}`)).agents.map((x: any) => x.id)
}
function expectProblem(res: { status: number; headers: Headers; body: any }, status: number) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  expect(res.body.status).toBe(status)
}

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
  for (const hostname of ['host-2', 'host-1']) {
    const reg = await t.call('POST', '/v1/machines/register', {
      token: a.deploy_token,
      json: { machine_id: `fp-${hostname}`, hostname, os: 'linux', arch: 'amd64' },
    })
    expect(reg.status).toBe(201)
    machines.push({ id: reg.body.machine_id, hostname })
  }
  const [m2, m1] = machines
  // agent-multi: no machine (SDK ingest), then on host-1 (cursor) and host-2.
  await ingest(a, [
    v2Event({ agent_id: 'agent-multi', session_id: 'multi-s1', timestamp: at(0), risk_score: 30 }),
    v2Event({ agent_id: 'agent-multi', session_id: 'multi-s1', timestamp: at(10), risk_score: 90, decision: 'block' }),
    v2Event({ agent_id: 'agent-solo', session_id: 'solo-s1', timestamp: at(5), platform: 'windsurf', risk_score: 10 }),
    v2Event({ agent_id: SLASHED, session_id: 'slash-s1', timestamp: at(7) }),
    ...['tie-a', 'tie-b', 'tie-c'].map((agent_id) => v2Event({ agent_id, session_id: `${agent_id}-s`, timestamp: at(50) })),
  ])
  await daemon(m1!.id, [
    {
      agent: 'agent-multi',
      timestamp: at(100),
      risk_score: 60,
      blocked: true,
      metadata: { session_id: 'multi-s2', platform: 'cursor' },
    },
    { agent: 'agent-multi', timestamp: at(110), metadata: { session_id: 'multi-s2', platform: 'cursor' } },
  ])
  await daemon(m2!.id, [{ agent: 'agent-multi', timestamp: at(200), risk_score: 0, metadata: { session_id: 'multi-s3' } }])
  await ingest(b, [v2Event({ agent_id: 'agent-b', session_id: 'b-s', timestamp: at(20) })])
  await drainOnce(db.app, 'pipeline', storeEvents)
  await drainOnce(db.app, 'sessions', applySessions)
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

describe('GET /v1/agents/{id}', () => {
  test('one agent grouped across machines: platforms, machines, first and last seen, counts, risk of its sessions', async () => {
    const agent = await ok(a, '/v1/agents/agent-multi')
    const [m2, m1] = machines
    expect(agent).toEqual({
      id: 'agent-multi',
      name: null,
      platforms: ['claude-code', 'cursor'],
      machines: [
        { machine_id: m1!.id, hostname: 'host-1' },
        { machine_id: m2!.id, hostname: 'host-2' },
      ],
      first_seen_at: new Date(at(0)).toISOString(),
      last_seen_at: new Date(at(200)).toISOString(),
      event_count: 5,
      session_count: 3,
      // Scored events 30, 90, 60, 0; blocked: one SDK event, one daemon event.
      risk: { max_risk: 90, avg_risk: 45, blocked_count: 2 },
    })
  })

  test('by the UUID of any of its stored rows; a key with a slash, URL-encoded', async () => {
    const rows = await db.owner<{ id: string }[]>`select id from agents where org_id = ${a.org_id} and agent_key = 'agent-multi'`
    expect(rows).toHaveLength(3)
    const byKey = await ok(a, '/v1/agents/agent-multi')
    for (const r of rows) expect(await ok(a, `/v1/agents/${r.id.toUpperCase()}`)).toEqual(byKey)
    const slashed = await ok(a, `/v1/agents/${enc(SLASHED)}`)
    expect(slashed).toMatchObject({ id: SLASHED, session_count: 1, event_count: 1, machines: [] })
    expect(slashed.risk).toEqual({ max_risk: null, avg_risk: null, blocked_count: 0 })
  })

  test('unknown, malformed and over-long ids are 404; so are the keys and row ids of another org', async () => {
    for (const id of ['nobody', crypto.randomUUID(), 'x'.repeat(300), enc('%'), enc('agent-multi ')]) {
      expectProblem(await get(a, `/v1/agents/${id}`), 404)
    }
    const [row] = await db.owner<{ id: string }[]>`select id from agents where org_id = ${a.org_id} and agent_key = 'agent-solo'`
    expectProblem(await get(b, '/v1/agents/agent-solo'), 404)
    expectProblem(await get(b, `/v1/agents/${row!.id}`), 404)
    expect((await ok(b, '/v1/agents/agent-b')).id).toBe('agent-b')
    expectProblem(await get(a, '/v1/agents/agent-b'), 404)
  })
})

describe('GET /v1/agents', () => {
  test('most recently seen first, one item per key, in the detail shape', async () => {
    expect(await listIds({})).toEqual(['agent-multi', ...(await tieOrder()), SLASHED, 'agent-solo'])
    const list = await ok(a, '/v1/agents?limit=200')
    expect(list.agents[0]).toEqual(await ok(a, '/v1/agents/agent-multi'))
    expect(list.next_cursor).toBeNull()
    expect(await listIds({}, b)).toEqual(['agent-b'])
  })

  test('each filter includes what matches and excludes the rest', async () => {
    const [m2, m1] = machines
    expect(await listIds({ platform: 'cursor' })).toEqual(['agent-multi'])
    expect(await listIds({ platform: 'windsurf' })).toEqual(['agent-solo'])
    expect(await listIds({ platform: 'vscode' })).toEqual([])
    expect(await listIds({ machine_id: m1!.id })).toEqual(['agent-multi'])
    expect(await listIds({ machine_id: m2!.id })).toEqual(['agent-multi'])
    expect(await listIds({ machine_id: crypto.randomUUID() })).toEqual([])
    expect(await listIds({ since: at(50) })).toEqual(['agent-multi', ...(await tieOrder())])
    expect(await listIds({ since: at(51) })).toEqual(['agent-multi'])
    expect(await listIds({ since: at(6) })).toEqual(['agent-multi', ...(await tieOrder()), SLASHED])
    expect(await listIds({ platform: 'claude-code', since: at(60) })).toEqual(['agent-multi'])
    // Filters select agents; the listed agent keeps all its platforms and machines.
    const [found] = (await ok(a, '/v1/agents?platform=cursor')).agents
    expect(found.platforms).toEqual(['claude-code', 'cursor'])
    expect(found.machines).toHaveLength(2)
    expect(await listIds({ machine_id: m1!.id }, b)).toEqual([])
  })

  test('a cursor walk, one agent a page, returns each agent once, agents seen at the same instant included', async () => {
    const all = await listIds({})
    const walked: string[] = []
    let cursor: string | null = null
    do {
      const page: any = await ok(a, `/v1/agents?limit=1${cursor ? `&cursor=${enc(cursor)}` : ''}`)
      expect(page.agents.length).toBeLessThanOrEqual(1)
      walked.push(...page.agents.map((x: any) => x.id))
      cursor = page.next_cursor
    } while (cursor)
    expect(walked).toEqual(all)
    expect(walked).toHaveLength(6)
  })

  test('bad query parameters are 400 problems naming the parameter', async () => {
    for (const [query, name] of [
      ['agent_id=x', 'agent_id'],
      ['machine_id=host-1', 'machine_id'],
      ['since=last-week', 'since'],
      ['limit=500', 'limit'],
      ['platform=', 'platform'],
    ] as const) {
      const res = await get(a, `/v1/agents?${query}`)
      expectProblem(res, 400)
      expect(res.body.errors.map((e: any) => e.path)).toContain(`/${name}`)
    }
    expectProblem(await get(a, '/v1/agents?cursor=abc'), 400)
    const notUuid = Buffer.from(JSON.stringify(['2026-01-01 00:00:00+00', 'agent-multi'])).toString('base64url')
    expectProblem(await get(a, `/v1/agents?cursor=${notUuid}`), 400)
  })

  test('a machine credential cannot read agents (issue 9)', async () => {
    expectProblem(await t.call('GET', '/v1/agents', { token: a.deploy_token }), 403)
    expectProblem(await t.call('GET', '/v1/agents/agent-multi', { token: a.deploy_token }), 403)
  })
})

describe('ids that collide', () => {
  // Last: it adds an agent the list tests above do not expect.
  test("a client-chosen key that spells another agent's row UUID does not capture that UUID", async () => {
    const [row] = await db.owner<{ id: string }[]>`select id from agents where org_id = ${a.org_id} and agent_key = 'agent-solo'`
    await ingest(a, [v2Event({ agent_id: row!.id, session_id: 'impostor-s', timestamp: at(300) })])
    await drainOnce(db.app, 'pipeline', storeEvents)
    await drainOnce(db.app, 'sessions', applySessions)
    expect((await ok(a, `/v1/agents/${row!.id}`)).id).toBe('agent-solo')
    expect((await listIds({}))[0]).toBe(row!.id)
  })
})

/** Agents last seen at the same instant are ordered by the id of their row, newest-first style (descending). */
async function tieOrder(): Promise<string[]> {
  const rows = await db.owner<{ agent_key: string }[]>`
    select agent_key from agents where org_id = ${a.org_id} and agent_key like 'tie-%' order by id desc`
  return rows.map((r) => r.agent_key)
}
