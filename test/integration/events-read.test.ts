/**
 * The events read API on a real Postgres (issue 9, docs/events.md): every filter of
 * `GET /v1/events` shown to include and to exclude, keyset pages walked, the window rule, bad
 * input (400 naming the parameter, 404 for any id that is not this org's), `GET /v1/events/{id}`,
 * `GET /v1/events/stats` against known data (risk bands at their edges), and a property test of
 * cursor pagination while another task keeps ingesting. Events go in through /v1/ingest and the
 * pipeline is drained explicitly, so every assertion is deterministic.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { applySessions } from '../../src/features/sessions/consumer.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg
let machine: string
let service: string
const MIN = 60_000
const HOUR = 60 * MIN
const DAY = 24 * HOUR
const BASE = Date.now() - 3 * HOUR
const at = (minutes: number) => new Date(BASE + minutes * MIN).toISOString()
const ago = (ms: number) => new Date(Date.now() - ms).toISOString()

/** Org A's fixture: one distinguishing trait per filter (ids are the keys of `ids`). */
const F = {
  f1: v2Event({
    timestamp: at(1),
    agent_id: 'ag-1',
    session_id: 'sess-1',
    tool_name: 'Bash',
    action: 'tool:Bash',
    risk_score: 5,
  }),
  f2: v2Event({ timestamp: at(2), agent_id: 'ag-1', session_id: 'sess-1', tool_name: 'Read', decision: 'block', risk_score: 90 }),
  f3: v2Event({
    timestamp: at(3),
    agent_id: 'ag-2',
    session_id: 'sess-2',
    tool_name: 'WebFetch',
    action: 'http:evil_host%x:get',
    risk_score: 50,
    platform: 'cursor',
  }),
  f4: v2Event({
    timestamp: at(4),
    agent_id: 'ag-2',
    session_id: 'sess-2',
    tool_name: undefined,
    action_type: 'PROCESS_EXEC',
    platform: 'cursor',
    arguments_json: JSON.stringify({ command: 'curl -H "Authorization: Bearer ghp_abcdefghijklmnopqrstuvwxyz0123456789AB" x' }),
  }),
  /** Sent with the machine's service token: the only event with a machine. */
  f5: v2Event({ timestamp: at(5), agent_id: 'ag-3', session_id: 'sess-3', action_type: 'FILE_READ', risk_score: 30 }),
  /** Ten days old: outside the default window of an unanchored filtered list. */
  f6: v2Event({
    timestamp: ago(10 * DAY),
    agent_id: 'ag-1',
    session_id: 'sess-1',
    tool_name: 'Bash',
    decision: 'block',
    risk_score: 81,
  }),
}
type Name = keyof typeof F
const ids: Record<string, Name> = {}

const pipeline = () => drainOnce(db.app, 'pipeline', storeEvents)
async function ingest(token: string, events: unknown[]) {
  const res = await t.call('POST', '/v1/ingest', { token, json: { events } })
  expect(res.status).toBe(200)
  expect(res.body.accepted).toBe(events.length)
  await pipeline()
}
const get = (path: string, token = a.admin_key) => t.call('GET', path, { token })
const list = (params: Record<string, string | number | boolean>, token = a.admin_key) =>
  get(`/v1/events?${new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)]))}`, token)
/** The fixture names a filter returns, in response order. */
async function names(params: Record<string, string | number | boolean>): Promise<string[]> {
  const res = await list({ limit: 200, ...params })
  expect(res.status).toBe(200)
  expect(res.body.next_cursor).toBeNull()
  return res.body.events.map((e: { id: string }) => ids[e.id] ?? `unknown:${e.id}`)
}
function expectProblem(res: Awaited<ReturnType<typeof t.call>>, status: number, param?: string) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toContain('application/problem+json')
  if (param) expect(res.body.errors.map((e: { path: string }) => e.path)).toContain(`/${param}`)
}

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
  const r = await t.call('POST', '/v1/machines/register', {
    token: a.deploy_token,
    json: { machine_id: 'e'.repeat(32), hostname: 'laptop-a.local', os: 'darwin', arch: 'arm64', agent_version: '1.0.0' },
  })
  machine = r.body.machine_id
  service = r.body.service_token
  const { f5, ...rest } = F
  await ingest(a.deploy_token, Object.values(rest))
  await ingest(service, [f5])
  // Org B: the same agent, session and tool names; none of it may reach org A.
  await ingest(b.deploy_token, [v2Event({ timestamp: at(6), agent_id: 'ag-1', session_id: 'sess-1', tool_name: 'Bash' })])
  const rows = await db.owner<{ id: string; event_id: string }[]>`select id, event_id from actions where org_id = ${a.org_id}`
  for (const row of rows) ids[row.id] = (Object.keys(F) as Name[]).find((n) => F[n].event_id === row.event_id)!
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

