/**
 * Ingest completeness (issue 9, docs/ingest-stats.md) end to end on real Postgres: events sent
 * with a machine-bound service token are that machine's on both ingest routes; `GET
 * /v1/ingest/stats` counts a known mix exactly per (day, machine) — new, duplicates within and
 * across batches, rejections by reason, redactions, drops reported on batches and heartbeats,
 * stored and the receive → queryable lag after the pipeline ran; pages, filters, bad parameters,
 * who may read, and another org seeing nothing of it. The pipeline is driven with drainOnce.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { normalizeIngestItem } from '../../src/features/ingest/events.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { applySessions } from '../../src/features/sessions/consumer.ts'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'
import { eventually } from '../helpers/wait.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg
/** Org A's two machines and their service tokens (minted at registration). */
let m1: { id: string; token: string }
let m2: { id: string; token: string }

const today = () => new Date().toISOString().slice(0, 10)
const daysAgo = (n: number) => new Date(Date.now() - n * 86_400_000).toISOString().slice(0, 10)
const pipeline = () => drainOnce(db.app, 'pipeline', storeEvents)
const post = (token: string, path: string, json: unknown) => t.call('POST', path, { token, json })
const stats = (token: string, query = '') => t.call('GET', `/v1/ingest/stats${query}`, { token })

async function register(hostname: string) {
  const r = await post(a.deploy_token, '/v1/machines/register', {
    machine_id: crypto.randomUUID().replace(/-/g, ''),
    hostname,
    os: 'darwin',
    arch: 'arm64',
    agent_version: '0.10.0',
  })
  expect(r.status).toBe(201)
  return { id: r.body.machine_id as string, token: r.body.service_token as string }
}

const secretEvent = () =>
  v2Event({
    arguments_json: JSON.stringify({ command: 'curl -H "Authorization: Bearer ghp_abcdefghijklmnopqrstuvwxyz0123456789AB" x' }),
  })
/** Secrets ingest replaces in `e`, as the normaliser counts them. */
const redactionsOf = (e: unknown) => {
  const r = normalizeIngestItem(e, '/events/0', Date.now())
  if (!r.ok) throw new Error('not a valid event')
  return r.event.redactions
}

// The known mix, sent once in beforeAll and asserted by the tests below.
const e1 = v2Event({ session_id: 'stats-1' })
const e2 = v2Event({ session_id: 'stats-1' })
const e3 = v2Event({ session_id: 'stats-1' })
const secret = secretEvent()

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
  m1 = await register('alice-mbp')
  m2 = await register('bob-xps')

  // M1 on /v1/ingest: 2 new, a copy of one within the batch, 2 rejections of different reasons,
  // one event with a secret; 7 reported dropped.
  const first = await post(m1.token, '/v1/ingest', {
    events: [e1, e2, e2, v2Event({ timestamp: 'yesterday' }), v2Event({ risk_score: 500 }), secret],
    dropped_events: 7,
  })
  expect(first.status).toBe(207)
  expect(first.body).toMatchObject({ accepted: 3, duplicates: 1, rejected: 2 })
  await pipeline()
  // M1 on /v1/events/ingest: e1 again (already stored: a duplicate across batches) and e3.
  const second = await post(m1.token, '/v1/events/ingest', { events: [e1, e3], dropped_events: null })
  expect(second.body).toMatchObject({ accepted: 1, duplicates: 1, rejected: 0 })
  // M1's heartbeat, sent with the org's deploy token, reports 2 more drops.
  expect((await post(a.deploy_token, `/v1/machines/${m1.id}/heartbeat`, { uptime: 10, dropped_events: 2 })).status).toBe(200)

  // M2: daemon events on the machines API (3 dropped) and a heartbeat (5 dropped).
  const daemon = (n: number) => ({ event_id: `evt-${Date.now()}-${n}`, action: 'tool:Bash', agent: 'claude', risk_score: 10 })
  const third = await post(m2.token, `/v1/machines/${m2.id}/events`, { events: [daemon(1), daemon(2)], dropped_events: 3 })
  expect(third.body).toMatchObject({ accepted: 2 })
  expect((await post(m2.token, `/v1/machines/${m2.id}/heartbeat`, { dropped_events: 5 })).status).toBe(200)

  // No machine: the org's deploy token.
  expect((await post(a.deploy_token, '/v1/ingest', { events: [v2Event(), v2Event()] })).body).toMatchObject({ accepted: 2 })
  // Org B, on the same day: must never show in A's statistics.
  expect((await post(b.deploy_token, '/v1/ingest', { events: [v2Event(), v2Event()], dropped_events: 11 })).status).toBe(200)
  await pipeline()
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

