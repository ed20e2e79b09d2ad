/**
 * `GET /v1/events/stats` reads whole hours from the pipeline's hourly counts and the partial
 * hours at the window's edges from the actions (src/features/events/rollup.ts, issue 9). With an
 * agent filter it reads the actions alone. One agent sends every event here, so both answers
 * must be the same for any window: compared over random windows, before and after late events
 * land in hours already counted, and with a machine among the top machines.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let service: string
const HOUR = 3_600_000
const SPAN = 3 * 24 * HOUR
const NOW = Date.now()

/** A small deterministic generator (mulberry32): a failing window can be replayed. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

function events(rand: () => number, n: number) {
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!
  return Array.from({ length: n }, () =>
    v2Event({
      timestamp: new Date(NOW - Math.floor(rand() * SPAN)).toISOString(),
      agent_id: 'the-agent',
      tool_name: pick(['Bash', 'Read', 'Edit', 'WebFetch', undefined]),
      decision: pick(['allow', 'block', undefined]),
      risk_score: pick([undefined, 0, 10, 11, 30, 31, 60, 61, 80, 81, 100]),
    }),
  )
}

async function ingest(token: string, batch: unknown[]) {
  for (let i = 0; i < batch.length; i += 500) {
    const res = await t.call('POST', '/v1/ingest', { token, json: { events: batch.slice(i, i + 500) } })
    expect(res.status).toBe(200)
  }
  await drainOnce(db.app, 'pipeline', storeEvents)
}

async function bothWays(since: string, until: string) {
  const q = `since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}`
  const rolled = await t.call('GET', `/v1/events/stats?${q}`, { token: a.admin_key })
  const raw = await t.call('GET', `/v1/events/stats?${q}&agent_id=the-agent`, { token: a.admin_key })
  expect(rolled.status).toBe(200)
  expect(raw.status).toBe(200)
  return { rolled: rolled.body, raw: raw.body }
}

beforeAll(async () => {
  ;({ db, t, a } = await twoOrgApp())
  const r = await t.call('POST', '/v1/machines/register', {
    token: a.deploy_token,
    json: { machine_id: 'f'.repeat(32), hostname: 'rollup.local', os: 'linux', arch: 'x64', agent_version: '1.0.0' },
  })
  service = r.body.service_token
  const rand = random(9)
  await ingest(a.deploy_token, events(rand, 700))
  await ingest(service, events(rand, 300))
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

describe('stats from hourly counts agree with stats from the rows', () => {
  test('random windows, on and off the hour, shorter than an hour and across days', async () => {
    const rand = random(42)
    for (let i = 0; i < 25; i++) {
      const since = NOW - Math.floor(rand() * SPAN)
      const length = i % 5 === 0 ? Math.floor(rand() * HOUR) + 1 : Math.floor(rand() * (NOW - since)) + 1
      // Every fifth window is on whole hours: nothing then comes from the edges.
      const [s, u] =
        i % 5 === 1 ? [Math.floor(since / HOUR) * HOUR, Math.floor(since / HOUR) * HOUR + 12 * HOUR] : [since, since + length]
      const { rolled, raw } = await bothWays(new Date(s).toISOString(), new Date(u).toISOString())
      expect(rolled).toEqual(raw)
    }
  })

  test('the whole span: every event counted once, the machine among the top machines', async () => {
    const { rolled, raw } = await bothWays(new Date(NOW - SPAN - HOUR).toISOString(), new Date(NOW + 60_000).toISOString())
    expect(rolled).toEqual(raw)
    expect(rolled.total).toBe(1000)
    expect(rolled.top_machines).toEqual([expect.objectContaining({ hostname: 'rollup.local', count: 300 })])
  })

  test('late events land in hours already counted, and a retried event is not counted twice', async () => {
    const late = events(random(7), 200)
    await ingest(a.deploy_token, late)
    await ingest(a.deploy_token, late.slice(0, 50))
    const { rolled, raw } = await bothWays(new Date(NOW - SPAN - HOUR).toISOString(), new Date(NOW + 60_000).toISOString())
    expect(rolled).toEqual(raw)
    expect(rolled.total).toBe(1200)
  })
})