describe('GET /v1/events filters', () => {
  test('no filter: every event of the org, newest first, none of another org', async () => {
    expect(await names({})).toEqual(['f5', 'f4', 'f3', 'f2', 'f1', 'f6'])
    const other = await list({}, b.admin_key)
    expect(other.body.events).toHaveLength(1)
    expect(ids[other.body.events[0].id]).toBeUndefined()
  })

  test('agent, session (key or UUID), machine, tool: anchored, whole history', async () => {
    expect(await names({ agent_id: 'ag-1' })).toEqual(['f2', 'f1', 'f6'])
    expect(await names({ agent_id: 'ag-2' })).toEqual(['f4', 'f3'])
    expect(await names({ agent_id: 'nobody' })).toEqual([])
    expect(await names({ session_id: 'sess-2' })).toEqual(['f4', 'f3'])
    await drainOnce(db.app, 'sessions', applySessions)
    const [s] = await db.owner<{ id: string }[]>`select id from sessions where org_id = ${a.org_id} and session_key = 'sess-2'`
    expect(await names({ session_id: s!.id })).toEqual(['f4', 'f3'])
    expect(await names({ session_id: s!.id.toUpperCase() })).toEqual(['f4', 'f3'])
    expect(await names({ session_id: crypto.randomUUID() })).toEqual([])
    expect(await names({ machine_id: machine })).toEqual(['f5'])
    expect(await names({ machine_id: crypto.randomUUID() })).toEqual([])
    expect(await names({ tool_name: 'Bash' })).toEqual(['f5', 'f1', 'f6'])
    expect(await names({ tool_name: 'bash' })).toEqual([])
    // Alone, an index-leading filter reads its whole history, the old f6 included; with a filter
    // no index leads, only a session lifts the window (an agent may hold most of the history).
    expect(await names({ agent_id: 'ag-1', decision: 'block' })).toEqual(['f2'])
    expect(await names({ agent_id: 'ag-1', decision: 'block', since: ago(11 * DAY) })).toEqual(['f2', 'f6'])
    expect(await names({ session_id: 'sess-1', decision: 'block' })).toEqual(['f2', 'f6'])
  })

  test('action type, decision, platform, blocked, redacted: exact, within the default 24 h', async () => {
    expect(await names({ action_type: 'PROCESS_EXEC' })).toEqual(['f4'])
    expect(await names({ action_type: 'tools/call' })).toEqual(['f3', 'f2', 'f1'])
    expect(await names({ decision: 'block' })).toEqual(['f2'])
    expect(await names({ decision: 'block', since: ago(20 * DAY) })).toEqual(['f2', 'f6'])
    expect(await names({ decision: 'allow' })).toEqual(['f5', 'f4', 'f3', 'f1'])
    expect(await names({ platform: 'cursor' })).toEqual(['f4', 'f3'])
    expect(await names({ platform: 'windsurf' })).toEqual([])
    expect(await names({ blocked: true })).toEqual(['f2'])
    expect(await names({ blocked: false })).toEqual(['f5', 'f4', 'f3', 'f1'])
    expect(await names({ redacted: true })).toEqual(['f4'])
    expect(await names({ redacted: false })).toEqual(['f5', 'f3', 'f2', 'f1'])
  })

  test('risk_min and risk_max bound the score inclusively; unscored events are left out', async () => {
    expect(await names({ risk_min: 81 })).toEqual(['f2'])
    expect(await names({ risk_min: 81, since: ago(20 * DAY) })).toEqual(['f2', 'f6'])
    expect(await names({ risk_min: 50, risk_max: 50 })).toEqual(['f3'])
    expect(await names({ risk_max: 10 })).toEqual(['f1'])
    expect(await names({ risk_min: 0 })).toEqual(['f5', 'f3', 'f2', 'f1'])
    expect(await names({ risk_min: 30, risk_max: 89 })).toEqual(['f5', 'f3'])
  })

  test('since is inclusive, until exclusive', async () => {
    expect(await names({ since: at(2), until: at(4) })).toEqual(['f3', 'f2'])
    expect(await names({ since: at(4) })).toEqual(['f5', 'f4'])
    expect(await names({ until: at(2) })).toEqual(['f1', 'f6'])
    expect(await names({ since: at(3), until: at(3) })).toEqual([])
  })

  test('q: case-insensitive substring of tool name or action; % and _ are literal', async () => {
    expect(await names({ q: 'BAS' })).toEqual(['f5', 'f1'])
    expect(await names({ q: 'evil' })).toEqual(['f3'])
    expect(await names({ q: '%' })).toEqual(['f3'])
    expect(await names({ q: '_' })).toEqual(['f3'])
    expect(await names({ q: 'zzz' })).toEqual([])
    expect(await names({ q: 'bash', since: ago(7 * DAY - MIN) })).toEqual(['f5', 'f1'])
    // Beside an agent, q keeps its window; beside a session, it reads the session's history.
    expect(await names({ q: 'bash', agent_id: 'ag-1' })).toEqual(['f1'])
    expect(await names({ q: 'bash', session_id: 'sess-1' })).toEqual(['f1', 'f6'])
  })

  test('pages of any size walk every event once, in order, and end with a null cursor', async () => {
    const all = await names({})
    for (const limit of [1, 2, 4]) {
      const seen: string[] = []
      let cursor: string | null = null
      do {
        const res = await list({ limit, ...(cursor ? { cursor } : {}) })
        expect(res.status).toBe(200)
        expect(res.body.events.length).toBeLessThanOrEqual(limit)
        seen.push(...res.body.events.map((e: { id: string }) => ids[e.id]))
        cursor = res.body.next_cursor
      } while (cursor)
      expect(seen).toEqual(all)
    }
  })
})