const zeroRejected = {
  too_deep: 0,
  too_many_values: 0,
  too_large: 0,
  not_object: 0,
  unsupported_schema_version: 0,
  missing_field: 0,
  wrong_type: 0,
  too_long: 0,
  invalid_characters: 0,
  invalid_timestamp: 0,
  invalid_risk_score: 0,
}

describe('machine attribution', () => {
  test('events sent with a machine-bound service token are that machine’s, on /v1/ingest and /v1/events/ingest', async () => {
    const rows = await db.owner<{ event_id: string; machine_id: string | null }[]>`
      select event_id, machine_id from actions where org_id = ${a.org_id} and event_id in ${db.owner([e1.event_id, e3.event_id, secret.event_id])}`
    expect(rows).toHaveLength(3)
    for (const r of rows) expect(r.machine_id).toBe(m1.id)
    // The sessions consumer reads the same message: the session names the machine too.
    await drainOnce(db.app, 'sessions', applySessions)
    const [s] = await db.owner<{ machine_id: string | null }[]>`
      select machine_id from sessions where org_id = ${a.org_id} and session_key = 'stats-1'`
    expect(s!.machine_id).toBe(m1.id)
  })
})

describe('GET /v1/ingest/stats', () => {
  test('counts the known mix exactly per machine, with the lag once stored', async () => {
    const res = await stats(a.admin_key)
    expect(res.status).toBe(200)
    expect(res.body.until).toBe(today())
    expect(res.body.since).toBe(daysAgo(6))
    expect(res.body.next_cursor).toBeNull()
    const byMachine = new Map<string | null, any>(res.body.days.map((d: any) => [d.machine_id, d]))
    expect(res.body.days).toHaveLength(3)
    for (const d of res.body.days) expect(d.day).toBe(today())

    const redactions = redactionsOf(secret)
    expect(redactions).toBeGreaterThan(0)
    const one = byMachine.get(m1.id)
    expect({ ...one, lag_ms: undefined }).toEqual({
      day: today(),
      machine_id: m1.id,
      hostname: 'alice-mbp',
      received: 8,
      accepted: 4,
      duplicates: 2,
      rejected: { ...zeroRejected, invalid_timestamp: 1, invalid_risk_score: 1 },
      rejected_total: 2,
      redactions,
      edge_dropped: 9,
      stored: 4,
      lag_ms: undefined,
    })
    const two = byMachine.get(m2.id)
    expect(two).toMatchObject({ hostname: 'bob-xps', received: 2, accepted: 2, duplicates: 0, edge_dropped: 8, stored: 2 })
    const none = byMachine.get(null)
    expect(none).toMatchObject({ hostname: null, received: 2, accepted: 2, edge_dropped: 0, stored: 2, redactions: 0 })

    for (const d of res.body.days) {
      expect(d.lag_ms.p50).toBeGreaterThanOrEqual(0)
      expect(d.lag_ms.p50).toBeLessThanOrEqual(d.lag_ms.p99)
      expect(d.lag_ms.p99).toBeLessThanOrEqual(d.lag_ms.max)
    }
    expect(res.body.totals).toMatchObject({
      received: 12,
      accepted: 8,
      duplicates: 2,
      rejected_total: 2,
      redactions,
      edge_dropped: 17,
      stored: 8,
    })
    expect(res.body.totals.lag_ms.max).toBe(Math.max(...res.body.days.map((d: any) => d.lag_ms.max)))
  })

  test('lag is null until the pipeline stored something; accepted then stored', async () => {
    const [before] = await db.owner<{ n: string }[]>`
      select coalesce(sum(stored), 0)::text as n from ingest_stats where org_id = ${a.org_id}`
    const m3 = await register('carol-air')
    await post(m3.token, '/v1/ingest', { events: [v2Event()] })
    const pending = await stats(a.admin_key, `?machine_id=${m3.id}`)
    expect(pending.body.days).toEqual([expect.objectContaining({ machine_id: m3.id, accepted: 1, stored: 0, lag_ms: null })])
    await pipeline()
    const done = await stats(a.admin_key, `?machine_id=${m3.id}`)
    expect(done.body.days[0]).toMatchObject({ accepted: 1, stored: 1 })
    expect(done.body.days[0].lag_ms).not.toBeNull()
    const [after] = await db.owner<{ n: string }[]>`
      select coalesce(sum(stored), 0)::text as n from ingest_stats where org_id = ${a.org_id}`
    expect(Number(after!.n) - Number(before!.n)).toBe(1)
  })

  test('machine_id filters rows and totals; an unknown or another org’s machine matches nothing', async () => {
    const res = await stats(a.admin_key, `?machine_id=${m2.id.toUpperCase()}`)
    expect(res.status).toBe(200)
    expect(res.body.days.map((d: any) => d.machine_id)).toEqual([m2.id])
    expect(res.body.totals).toMatchObject({ received: 2, edge_dropped: 8 })
    const unknown = await stats(a.admin_key, `?machine_id=${crypto.randomUUID()}`)
    expect(unknown.body.days).toEqual([])
    expect(unknown.body.totals).toMatchObject({ received: 0, stored: 0, lag_ms: null })
    const fromB = await stats(b.admin_key, `?machine_id=${m1.id}`)
    expect(fromB.status).toBe(200)
    expect(fromB.body.days).toEqual([])
  })

  test('another org sees only its own counts', async () => {
    const res = await stats(b.admin_key)
    expect(res.status).toBe(200)
    expect(res.body.days).toEqual([expect.objectContaining({ machine_id: null, received: 2, accepted: 2, edge_dropped: 11 })])
    expect(res.body.totals).toMatchObject({ received: 2, edge_dropped: 11, stored: 2 })
  })

  test('pages by (day, machine) with a cursor: no row twice, none missed; totals on every page', async () => {
    const all = (await stats(a.admin_key)).body
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const res = await stats(a.admin_key, `?limit=1${cursor ? `&cursor=${cursor}` : ''}`)
      expect(res.status).toBe(200)
      expect(res.body.days).toHaveLength(1)
      expect(res.body.totals).toEqual(all.totals)
      seen.push(`${res.body.days[0].day}/${res.body.days[0].machine_id}`)
      cursor = res.body.next_cursor
      pages++
    } while (cursor && pages < 10)
    expect(seen).toEqual(all.days.map((d: any) => `${d.day}/${d.machine_id}`))
  })

  test('splits by UTC day, newest first, and a window selects its days', async () => {
    // Org B's rows of today become yesterday's, then B ingests again today.
    await db.owner`update ingest_stats set day = day - 1 where org_id = ${b.org_id}`
    await post(b.deploy_token, '/v1/ingest', { events: [v2Event()] })
    const res = await stats(b.admin_key)
    expect(res.body.days.map((d: any) => [d.day, d.received])).toEqual([
      [today(), 1],
      [daysAgo(1), 2],
    ])
    expect(res.body.totals.received).toBe(3)
    const yesterday = await stats(b.admin_key, `?since=${daysAgo(1)}&until=${daysAgo(1)}`)
    expect(yesterday.body.days.map((d: any) => d.day)).toEqual([daysAgo(1)])
    expect(yesterday.body.totals).toMatchObject({ received: 2, edge_dropped: 11 })
    const old = await stats(b.admin_key, `?since=${daysAgo(89)}&until=${daysAgo(2)}`)
    expect(old.body.days).toEqual([])
  })

  test('bad parameters answer 400 naming the parameter', async () => {
    const cases: [string, string][] = [
      ['?since=2026-02-30', '/since'],
      ['?until=20261201', '/until'],
      [`?since=${today()}&until=${daysAgo(1)}`, '/since'],
      [`?since=${daysAgo(90)}`, '/since'],
      ['?machine_id=not-a-uuid', '/machine_id'],
      ['?limit=0', '/limit'],
      ['?limit=201', '/limit'],
      ['?limit=1.5', '/limit'],
      ['?org_id=x', '/org_id'],
    ]
    for (const [query, path] of cases) {
      const res = await stats(a.admin_key, query)
      expect({ query, status: res.status }).toEqual({ query, status: 400 })
      expect(res.headers.get('content-type')).toContain('application/problem+json')
      expect(JSON.stringify(res.body)).toContain(path)
    }
    expect((await stats(a.admin_key, '?cursor=bm90LWEtY3Vyc29y')).status).toBe(400)
    // 90 days, both ends included, is the longest window allowed.
    expect((await stats(a.admin_key, `?since=${daysAgo(89)}`)).status).toBe(200)
  })

  test('needs the read scope: the admin key reads; a deploy token and a machine’s service token do not', async () => {
    expect((await stats(a.admin_key)).status).toBe(200)
    expect((await stats(a.deploy_token)).status).toBe(403)
    expect((await stats(m1.token)).status).toBe(403)
    expect((await t.call('GET', '/v1/ingest/stats')).status).toBe(401)
  })
})

