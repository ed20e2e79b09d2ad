/**
 * The sessions read API on a real Postgres (issue 9): events and lifecycle reports go in through
 * the ingest routes, the pipeline and sessions consumers are drained explicitly, and everything
 * comes back through GET /v1/sessions…. Covers each list filter (including and excluding),
 * lookup by UUID and by session key, the events timeline in order across pages, children and the
 * delegation tree of sub-agents three levels deep, parent loops in damaged data (bounded, never
 * hanging), the node bound, bad input (400 naming the parameter, 404 for any bad id) and org
 * separation.
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
let machineId: string

const BASE = Date.now() - 60 * 60_000
const at = (seconds: number) => new Date(BASE + seconds * 1000).toISOString()

// The delegation tree of org A: root → child → grandchild → great-grandchild (edge sub-agent keys),
// plus a second child named by a lifecycle parent_id.
const ROOT = '4242-1777085379101'
const CHILD = `${ROOT}:sub:1`
const GRANDCHILD = `${CHILD}:sub:1`
const GREAT = `${GRANDCHILD}:sub:2`
const TASK = 'task-of-root'

async function drain() {
  await drainOnce(db.app, 'pipeline', storeEvents)
  await drainOnce(db.app, 'sessions', applySessions)
}
async function ingest(org: CreatedOrg, events: unknown[]) {
  const res = await t.call('POST', '/v1/ingest', { token: org.deploy_token, json: { events } })
  expect(res.status).toBe(200)
  expect(res.body.accepted).toBe(events.length)
}
async function lifecycle(org: CreatedOrg, body: Record<string, unknown>) {
  const res = await t.call('POST', '/v1/sessions/ingest', { token: org.deploy_token, json: body })
  expect(res.status).toBe(200)
}
const get = (org: CreatedOrg, path: string) => t.call('GET', path, { token: org.admin_key })
async function ok(org: CreatedOrg, path: string) {
  const res = await get(org, path)
  expect(res.status).toBe(200)
  return res.body
}
const enc = encodeURIComponent
const keysOf = (sessions: { session_key: string }[]) => sessions.map((s) => s.session_key)
async function listKeys(query: Record<string, string>, org = a): Promise<string[]> {
  return keysOf((await ok(org, `/v1/sessions?${new URLSearchParams({ limit: '200', ...query })}`)).sessions)
}
function expectProblem(res: { status: number; headers: Headers; body: any }, status: number) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  expect(res.body.status).toBe(status)
}

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
  await ingest(a, [
    v2Event({ session_id: ROOT, agent_id: 'agent-root', timestamp: at(0), risk_score: 20 }),
    v2Event({ session_id: ROOT, agent_id: 'agent-root', timestamp: at(5), risk_score: 80, decision: 'block' }),
    v2Event({ session_id: CHILD, agent_id: 'agent-root', timestamp: at(10) }),
    v2Event({ session_id: GRANDCHILD, agent_id: 'agent-root', timestamp: at(20) }),
    v2Event({ session_id: GREAT, agent_id: 'agent-root', timestamp: at(30) }),
    v2Event({ session_id: TASK, agent_id: 'agent-task', timestamp: at(15), platform: 'cursor' }),
    v2Event({ session_id: 'idle-one', agent_id: 'agent-other', timestamp: at(100) }),
    v2Event({ session_id: 'ended-one', agent_id: 'agent-other', timestamp: at(200) }),
  ])
  await lifecycle(a, { session_id: TASK, state: 'active', parent_id: ROOT, timestamp: at(15) })
  await lifecycle(a, { session_id: 'idle-one', state: 'idle', timestamp: at(101) })
  await lifecycle(a, { session_id: 'ended-one', state: 'ended', timestamp: at(201) })
  // A machine's daemon events (SPEC §8.1) carry the machine the credential is bound to.
  const reg = await t.call('POST', '/v1/machines/register', {
    token: a.deploy_token,
    json: { machine_id: 'e'.repeat(32), hostname: 'laptop-7', os: 'darwin', arch: 'arm64' },
  })
  expect(reg.status).toBe(201)
  machineId = reg.body.machine_id
  const daemon = await t.call('POST', `/v1/machines/${machineId}/events`, {
    token: a.deploy_token,
    json: {
      events: [
        {
          event_id: 'evt-1',
          action: 'tool:Bash',
          agent: 'agent-laptop',
          timestamp: at(300).replace(/\.\d+Z$/, 'Z'),
          blocked: false,
          metadata: { session_id: 'laptop-session', platform: 'claude-code' },
        },
      ],
    },
  })
  expect(daemon.status).toBe(200)
  await ingest(b, [v2Event({ session_id: 'b-session', agent_id: 'agent-root', timestamp: at(50) })])
  await drain()
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

describe('GET /v1/sessions', () => {
  test('newest first, in the SessionView shape with its risk summary', async () => {
    const keys = await listKeys({})
    expect(keys).toEqual(['laptop-session', 'ended-one', 'idle-one', GREAT, GRANDCHILD, TASK, CHILD, ROOT])
    const root = (await ok(a, '/v1/sessions?limit=200')).sessions.find((s: any) => s.session_key === ROOT)
    expect(root).toMatchObject({
      session_key: ROOT,
      parent_id: null,
      agent_id: 'agent-root',
      platform: 'claude-code',
      state: 'active',
      started_at: at(0),
      blocked_count: 1,
      risk_summary: { total_events: 2, max_risk: 80, avg_risk: 50 },
    })
  })

  test('each filter includes what matches and excludes the rest', async () => {
    expect(await listKeys({ state: 'ended' })).toEqual(['ended-one'])
    expect(await listKeys({ state: 'idle' })).toEqual(['idle-one'])
    expect(await listKeys({ state: 'active' })).not.toContain('ended-one')
    expect(await listKeys({ platform: 'cursor' })).toEqual([TASK])
    expect(await listKeys({ platform: 'windsurf' })).toEqual([])
    expect(await listKeys({ root_only: 'true' })).toEqual(['laptop-session', 'ended-one', 'idle-one', ROOT])
    expect(await listKeys({ root_only: 'false' })).toHaveLength(8)
    expect(await listKeys({ since: at(100) })).toEqual(['laptop-session', 'ended-one', 'idle-one'])
    expect(await listKeys({ since: at(100.5) })).toEqual(['laptop-session', 'ended-one'])
    expect(await listKeys({ machine_id: machineId })).toEqual(['laptop-session'])
    expect(await listKeys({ machine_id: crypto.randomUUID() })).toEqual([])
    expect(await listKeys({ agent_id: 'agent-root' })).toEqual([GREAT, GRANDCHILD, CHILD, ROOT])
    expect(await listKeys({ agent_id: 'agent-laptop' })).toEqual(['laptop-session'])
    expect(await listKeys({ agent_id: 'nobody' })).toEqual([])
    // Filters combine.
    expect(await listKeys({ agent_id: 'agent-root', root_only: 'true' })).toEqual([ROOT])
    expect(await listKeys({ agent_id: 'agent-other', state: 'idle', since: at(50) })).toEqual(['idle-one'])
  })

  test('a cursor walk returns every session once, in order', async () => {
    const all = await listKeys({})
    const walked: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const page: any = await ok(a, `/v1/sessions?limit=3${cursor ? `&cursor=${enc(cursor)}` : ''}`)
      walked.push(...keysOf(page.sessions))
      cursor = page.next_cursor
      pages++
    } while (cursor)
    expect(walked).toEqual(all)
    expect(pages).toBe(3)
  })

  test('bad query parameters are 400 problems naming the parameter', async () => {
    for (const [query, name] of [
      ['bogus=1', 'bogus'],
      ['state=running', 'state'],
      ['root_only=maybe', 'root_only'],
      ['since=yesterday', 'since'],
      ['since=2026-02-31T00:00:00Z', 'since'],
      ['machine_id=laptop-7', 'machine_id'],
      ['limit=0', 'limit'],
      ['limit=201', 'limit'],
      [`agent_id=${'x'.repeat(257)}`, 'agent_id'],
    ] as const) {
      const res = await get(a, `/v1/sessions?${query}`)
      expectProblem(res, 400)
      expect(res.body.errors.map((e: any) => e.path)).toContain(`/${name}`)
    }
    expectProblem(await get(a, '/v1/sessions?cursor=not-a-cursor'), 400)
    const doctored = Buffer.from(JSON.stringify(['2026-13-01 00:00:00+00', crypto.randomUUID()])).toString('base64url')
    expectProblem(await get(a, `/v1/sessions?cursor=${doctored}`), 400)
  })

  test('a machine credential cannot read sessions (issue 9)', async () => {
    expectProblem(await t.call('GET', '/v1/sessions', { token: a.deploy_token }), 403)
    expectProblem(await t.call('GET', '/v1/sessions'), 401)
  })
})

describe('GET /v1/sessions/{id}', () => {
  test('by UUID or by session key: the session, its risk summary and its direct children', async () => {
    const byKey = await ok(a, `/v1/sessions/${enc(ROOT)}`)
    const byId = await ok(a, `/v1/sessions/${byKey.id}`)
    const byUpperId = await ok(a, `/v1/sessions/${byKey.id.toUpperCase()}`)
    expect(byId).toEqual(byKey)
    expect(byUpperId).toEqual(byKey)
    expect(byKey).toMatchObject({ session_key: ROOT, risk_summary: { total_events: 2, max_risk: 80, avg_risk: 50 } })
    // Oldest first: the sub-agent (t=10) before the lifecycle child (t=15).
    expect(keysOf(byKey.children)).toEqual([CHILD, TASK])
    expect(byKey.children_count).toBe(2)
    expect(byKey.children_truncated).toBe(false)
    expect(byKey.children[0].parent_id).toBe(byKey.id)
    const child = await ok(a, `/v1/sessions/${enc(CHILD)}`)
    expect(child).toMatchObject({ parent_id: byKey.id, parent_key: ROOT })
    expect(keysOf(child.children)).toEqual([GRANDCHILD])
  })

  test('unknown, malformed and over-long ids are 404 on every session route', async () => {
    for (const id of ['no-such-session', crypto.randomUUID(), '12345', 'x'.repeat(300), enc('%'), enc(' ')]) {
      for (const suffix of ['', '/events', '/children', '/tree']) {
        expectProblem(await get(a, `/v1/sessions/${id}${suffix}`), 404)
      }
    }
  })

  test("another org's session is a 404 by UUID and by key, and its lists show nothing of it", async () => {
    const mine = await ok(a, `/v1/sessions/${enc(ROOT)}`)
    for (const id of [mine.id, enc(ROOT)]) {
      for (const suffix of ['', '/events', '/children', '/tree']) {
        expectProblem(await get(b, `/v1/sessions/${id}${suffix}`), 404)
      }
    }
    expect(await listKeys({}, b)).toEqual(['b-session'])
    expect(await listKeys({ agent_id: 'agent-root' }, b)).toEqual(['b-session'])
    expect(await listKeys({ machine_id: machineId }, b)).toEqual([])
  })
})

describe('GET /v1/sessions/{id}/events', () => {
  test('the events in timestamp order across pages, none twice, same-instant events ordered by id', async () => {
    const key = 'timeline-session'
    const events = Array.from({ length: 60 }, (_, i) =>
      // Delivered out of order; every third shares its instant with the one before.
      v2Event({ session_id: key, timestamp: at(1000 + Math.floor((59 - i) / 3) * 2), tool_name: `tool-${i}` }),
    )
    await ingest(a, events.slice(30))
    await ingest(a, events.slice(0, 30))
    await ingest(a, [v2Event({ session_id: 'not-this-one', timestamp: at(1001) })])
    await drain()
    const walked: any[] = []
    let cursor: string | null = null
    do {
      const page: any = await ok(a, `/v1/sessions/${enc(key)}/events?limit=25${cursor ? `&cursor=${enc(cursor)}` : ''}`)
      walked.push(...page.events)
      cursor = page.next_cursor
    } while (cursor)
    expect(walked).toHaveLength(60)
    expect(new Set(walked.map((e) => e.id)).size).toBe(60)
    expect(walked.every((e) => e.session_id === key)).toBe(true)
    const sorted = [...walked].sort((x, y) => x.timestamp.localeCompare(y.timestamp) || x.id.localeCompare(y.id))
    expect(walked.map((e) => e.id)).toEqual(sorted.map((e) => e.id))
    // The same through the session's UUID, in the shared event shape.
    const s = await ok(a, `/v1/sessions/${enc(key)}`)
    const first = await ok(a, `/v1/sessions/${s.id}/events?limit=1`)
    expect(first.events[0]).toEqual(walked[0])
    expect(first.events[0]).toMatchObject({ action_type: 'tools/call', decision: 'allow', agent_id: 'agent-1', blocked: false })
    expectProblem(await get(a, `/v1/sessions/${s.id}/events?cursor=zzz`), 400)
    expectProblem(await get(a, `/v1/sessions/${s.id}/events?since=${at(0)}`), 400)
  })
})

describe('GET /v1/sessions/{id}/children', () => {
  test('pages through direct children oldest first', async () => {
    const walked: string[] = []
    let cursor: string | null = null
    do {
      const page: any = await ok(a, `/v1/sessions/${enc(ROOT)}/children?limit=1${cursor ? `&cursor=${enc(cursor)}` : ''}`)
      expect(page.children.length).toBeLessThanOrEqual(1)
      walked.push(...keysOf(page.children))
      cursor = page.next_cursor
    } while (cursor)
    expect(walked).toEqual([CHILD, TASK])
    expect((await ok(a, `/v1/sessions/${enc(GREAT)}/children`)).children).toEqual([])
  })
})

describe('GET /v1/sessions/{id}/tree', () => {
  const shape = (n: any): unknown => ({ key: n.session_key, depth: n.depth, children: n.children.map(shape) })

  test('the whole delegation tree to any depth, with the ancestors of a sub-agent', async () => {
    const tree = await ok(a, `/v1/sessions/${enc(ROOT)}/tree`)
    expect(shape(tree.root)).toEqual({
      key: ROOT,
      depth: 0,
      children: [
        {
          key: CHILD,
          depth: 1,
          children: [{ key: GRANDCHILD, depth: 2, children: [{ key: GREAT, depth: 3, children: [] }] }],
        },
        { key: TASK, depth: 1, children: [] },
      ],
    })
    expect(tree).toMatchObject({ ancestors: [], node_count: 5, truncated: false })
    expect(tree.root.risk_summary).toEqual({ total_events: 2, max_risk: 80, avg_risk: 50 })

    const sub = await ok(a, `/v1/sessions/${enc(GRANDCHILD)}/tree`)
    expect(shape(sub.root)).toEqual({ key: GRANDCHILD, depth: 0, children: [{ key: GREAT, depth: 1, children: [] }] })
    expect(keysOf(sub.ancestors)).toEqual([ROOT, CHILD])
    expect(sub).toMatchObject({ node_count: 2, truncated: false })
  })

  test('max_nodes cuts the deepest levels first and says so', async () => {
    const tree = await ok(a, `/v1/sessions/${enc(ROOT)}/tree?max_nodes=3`)
    expect(shape(tree.root)).toEqual({
      key: ROOT,
      depth: 0,
      children: [
        { key: CHILD, depth: 1, children: [] },
        { key: TASK, depth: 1, children: [] },
      ],
    })
    expect(tree).toMatchObject({ node_count: 3, truncated: true })
    for (const bad of ['0', '10001', 'all']) {
      const res = await get(a, `/v1/sessions/${enc(ROOT)}/tree?max_nodes=${bad}`)
      expectProblem(res, 400)
      expect(res.body.errors[0].path).toBe('/max_nodes')
    }
  })

  test('parent loops in damaged data end: every session once, ancestors bounded', async () => {
    // X ⇄ Y form a loop, Z hangs off Y, W off X, and S names itself as its parent.
    const ids = { x: crypto.randomUUID(), y: crypto.randomUUID(), z: crypto.randomUUID(), w: crypto.randomUUID() }
    const s = crypto.randomUUID()
    await db.owner`
      insert into sessions (org_id, id, session_key, started_at) values
        (${a.org_id}, ${ids.x}, 'loop-x', ${at(2000)}), (${a.org_id}, ${ids.y}, 'loop-y', ${at(2001)}),
        (${a.org_id}, ${ids.z}, 'loop-z', ${at(2002)}), (${a.org_id}, ${ids.w}, 'loop-w', ${at(2003)}),
        (${a.org_id}, ${s}, 'loop-self', ${at(2004)})`
    await db.owner`
      update sessions set parent_id = case session_key
        when 'loop-x' then ${ids.y}::uuid when 'loop-y' then ${ids.x}::uuid when 'loop-z' then ${ids.y}::uuid
        when 'loop-w' then ${ids.x}::uuid when 'loop-self' then id end
       where org_id = ${a.org_id} and session_key like 'loop-%'`

    const x = await ok(a, '/v1/sessions/loop-x/tree')
    expect(shape(x.root)).toEqual({
      key: 'loop-x',
      depth: 0,
      children: [
        { key: 'loop-y', depth: 1, children: [{ key: 'loop-z', depth: 2, children: [] }] },
        { key: 'loop-w', depth: 1, children: [] },
      ],
    })
    expect(keysOf(x.ancestors)).toEqual(['loop-y'])
    expect(x).toMatchObject({ node_count: 4, truncated: false })
    // From W the chain of parents is W → X → Y → X …: listed once each, top-most first.
    const w = await ok(a, '/v1/sessions/loop-w/tree')
    expect(keysOf(w.ancestors)).toEqual(['loop-y', 'loop-x'])
    expect(shape(w.root)).toEqual({ key: 'loop-w', depth: 0, children: [] })

    const self = await ok(a, '/v1/sessions/loop-self/tree')
    expect(shape(self.root)).toEqual({ key: 'loop-self', depth: 0, children: [] })
    expect(self.ancestors).toEqual([])
    const detail = await ok(a, '/v1/sessions/loop-self')
    expect(detail).toMatchObject({ children: [], children_count: 0, children_truncated: false })
    expect(keysOf((await ok(a, '/v1/sessions/loop-y')).children)).toEqual(['loop-x', 'loop-z'])
  })

  test('a fan-out past the bound: the detail inlines 200 children, the tree stops at 10,000 sessions', async () => {
    const hub = crypto.randomUUID()
    await db.owner`insert into sessions (org_id, id, session_key, started_at) values (${a.org_id}, ${hub}, 'hub', ${at(3000)})`
    await db.owner`
      insert into sessions (org_id, session_key, parent_key, parent_id, started_at)
      select ${a.org_id}, 'hub:sub:' || i, 'hub', ${hub}::uuid, ${at(3001)}::timestamptz + i * interval '1 ms'
        from generate_series(1, 10050) i`
    const detail = await ok(a, '/v1/sessions/hub')
    expect(detail.children).toHaveLength(200)
    expect(detail.children[0].session_key).toBe('hub:sub:1')
    expect(detail).toMatchObject({ children_count: 10050, children_truncated: true })
    const tree = await ok(a, '/v1/sessions/hub/tree')
    expect(tree).toMatchObject({ node_count: 10_000, truncated: true })
    // Which sessions of the deepest level kept is not specified when it is cut; siblings stay oldest first.
    expect(tree.root.children).toHaveLength(9_999)
    const started = tree.root.children.map((c: any) => c.started_at)
    expect(started).toEqual([...started].sort())
    expect(tree.root.children.every((c: any) => c.session_key.startsWith('hub:sub:') && c.depth === 1)).toBe(true)
  })
})