describe('GET /v1/events/{id}', () => {
  test('the event in the list shape with what we store beyond it', async () => {
    const id = Object.keys(ids).find((k) => ids[k] === 'f4')!
    const res = await get(`/v1/events/${id.toUpperCase()}`)
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({
      id,
      event_id: F.f4.event_id,
      session_id: 'sess-2',
      agent_id: 'ag-2',
      action_type: 'PROCESS_EXEC',
      platform: 'cursor',
      redacted: true,
      blocked: false,
      risk_score: null,
      risk_band: null,
      timestamp: F.f4.timestamp,
      machine_id: null,
    })
    expect(JSON.stringify(res.body.arguments)).not.toContain('ghp_')
    expect(res.body).toEqual((await list({ since: at(4), until: at(5) })).body.events[0])
    const f5 = Object.keys(ids).find((k) => ids[k] === 'f5')!
    expect((await get(`/v1/events/${f5}`)).body).toMatchObject({ machine_id: machine, risk_band: 'low' })
  })

  test("a malformed id, an unknown id and another org's id all answer 404", async () => {
    const [theirs] = await db.owner<{ id: string }[]>`select id from actions where org_id = ${b.org_id}`
    for (const id of ['not-a-uuid', crypto.randomUUID(), theirs!.id, '%00', 'x'.repeat(300)]) {
      expectProblem(await get(`/v1/events/${encodeURIComponent(id)}`), 404)
    }
    expect((await get(`/v1/events/${theirs!.id}`, b.admin_key)).status).toBe(200)
  })

  test('reading needs the read scope: a deploy token and a machine token are refused', async () => {
    for (const token of [a.deploy_token, service]) {
      expect((await list({}, token)).status).toBe(403)
      expect((await get('/v1/events/stats', token)).status).toBe(403)
    }
  })
})