describe('dropped_events', () => {
  test('anything but a non-negative bounded integer or null is a 422 naming it, and nothing is counted', async () => {
    const [before] = await db.owner<{ n: string }[]>`
      select coalesce(sum(received), 0)::text as n from ingest_stats where org_id = ${a.org_id}`
    for (const bad of [-1, 1.5, '3', 1_000_000_001, true]) {
      for (const path of ['/v1/ingest', '/v1/events/ingest', `/v1/machines/${m1.id}/events`]) {
        const res = await post(m1.token, path, { events: [v2Event()], dropped_events: bad })
        expect({ path, bad, status: res.status }).toEqual({ path, bad, status: 422 })
        expect(res.body.errors).toEqual([expect.objectContaining({ path: '/dropped_events' })])
      }
      const hb = await post(m1.token, `/v1/machines/${m1.id}/heartbeat`, { dropped_events: bad })
      expect({ bad, status: hb.status }).toEqual({ bad, status: 422 })
    }
    const [after] = await db.owner<{ n: string }[]>`
      select coalesce(sum(received), 0)::text as n from ingest_stats where org_id = ${a.org_id}`
    expect(after!.n).toBe(before!.n)
  })

  test('counted in quint_ingest_edge_dropped_total by report, without an org label', async () => {
    const text = await (await t.app.fetch(new Request('http://test/metrics'))).text()
    const value = (report: string) =>
      Number(new RegExp(`^quint_ingest_edge_dropped_total\\{report="${report}"\\} (\\S+)$`, 'm').exec(text)?.[1])
    expect(value('batch')).toBe(7 + 3 + 11)
    expect(value('heartbeat')).toBe(2 + 5)
    expect(text).not.toMatch(/quint_ingest_[a-z_]+\{[^}]*org/)
  })

  test('the pipeline’s lags reach quint_ingest_queryable_lag_seconds', async () => {
    const count = async () => {
      const text = await (await t.app.fetch(new Request('http://test/metrics'))).text()
      return Number(/^quint_ingest_queryable_lag_seconds_count (\S+)$/m.exec(text)?.[1] ?? 0)
    }
    const before = await count()
    await post(a.deploy_token, '/v1/ingest', { events: [v2Event(), v2Event(), v2Event()] })
    await pipeline()
    // Delivered as a message (the pipeline may be another thread): other apps of this process may add theirs.
    expect(await eventually(count, (n) => n >= before + 3)).toBeGreaterThanOrEqual(before + 3)
  })
})
