/**
 * Ingest through the HTTP API into Postgres: durable acks, per-item outcomes, exactly-once storage
 * across retries, tenant separation of dedupe, body limits (chunked, gzip, CL+TE), redaction.
 * The pipeline consumer is driven explicitly (drainOnce) so every assertion is deterministic.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { gzipSync } from 'node:zlib'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { testApp, twoOrgApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'

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

const ingest = (token: string, events: unknown[], path = '/v1/ingest') => t.call('POST', path, { token, json: { events } })
const pipeline = () => drainOnce(db.app, 'pipeline', storeEvents)

async function stored(org: string, where = 'true'): Promise<number> {
  const [r] = await db.owner.unsafe(`select count(*)::int as n from actions where org_id = $1 and ${where}`, [org])
  return r!.n as number
}

describe('POST /v1/ingest', () => {
  test('accepts a batch: 200, per-item results, durable before the answer, stored once by the pipeline', async () => {
    const events = [v2Event(), v2Event(), v2Event()]
    const res = await ingest(a.deploy_token, events)
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ ingested: 3, accepted: 3, duplicates: 0, rejected: 0 })
    expect(res.body.results).toEqual(events.map((e, index) => ({ index, status: 'accepted', event_id: e.event_id })))
    // Durable at the answer: the batch is committed on the bus, before any consumer ran.
    const pending = async () =>
      (await db.owner<{ consumer: string }[]>`select consumer from bus_pending where org_id = ${a.org_id} order by consumer`).map(
        (r) => r.consumer,
      )
    expect(await pending()).toEqual(['pipeline'])
    const before = await stored(a.org_id)
    expect(await pipeline()).toBe(1)
    expect((await stored(a.org_id)) - before).toBe(3)
    // The pipeline handed the batch on, in its own transaction: sessions and alerts follow it.
    expect(await pending()).toEqual(['alerts', 'sessions'])
    const [row] =
      await db.owner`select tool_name, arguments, labels, session_key from actions where event_key = ${`e:${events[0]!.event_id}`}`
    expect(row).toMatchObject({
      tool_name: 'Bash',
      arguments: { command: 'ls' },
      labels: { process_name: 'claude' },
      session_key: 's-1',
    })
  })

  test('a batch sent again after it was stored answers duplicate and stores nothing', async () => {
    const events = [v2Event(), v2Event()]
    await ingest(a.deploy_token, events)
    await pipeline()
    const before = await stored(a.org_id)
    const again = await ingest(a.deploy_token, events)
    expect(again.status).toBe(200)
    expect(again.body).toMatchObject({ ingested: 2, accepted: 0, duplicates: 2 })
    await pipeline()
    expect(await stored(a.org_id)).toBe(before)
  })

  test('retries that race the pipeline, and repeats inside one batch, are still stored once', async () => {
    const e = v2Event()
    const first = await ingest(a.deploy_token, [e, e])
    expect(first.body.results.map((r: { status: string }) => r.status)).toEqual(['accepted', 'duplicate'])
    const second = await ingest(a.deploy_token, [e]) // before the pipeline ran: accepted again
    expect(second.body.accepted).toBe(1)
    await pipeline()
    expect(await stored(a.org_id, `event_key = 'e:${e.event_id}'`)).toBe(1)
  })

  test('another org sending the same event ids is neither deduplicated against nor mixed with org A', async () => {
    const events = [v2Event(), v2Event()]
    await ingest(a.deploy_token, events)
    await pipeline()
    const res = await ingest(b.deploy_token, events)
    expect(res.body).toMatchObject({ accepted: 2, duplicates: 0 })
    await pipeline()
    for (const org of [a, b]) {
      expect(await stored(org.org_id, `event_id in ('${events[0]!.event_id}', '${events[1]!.event_id}')`)).toBe(2)
    }
  })

  test('bad items are rejected one by one (207) and never sink the good ones', async () => {
    const good = v2Event()
    const res = await ingest(a.deploy_token, [
      v2Event({ event_id: 'nul\u0000id' }),
      good,
      v2Event({ timestamp: 'not-a-date' }),
      v2Event({ risk_score: 'high' }),
      v2Event({ event_id: undefined }),
      v2Event({ labels: { pid: 42 } }),
      'not an object',
      v2Event({ arguments_json: '{"path":"a\\u0000b","s":"\\ud83d"}' }),
    ])
    expect(res.status).toBe(207)
    expect(res.body).toMatchObject({ accepted: 2, rejected: 6 })
    const paths = res.body.results.filter((r: { status: string }) => r.status === 'rejected').map((r: { path: string }) => r.path)
    expect(paths).toEqual([
      '/events/0/event_id',
      '/events/2/timestamp',
      '/events/3/risk_score',
      '/events/4/event_id',
      '/events/5/labels/pid',
      '/events/6',
    ])
    await pipeline()
    expect(await stored(a.org_id, `event_id = '${good.event_id}'`)).toBe(1)
    const [odd] = await db.owner`select arguments from actions where org_id = ${a.org_id} and arguments->>'path' like 'a%b'`
    expect(odd!.arguments).toEqual({ path: 'a\uFFFDb', s: '\uFFFD' })
  })

  test('secrets are redacted before storage, the event marked, and the org counts them', async () => {
    const e = v2Event({
      arguments_json: JSON.stringify({
        command: 'curl -H "Authorization: Bearer ghp_abcdefghijklmnopqrstuvwxyz0123456789AB" api',
      }),
    })
    await ingest(a.deploy_token, [e])
    await pipeline()
    const [row] = await db.owner<{ arguments: unknown; redacted: boolean }[]>`
      select arguments, redacted from actions where event_key = ${`e:${e.event_id}`}`
    expect(JSON.stringify(row!.arguments)).not.toContain('ghp_abcdefghijklmnopqrstuvwxyz0123456789AB')
    expect(row!.redacted).toBe(true)
    const [stats] = await db.owner<
      { redactions: string }[]
    >`select sum(redactions)::text as redactions from org_ingest_stats where org_id = ${a.org_id}`
    expect(Number(stats!.redactions)).toBeGreaterThanOrEqual(1)
  })

  test('the API-reference shape on /v1/events/ingest', async () => {
    const item = {
      action_type: 'PROCESS_EXEC',
      tool_name: 'git',
      arguments: ['status'],
      session_id: 'api-s',
      agent_id: 'a',
      timestamp: new Date().toISOString(),
    }
    const res = await ingest(a.deploy_token, [item], '/v1/events/ingest')
    expect(res.status).toBe(200)
    expect(res.body.ingested).toBe(1)
    await pipeline()
    expect(await stored(a.org_id, `session_key = 'api-s' and tool_name = 'git'`)).toBe(1)
  })

  test.each([
    ['no events key', { items: [] }, 400],
    ['events not an array', { events: {} }, 400],
    ['a bare array', [v2Event()], 400],
    ['501 events', { events: Array.from({ length: 501 }, () => ({})) }, 413],
  ])('envelope: %s → %d', async (_n, json, status) => {
    const res = await t.call('POST', '/v1/ingest', { token: a.deploy_token, json })
    expect(res.status).toBe(status)
    expect(res.headers.get('content-type')).toBe('application/problem+json')
  })

  test('an empty batch is fine', async () => {
    expect((await ingest(a.deploy_token, [])).body).toMatchObject({ ingested: 0 })
  })
})

describe('body limits on the bytes received', () => {
  const post = (body: RequestInit['body'], headers: Record<string, string>) =>
    t.app.fetch(
      new Request('http://test/v1/ingest', {
        method: 'POST',
        headers: { authorization: `Bearer ${a.deploy_token}`, 'content-type': 'application/json', ...headers },
        body,
        duplex: 'half',
      }),
    )

  test('a gzip body is accepted and counted decoded', async () => {
    const gz = gzipSync(JSON.stringify({ events: [v2Event()] }))
    const res = await post(gz, { 'content-encoding': 'gzip' })
    expect(res.status).toBe(200)
  })

  test('a gzip bomb (small on the wire, over 10 MiB decoded) is refused with 413', async () => {
    const bomb = gzipSync(Buffer.alloc(12 * 1024 * 1024, 0x20))
    expect(bomb.length).toBeLessThan(100_000)
    expect((await post(bomb, { 'content-encoding': 'gzip' })).status).toBe(413)
  })

  test('a chunked body over 10 MiB is refused with 413 before it is read to the end', async () => {
    let pulled = 0
    const chunk = new Uint8Array(1024 * 1024).fill(0x20)
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (pulled++ < 40) c.enqueue(chunk)
        else c.close()
      },
    })
    const res = await post(stream, {})
    expect(res.status).toBe(413)
    expect(pulled).toBeLessThan(40)
  })

  test('an honest Content-Length over the limit is refused without reading', async () => {
    expect((await post('{}', { 'content-length': String(11 * 1024 * 1024) })).status).toBe(413)
  })

  test('Content-Length together with Transfer-Encoding → 400; an unknown encoding → 415; corrupt gzip → 400', async () => {
    expect((await post('{"events":[]}', { 'content-length': '13', 'transfer-encoding': 'chunked' })).status).toBe(400)
    expect((await post('{"events":[]}', { 'content-encoding': 'br' })).status).toBe(415)
    expect((await post('not gzip at all', { 'content-encoding': 'gzip' })).status).toBe(400)
  })
})

describe('auth on the ingest path', () => {
  test('no token → 401; an admin key may ingest; a revoked deploy token is refused on its next request', async () => {
    expect((await t.call('POST', '/v1/ingest', { json: { events: [] } })).status).toBe(401)
    expect((await ingest(a.admin_key, [v2Event()])).status).toBe(200)
    const created = await t.call('POST', '/v1/deploy-tokens', { token: a.admin_key, json: { name: 'to revoke' } })
    expect((await ingest(created.body.token, [v2Event()])).status).toBe(200)
    await t.call('DELETE', `/v1/deploy-tokens/${created.body.id}`, { token: a.admin_key })
    expect((await ingest(created.body.token, [v2Event()])).status).toBe(401)
  })
})

describe('POST /v1/sessions/ingest', () => {
  test('a lifecycle event is recorded durably → {"ok":true}; a bad one → 422', async () => {
    const ok = await t.call('POST', '/v1/sessions/ingest', {
      token: a.deploy_token,
      json: { session_id: 'life-1', state: 'active', platform: 'cursor', timestamp: new Date().toISOString() },
    })
    expect(ok.status).toBe(200)
    expect(ok.body).toEqual({ ok: true })
    const [n] = await db.owner<
      { n: number }[]
    >`select count(*)::int as n from bus_batches where org_id = ${a.org_id} and kind = 'lifecycle'`
    expect(n!.n).toBe(1)
    const bad = await t.call('POST', '/v1/sessions/ingest', {
      token: a.deploy_token,
      json: { session_id: 'x', state: 'sleeping', timestamp: 'now' },
    })
    expect(bad.status).toBe(422)
  })
})

describe('per-org rate limit', () => {
  test('over the quota → 429 + Retry-After with nothing stored; other orgs are unaffected', async () => {
    const limited = testApp(db, { INGEST_RATE_PER_S: '1', INGEST_RATE_BURST: '3' })
    const call = (token: string, events: unknown[]) => limited.call('POST', '/v1/ingest', { token, json: { events } })
    expect((await call(a.deploy_token, [v2Event(), v2Event(), v2Event()])).status).toBe(200)
    const pendingBefore = await db.owner`select count(*)::int as n from bus_pending where org_id = ${a.org_id}`
    const over = await call(a.deploy_token, [v2Event(), v2Event()])
    expect(over.status).toBe(429)
    expect(over.headers.get('content-type')).toContain('application/problem+json')
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    expect(over.body).toMatchObject({ status: 429, type: 'urn:quint:problem:rate_limited' })
    const pendingAfter = await db.owner`select count(*)::int as n from bus_pending where org_id = ${a.org_id}`
    expect(pendingAfter[0]!.n).toBe(pendingBefore[0]!.n)
    // Lifecycle reports draw on the same quota.
    const lc = await limited.call('POST', '/v1/sessions/ingest', {
      token: a.deploy_token,
      json: { session_id: 'rl', state: 'active', timestamp: new Date().toISOString() },
    })
    expect(lc.status).toBe(429)
    expect((await call(b.deploy_token, [v2Event(), v2Event(), v2Event()])).status).toBe(200)
  })
})