describe('bad input answers 400 naming the parameter', () => {
  const cases: [Record<string, string>, string][] = [
    [{ foo: '1' }, 'foo'],
    [{ blocked: 'maybe' }, 'blocked'],
    [{ redacted: 'yes' }, 'redacted'],
    [{ risk_min: '101' }, 'risk_min'],
    [{ risk_max: '-1' }, 'risk_max'],
    [{ risk_min: 'abc' }, 'risk_min'],
    [{ risk_min: '5.5' }, 'risk_min'],
    [{ risk_min: '1e1' }, 'risk_min'],
    [{ risk_min: '60', risk_max: '40' }, 'risk_min'],
    [{ since: 'yesterday' }, 'since'],
    [{ until: '2026-02-31T00:00:00Z' }, 'until'],
    [{ since: at(5), until: at(1) }, 'since'],
    [{ machine_id: 'laptop-1' }, 'machine_id'],
    [{ limit: '0' }, 'limit'],
    [{ limit: '201' }, 'limit'],
    [{ limit: '2.5' }, 'limit'],
    [{ q: '' }, 'q'],
    [{ q: 'x'.repeat(101) }, 'q'],
    [{ agent_id: 'a'.repeat(257) }, 'agent_id'],
    [{ decision: 'block', since: ago(31 * DAY) }, 'since'],
    [{ decision: 'block', until: ago(0), since: ago(30 * DAY + MIN) }, 'since'],
    [{ q: 'bash', since: ago(7 * DAY + MIN) }, 'since'],
  ]
  for (const [params, param] of cases) {
    test(`${JSON.stringify(params).slice(0, 80)} → 400 /${param}`, async () => {
      expectProblem(await list(params), 400, param)
    })
  }

  test('windows: 30 days for filters no index leads unless a session bounds them; any length otherwise', async () => {
    expect((await list({ decision: 'block', since: ago(30 * DAY - MIN) })).status).toBe(200)
    expectProblem(await list({ agent_id: 'ag-1', decision: 'block', since: ago(300 * DAY) }), 400, 'since')
    expect((await list({ session_id: 'sess-1', decision: 'block', since: ago(300 * DAY) })).status).toBe(200)
    expect((await list({ agent_id: 'ag-1', since: ago(300 * DAY) })).status).toBe(200)
    expect((await list({ since: ago(300 * DAY) })).status).toBe(200)
  })

  test('a malformed or doctored cursor is a 400, never a 500', async () => {
    const doctored = Buffer.from(JSON.stringify(['2026-13-45 99:00:00+00', crypto.randomUUID()])).toString('base64url')
    for (const cursor of ['garbage', doctored, Buffer.from('[1,2]').toString('base64url')]) {
      expectProblem(await list({ cursor }), 400)
    }
  })

  test('stats: unknown parameter, reversed range, a window over 30 days, a malformed machine', async () => {
    expectProblem(await get('/v1/events/stats?tool_name=Bash'), 400, 'tool_name')
    expectProblem(await get(`/v1/events/stats?since=${at(5)}&until=${at(1)}`), 400, 'since')
    expectProblem(await get(`/v1/events/stats?since=${ago(31 * DAY)}`), 400, 'since')
    expectProblem(await get('/v1/events/stats?machine_id=nope'), 400, 'machine_id')
  })
})

