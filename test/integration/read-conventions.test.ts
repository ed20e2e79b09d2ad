/**
 * What a hostile review of the read side found (issue 9), kept found: a parameter given twice, or
 * a query parameter on a GET route that takes none, is a 400 naming it; a date no database takes
 * is a 400, not a 500; a timeline cursor of any valid offset is taken, never a 500; and a timeline
 * shows an event once when a sub-agent's event caused it.
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

beforeAll(async () => {
  ;({ db, t, a } = await twoOrgApp())
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

const drain = async () => {
  await drainOnce(db.app, 'pipeline', storeEvents)
  await drainOnce(db.app, 'sessions', applySessions)
}
const get = (path: string) => t.call('GET', path, { token: a.admin_key })
function expect400(res: Awaited<ReturnType<typeof get>>, param: string) {
  expect(res.status).toBe(400)
  expect(res.headers.get('content-type')).toContain('application/problem+json')
  expect(res.body.errors.map((e: { path: string }) => e.path)).toContain(`/${param}`)
}

describe('query parameters', () => {
  test('a parameter given twice is a 400 naming it', async () => {
    expect400(await get('/v1/events?agent_id=a&agent_id=b'), 'agent_id')
    expect400(await get('/v1/alerts?since=2026-01-01T00:00:00Z&since=1999-01-01T00:00:00Z'), 'since')
  })

  test('every GET route that takes no query parameters refuses one', async () => {
    const bare = t.routes.specs.filter((s) => s.method === 'get' && s.query === undefined)
    expect(bare.map((s) => s.operationId)).toEqual(expect.arrayContaining(['getOrg', 'whoami']))
    for (const spec of bare) {
      const path = spec.path.replace(/:[a-z_]+/g, crypto.randomUUID())
      const res = await get(`${path}?bogus=1`)
      expect({ route: spec.path, status: res.status }).toEqual({ route: spec.path, status: 400 })
    }
  })

  test('ingest stats: a date before 1970 or in year 0 is a 400, never a 500', async () => {
    expect400(await get('/v1/ingest/stats?since=0000-01-01&until=2026-01-05'), 'since')
    expect400(await get('/v1/ingest/stats?until=1969-12-31'), 'until')
  })
})

describe('session timeline', () => {
  test('a cursor with a seconds offset is taken, never a 500', async () => {
    await t.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events: [v2Event({ session_id: 'tl-cursor' })] } })
    await drain()
    const cursor = Buffer.from(JSON.stringify(['2026-12-07 07:32:00+05:30:15', crypto.randomUUID()])).toString('base64url')
    expect((await get(`/v1/sessions/tl-cursor/timeline?cursor=${cursor}`)).status).toBe(200)
  })

  test("an event of the session caused through a sub-agent's event appears once in a walk", async () => {
    const t0 = Date.now() - 60_000
    const at = (s: number) => new Date(t0 + s * 1000).toISOString()
    // R (fam) runs a tool; its sub-agent's process P (fam:sub:1) writes a file E back in fam.
    const events = [
      v2Event({ session_id: 'fam', timestamp: at(0), labels: { tool_use_id: 'tu-1', process_pid: '10' } }),
      v2Event({
        session_id: 'fam:sub:1',
        timestamp: at(1),
        action_type: 'PROCESS_EXEC',
        tool_name: 'sh',
        labels: { tool_use_id: 'tu-1', pid: '20', ppid: '10' },
      }),
      v2Event({ session_id: 'fam', timestamp: at(2), action_type: 'FILE_WRITE', tool_name: 'sh', labels: { process_pid: '20' } }),
      v2Event({ session_id: 'fam', timestamp: at(3), labels: { tool_use_id: 'tu-2', process_pid: '10' } }),
    ]
    await t.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events } })
    await drain()
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const res = await get(`/v1/sessions/fam/timeline?limit=1${cursor ? `&cursor=${cursor}` : ''}`)
      expect(res.status).toBe(200)
      const walk = (nodes: { id: string; session_id: string; children: never[] }[]): void => {
        for (const n of nodes) {
          if (n.session_id === 'fam') seen.push(n.id)
          walk(n.children)
        }
      }
      walk(res.body.items)
      cursor = res.body.next_cursor
    } while (cursor)
    const [row] = await db.owner<
      { n: number }[]
    >`select count(*)::int as n from actions where org_id = ${a.org_id} and session_key = 'fam'`
    expect(row!.n).toBe(3)
    expect(new Set(seen).size).toBe(seen.length)
    expect(seen).toHaveLength(3)
  })
})