// Stats and the pagination property run in orgs of their own, so their counts are exact.
describe('GET /v1/events/stats', () => {
  const H0 = Math.floor(Date.now() / HOUR) * HOUR - 5 * HOUR
  const h = (minutes: number) => new Date(H0 + minutes * MIN).toISOString()
  let s: CreatedOrg
  let sMachine: string

  beforeAll(async () => {
    s = await createOrg(db.app, 'org S', 'cli')
    const r = await t.call('POST', '/v1/machines/register', {
      token: s.deploy_token,
      json: { machine_id: 'd'.repeat(32), hostname: 'laptop-s.local', os: 'linux', arch: 'x86_64', agent_version: '1.0.0' },
    })
    sMachine = r.body.machine_id
    const e = (minutes: number, tool: string, agent: string, risk: number | null, decision?: string) =>
      v2Event({ timestamp: h(minutes), tool_name: tool, agent_id: agent, risk_score: risk ?? undefined, decision })
    // Risk at every band edge (SPEC §16.1): 0 10 | 11 30 | 31 60 | 61 80 | 81 100, and one unscored.
    await ingest(s.deploy_token, [
      e(10, 'Bash', 's-1', 10, 'allow'),
      e(10, 'Bash', 's-1', 11, 'allow'),
      e(11, 'Bash', 's-1', 30, 'block'),
      e(12, 'Read', 's-2', 31, 'allow'),
      e(13, 'Read', 's-2', 60, 'allow'),
      e(14, 'Bash', 's-1', 0, undefined),
      e(125, 'Read', 's-2', 61, 'block'),
      e(126, 'Bash', 's-1', 80, 'allow'),
      e(127, 'Bash', 's-1', 81, 'allow'),
      ...Array.from({ length: 12 }, (_, i) => e(130, `T${String(i + 1).padStart(2, '0')}`, 's-4', null, 'allow')),
      // Just outside [H0, H0 + 3 h).
      e(-1, 'Bash', 's-1', 90, 'block'),
      e(180, 'Bash', 's-1', 90, 'block'),
    ])
    const viaMachine = await t.call('POST', '/v1/ingest', {
      token: r.body.service_token,
      json: { events: [e(128, 'Edit', 's-3', 100, 'block'), e(129, 'Edit', 's-3', null, 'allow')] },
    })
    expect(viaMachine.body.accepted).toBe(2)
    await pipeline()
  }, HOOK_TIMEOUT_MS)

  const stats = (params: Record<string, string>) => get(`/v1/events/stats?${new URLSearchParams(params)}`, s.admin_key)

  test('counts by decision, by band at the band edges, every hour, and the top 10s', async () => {
    const res = await stats({ since: h(0), until: h(180) })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({
      since: h(0),
      until: h(180),
      total: 23,
      by_decision: { allow: 19, block: 3, none: 1 },
      by_risk_band: { none: 2, low: 2, medium: 2, high: 2, critical: 2, unscored: 13 },
      hourly: [
        { hour: h(0), total: 6, blocked: 1, by_decision: { allow: 4, block: 1, none: 1 } },
        { hour: h(60), total: 0, blocked: 0, by_decision: {} },
        { hour: h(120), total: 17, blocked: 2, by_decision: { allow: 15, block: 2 } },
      ],
      top_tools: [
        { tool_name: 'Bash', count: 6 },
        { tool_name: 'Read', count: 3 },
        { tool_name: 'Edit', count: 2 },
        ...['T01', 'T02', 'T03', 'T04', 'T05', 'T06', 'T07'].map((tool_name) => ({ tool_name, count: 1 })),
      ],
      top_agents: [
        { agent_id: 's-4', count: 12 },
        { agent_id: 's-1', count: 6 },
        { agent_id: 's-2', count: 3 },
        { agent_id: 's-3', count: 2 },
      ],
      top_machines: [{ machine_id: sMachine, hostname: 'laptop-s.local', count: 2 }],
    })
  })

  test('machine and agent filters; a window off the hour keeps partial first and last hours', async () => {
    const m = await stats({ since: h(0), until: h(180), machine_id: sMachine })
    expect(m.body).toMatchObject({ total: 2, by_decision: { allow: 1, block: 1 }, top_agents: [{ agent_id: 's-3', count: 2 }] })
    const g = await stats({ since: h(0), until: h(180), agent_id: 's-2' })
    expect(g.body).toMatchObject({ total: 3, by_risk_band: { none: 0, low: 0, medium: 2, high: 1, critical: 0, unscored: 0 } })
    const off = await stats({ since: h(11), until: h(126) })
    expect(off.body.hourly.map((x: { hour: string; total: number }) => [x.hour, x.total])).toEqual([
      [h(0), 4],
      [h(60), 0],
      [h(120), 1],
    ])
    expect(off.body.total).toBe(5)
    expect((await stats({ since: h(0), until: h(0) })).body).toMatchObject({ total: 0, hourly: [] })
    // Another org sees none of it.
    const other = await get(`/v1/events/stats?since=${h(0)}&until=${h(180)}`, a.admin_key)
    expect(JSON.stringify(other.body)).not.toMatch(/"s-[1-4]"|"T01"|laptop-s/)
  })

  test('default: the 24 hours before now, every hour present', async () => {
    const res = await stats({})
    expect(res.status).toBe(200)
    const span = Date.parse(res.body.until) - Date.parse(res.body.since)
    expect(span).toBe(DAY)
    expect(Math.abs(Date.parse(res.body.until) - Date.now())).toBeLessThan(10 * MIN)
    expect(res.body.total).toBe(25)
    expect(res.body.hourly.length).toBeGreaterThanOrEqual(24)
    expect(res.body.hourly.length).toBeLessThanOrEqual(25)
  })
})

/** mulberry32: a small seeded generator, so a failing seed can be replayed. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

describe('cursor pagination while events keep arriving (property)', () => {
  let p: CreatedOrg
  const PAST = 2 * DAY
  beforeAll(async () => {
    p = await createOrg(db.app, 'org P', 'cli')
    const random = rng(1)
    const stamps: string[] = []
    const events = Array.from({ length: 120 }, (_, i) => {
      // One in five repeats an earlier instant to the millisecond: the id must break the tie.
      const ts = stamps.length && random() < 0.2 ? stamps[Math.floor(random() * stamps.length)]! : ago(random() * PAST)
      stamps.push(ts)
      return v2Event({ timestamp: ts, agent_id: `p-${i % 2}` })
    })
    await ingest(p.deploy_token, events)
  }, HOOK_TIMEOUT_MS)

  for (const seed of [7, 42, 1009, 65537]) {
    test(`seed ${seed}: no duplicate, no gap among the events that existed, always in order`, async () => {
      const random = rng(seed)
      const filter: Record<string, string> = seed % 2 ? { agent_id: 'p-1' } : {}
      const before = await db.owner<{ id: string }[]>`
        select id from actions where org_id = ${p.org_id} ${filter.agent_id ? db.owner`and agent_key = ${filter.agent_id}` : db.owner``}`
      let walking = true
      // The reader waits for the writer's next batch after each page, so the two always interleave.
      let rounds = 0
      let waiting: (() => void)[] = []
      const nextRound = (seenRounds: number) =>
        new Promise<void>((resolve) => (rounds > seenRounds ? resolve() : waiting.push(resolve)))
      const writer = async () => {
        for (let round = 0; walking; round++) {
          const batch = Array.from({ length: 1 + Math.floor(random() * 4) }, () =>
            // Interleaved: new events at the newest end and events back in the past.
            v2Event({ timestamp: random() < 0.5 ? new Date().toISOString() : ago(random() * PAST), agent_id: `p-${round % 2}` }),
          )
          await ingest(p.deploy_token, batch)
          rounds++
          for (const wake of waiting.splice(0)) wake()
        }
      }
      const reader = async () => {
        const seen: { id: string; timestamp: string }[] = []
        let cursor: string | null = null
        try {
          do {
            const limit = 1 + Math.floor(random() * 15)
            const res = await list({ limit, ...filter, ...(cursor ? { cursor } : {}) }, p.admin_key)
            expect(res.status).toBe(200)
            seen.push(...res.body.events)
            cursor = res.body.next_cursor
            if (cursor) await nextRound(rounds)
          } while (cursor)
        } finally {
          walking = false
        }
        return seen
      }
      const [seen] = await Promise.all([reader(), writer()])
      const got = seen.map((e) => e.id)
      expect(new Set(got).size).toBe(got.length)
      for (let i = 1; i < seen.length; i++) {
        const [x, y] = [seen[i - 1]!, seen[i]!]
        expect(x.timestamp > y.timestamp || (x.timestamp === y.timestamp && x.id > y.id)).toBe(true)
      }
      const present = new Set(got)
      expect(before.filter((r) => !present.has(r.id))).toEqual([])
      expect(before.length).toBeGreaterThan(50)
    })
  }
})
