/**
 * Issue 14, item 13: HTTP conventions, against the real app on a real Postgres (and Redis for
 * cluster mode): 405 with `Allow` for a known path asked with another method; the IETF RateLimit
 * fields on the ingest quota's routes, beside Retry-After; `Idempotency-Key` on management POSTs
 * (replay, mismatch, in-flight duplicate, release on failure, expiry, scoping).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { requestFingerprint } from '../../src/http/idempotency.ts'
import type { RedisStateStore } from '../../src/infra/redis.ts'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'
import { testRedis } from '../helpers/redis.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg
let redis: RedisStateStore | null = null

beforeAll(async () => {
  db = await testDatabase()
  // A small quota so a test can exhaust it: 1 event/s, bursts of 20.
  t = testApp(db, { INGEST_RATE_PER_S: '1', INGEST_RATE_BURST: '20' })
  a = await createOrg(db.app, 'org A', 'cli')
  b = await createOrg(db.app, 'org B', 'cli')
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  await redis?.close()
  await db.drop()
}, HOOK_TIMEOUT_MS)

function expectProblem(res: { status: number; headers: Headers; body: any }, status: number, code: string) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  expect(res.body.code).toBe(code)
}

describe('405 Method Not Allowed', () => {
  test('a registry path with another method: 405, Allow lists its methods (HEAD with GET), problem+json', async () => {
    const list = await t.call('DELETE', '/v1/alerts', { token: a.admin_key })
    expectProblem(list, 405, 'method_not_allowed')
    expect(list.headers.get('allow')).toBe('GET, HEAD')
    const one = await t.call('PUT', `/v1/alert-rules/${crypto.randomUUID()}`, { token: a.admin_key })
    expectProblem(one, 405, 'method_not_allowed')
    expect(one.headers.get('allow')).toBe('DELETE, GET, HEAD, PATCH')
    // No credential needed to learn which methods a path has (the OpenAPI document says it too).
    const mint = await t.call('GET', '/tokens/app')
    expectProblem(mint, 405, 'method_not_allowed')
    expect(mint.headers.get('allow')).toBe('DELETE, POST') // /tokens/{jti} is DELETE
    expect(mint.headers.get('x-request-id')).toBeTruthy()
  })

  test('routes outside the registry too; unknown paths stay 404; HEAD of a GET route works', async () => {
    for (const path of ['/health', '/ready', '/metrics', '/openapi.json']) {
      const res = await t.call('POST', path)
      expectProblem(res, 405, 'method_not_allowed')
      expect(res.headers.get('allow')).toBe('GET, HEAD')
    }
    expectProblem(await t.call('GET', '/v1/nothing-here'), 404, 'not_found')
    expectProblem(await t.call('DELETE', '/v1/alert-rules/x/y'), 404, 'not_found')
    const head = await t.app.fetch(new Request('http://test/health', { method: 'HEAD' }))
    expect(head.status).toBe(200)
  })
})

describe('RateLimit fields on the ingest quota', () => {
  const parse = (field: string | null) => {
    const m = /^"ingest";r=(\d+);t=(\d+)$/.exec(field ?? '')
    expect(m, `RateLimit: ${field}`).not.toBeNull()
    return { r: Number(m![1]), t: Number(m![2]) }
  }

  test('2xx: the policy and the current level; 429: r=0 and t equal to Retry-After', async () => {
    const org = await createOrg(db.app, 'quota', 'cli')
    const ok = await t.call('POST', '/v1/ingest', {
      token: org.deploy_token,
      json: { events: [1, 2, 3, 4, 5].map(() => v2Event()) },
    })
    expect(ok.status).toBe(200)
    // q = the burst; w = the seconds the rate needs to refill it (20 events at 1/s).
    expect(ok.headers.get('ratelimit-policy')).toBe('"ingest";q=20;w=20')
    const level = parse(ok.headers.get('ratelimit'))
    // 15 left (a refill of one event per second may have happened since); full again in ≤ 5 s.
    expect(level.r).toBeGreaterThanOrEqual(15)
    expect(level.r).toBeLessThanOrEqual(17)
    expect(level.t).toBeGreaterThanOrEqual(3)
    expect(level.t).toBeLessThanOrEqual(5)

    const refused = await t.call('POST', '/v1/ingest', {
      token: org.deploy_token,
      json: { events: Array.from({ length: 20 }, () => v2Event()) },
    })
    expectProblem(refused, 429, 'rate_limited')
    expect(refused.headers.get('ratelimit-policy')).toBe('"ingest";q=20;w=20')
    const at429 = parse(refused.headers.get('ratelimit'))
    expect(at429.r).toBe(0)
    expect(String(at429.t)).toBe(refused.headers.get('retry-after')!)
  })

  test('every route charged to the quota carries them (lifecycle, daemon events); others do not', async () => {
    const org = await createOrg(db.app, 'quota routes', 'cli')
    const lifecycle = await t.call('POST', '/v1/sessions/ingest', {
      token: org.deploy_token,
      json: { session_id: 's-1', state: 'active', timestamp: new Date().toISOString() },
    })
    expect(lifecycle.status).toBe(200)
    expect(lifecycle.headers.get('ratelimit-policy')).toBe('"ingest";q=20;w=20')
    parse(lifecycle.headers.get('ratelimit'))
    const machine = await t.call('POST', '/v1/machines/register', { token: org.deploy_token, json: { machine_id: 'host-1' } })
    const events = await t.call('POST', `/v1/machines/${machine.body.machine_id}/events`, {
      token: org.deploy_token,
      json: { events: [{ event_id: crypto.randomUUID(), action: 'tool:Read', timestamp: new Date().toISOString() }] },
    })
    expect(events.status).toBe(200)
    expect(events.headers.get('ratelimit-policy')).toBe('"ingest";q=20;w=20')
    parse(events.headers.get('ratelimit'))
    // A refusal before the quota (bad envelope) still says where the org stands.
    const bad = await t.call('POST', '/v1/ingest', { token: org.deploy_token, json: { nope: 1 } })
    expect(bad.status).toBe(400)
    expect(bad.headers.get('ratelimit-policy')).toBe('"ingest";q=20;w=20')
    // Not charged: no RateLimit fields.
    const alerts = await t.call('GET', '/v1/alerts', { token: org.admin_key })
    expect(alerts.status).toBe(200)
    expect(alerts.headers.get('ratelimit-policy')).toBeNull()
    // Quota off (INGEST_RATE_PER_S=0): no fields at all.
    const off = testApp(db, { INGEST_RATE_PER_S: '0' })
    const free = await off.call('POST', '/v1/ingest', { token: org.deploy_token, json: { events: [v2Event()] } })
    expect(free.status).toBe(200)
    expect(free.headers.get('ratelimit-policy')).toBeNull()
    expect(free.headers.get('ratelimit')).toBeNull()
  })

  test('cluster mode (shared bucket in Redis): the policy on 2xx, the level on 429', async () => {
    redis = await testRedis()
    const cluster = testApp(db, { INGEST_RATE_PER_S: '1', INGEST_RATE_BURST: '20' }, undefined, { redis })
    const org = await createOrg(db.app, 'quota cluster', 'cli')
    const ok = await cluster.call('POST', '/v1/ingest', { token: org.deploy_token, json: { events: [v2Event()] } })
    expect(ok.status).toBe(200)
    expect(ok.headers.get('ratelimit-policy')).toBe('"ingest";q=20;w=20')
    expect(ok.headers.get('ratelimit')).toBeNull()
    const refused = await cluster.call('POST', '/v1/ingest', {
      token: org.deploy_token,
      json: { events: Array.from({ length: 20 }, () => v2Event()) },
    })
    expectProblem(refused, 429, 'rate_limited')
    expect(parse(refused.headers.get('ratelimit'))).toEqual({ r: 0, t: Number(refused.headers.get('retry-after')) })
  })
})

describe('Idempotency-Key', () => {
  const rule = (name: string) => ({ name, severity: 'high', condition: { field: 'tool_name', op: 'eq', value: 'Bash' } })
  const post = (path: string, token: string, json: unknown, key?: string) =>
    t.call('POST', path, { token, json, headers: key === undefined ? {} : { 'idempotency-key': key } })
  const countRules = async (org: string, name: string) =>
    (await db.owner<{ n: number }[]>`select count(*)::int as n from alert_rules where org_id = ${org} and name = ${name}`)[0]!.n

  test('a retried create with the same key answers the first result and creates nothing more', async () => {
    const key = crypto.randomUUID()
    const first = await post('/v1/alert-rules', a.admin_key, rule('idem-1'), key)
    expect(first.status).toBe(201)
    expect(first.headers.get('idempotent-replayed')).toBeNull()
    const again = await post('/v1/alert-rules', a.admin_key, rule('idem-1'), key)
    expect(again.status).toBe(201)
    expect(again.body).toEqual(first.body)
    expect(again.headers.get('idempotent-replayed')).toBe('true')
    expect(again.headers.get('content-type')).toBe(first.headers.get('content-type'))
    // The draft's sf-string form (quoted) is the same key.
    const quoted = await post('/v1/alert-rules', a.admin_key, rule('idem-1'), `"${key}"`)
    expect(quoted.body.id).toBe(first.body.id)
    expect(await countRules(a.org_id, 'idem-1')).toBe(1)
    // Without a key, each POST is a new rule (the header is opt-in).
    await post('/v1/alert-rules', a.admin_key, rule('idem-1'))
    expect(await countRules(a.org_id, 'idem-1')).toBe(2)
  })

  test('the same key for a different request is a 422; for another credential or org it is another key', async () => {
    const key = crypto.randomUUID()
    expect((await post('/v1/alert-rules', a.admin_key, rule('idem-2'), key)).status).toBe(201)
    expectProblem(await post('/v1/alert-rules', a.admin_key, rule('idem-2 changed'), key), 422, 'idempotency_key_mismatch')
    expectProblem(
      await post('/v1/webhooks', a.admin_key, { url: 'https://hooks.example.com/x' }, key),
      422,
      'idempotency_key_mismatch',
    )
    // Another management credential of org A, and org B's admin key: their own keys.
    const app = await post('/tokens/app', a.admin_key, { name: 'second admin' })
    expect((await post('/v1/alert-rules', app.body.token, rule('idem-2'), key)).status).toBe(201)
    expect((await post('/v1/alert-rules', b.admin_key, rule('idem-2'), key)).status).toBe(201)
    expect(await countRules(a.org_id, 'idem-2')).toBe(2)
    expect(await countRules(b.org_id, 'idem-2')).toBe(1)
  })

  test('a secret shown once is replayed to the same credential and key, and stored sealed', async () => {
    const key = crypto.randomUUID()
    const first = await post('/v1/deploy-tokens', a.admin_key, { name: 'idem deploy' }, key)
    expect(first.status).toBe(201)
    const again = await post('/v1/deploy-tokens', a.admin_key, { name: 'idem deploy' }, key)
    expect(again.status).toBe(201)
    expect(again.body.token).toBe(first.body.token)
    const [count] = await db.owner<
      { n: number }[]
    >`select count(*)::int as n from api_tokens where org_id = ${a.org_id} and name = 'idem deploy'`
    expect(count!.n).toBe(1)
    const [row] = await db.owner<
      { response: Buffer }[]
    >`select response from idempotency_keys where org_id = ${a.org_id} and key = ${key}`
    expect(Buffer.from(row!.response).includes(Buffer.from(first.body.token))).toBe(false)
    expect(Buffer.from(row!.response).includes(Buffer.from(first.body.id))).toBe(false)
    // The replayed token is the real one (a deploy token reads nothing of the org: whoami).
    expect((await t.call('GET', '/v1/auth/whoami', { token: again.body.token })).status).toBe(200)
  })

  test('a duplicate while the first request is still running is a 409 with Retry-After', async () => {
    const key = crypto.randomUUID()
    let first: Promise<Awaited<ReturnType<typeof post>>> | null = null
    await db.owner.begin(async (tx) => {
      // The first request claims its key, then waits for this lock to insert its rule.
      await tx`lock table alert_rules in exclusive mode`
      first = post('/v1/alert-rules', a.admin_key, rule('idem-3'), key)
      for (let i = 0; i < 500; i++) {
        const rows =
          await db.owner`select 1 from idempotency_keys where org_id = ${a.org_id} and key = ${key} and state = 'in_flight'`
        if (rows.length > 0) break
        await Bun.sleep(10)
      }
      const dup = await post('/v1/alert-rules', a.admin_key, rule('idem-3'), key)
      expectProblem(dup, 409, 'idempotency_key_in_flight')
      expect(dup.headers.get('retry-after')).toBe('1')
    })
    const done = await first!
    expect(done.status).toBe(201)
    const replay = await post('/v1/alert-rules', a.admin_key, rule('idem-3'), key)
    expect(replay.body.id).toBe(done.body.id)
    expect(await countRules(a.org_id, 'idem-3')).toBe(1)
  })

  test('a request that fails releases its key; a malformed key is a 400; other routes ignore the header', async () => {
    const key = crypto.randomUUID()
    // Valid by the schema, refused by the handler (a string op on a number comparison).
    const bad = await post(
      '/v1/alert-rules',
      a.admin_key,
      { ...rule('idem-4'), condition: { field: 'risk_score', op: 'gt', value: 'x' } },
      key,
    )
    expect(bad.status).toBe(422)
    const good = await post('/v1/alert-rules', a.admin_key, rule('idem-4'), key)
    expect(good.status).toBe(201)
    for (const k of ['has space', 'x'.repeat(256), '"unterminated', 'caf\u00e9']) {
      expectProblem(await post('/v1/alert-rules', a.admin_key, rule('idem-4'), k), 400, 'bad_request')
    }
    expect(await countRules(a.org_id, 'idem-4')).toBe(1)
    const patch = (name: string) =>
      t.call('PATCH', `/v1/alert-rules/${good.body.id}`, {
        token: a.admin_key,
        json: { name },
        headers: { 'idempotency-key': key },
      })
    expect((await patch('renamed')).body.name).toBe('renamed')
    const second = await patch('renamed again')
    expect(second.body.name).toBe('renamed again')
    expect(second.headers.get('idempotent-replayed')).toBeNull()
  })

  test('keys expire after 24 h: an expired key is free again, and expired rows are pruned', async () => {
    const key = crypto.randomUUID()
    expect((await post('/v1/alert-rules', a.admin_key, rule('idem-5'), key)).status).toBe(201)
    const [row] = await db.owner<{ hours: number }[]>`
      select round(extract(epoch from expires_at - now()) / 3600)::int as hours from idempotency_keys where org_id = ${a.org_id} and key = ${key}`
    expect(row!.hours).toBe(24)
    await db.owner`update idempotency_keys set expires_at = now() - interval '1 second' where org_id = ${a.org_id}`
    const reused = await post('/v1/alert-rules', a.admin_key, rule('idem-5 other'), key)
    expect(reused.status).toBe(201)
    const left = await db.owner<{ key: string }[]>`select key from idempotency_keys where org_id = ${a.org_id}`
    expect(left.map((r) => r.key)).toEqual([key])
  })

  test('a claim whose request never finished (its instance died) is taken over after two minutes, by the same request only', async () => {
    const [admin] = await db.owner<{ id: string }[]>`
      select id from api_tokens where org_id = ${a.org_id} and token_prefix like 'qk_%' order by created_at limit 1`
    const claim = (key: string, body: unknown, age: string) => db.owner`
      insert into idempotency_keys (org_id, credential, key, method, path, fingerprint, claim, created_at, expires_at)
      values (${a.org_id}, ${admin!.id}, ${key}, 'POST', '/v1/alert-rules',
              ${requestFingerprint('POST', '/v1/alert-rules', undefined, body)}, gen_random_uuid(),
              now() - ${age}::interval, now() + interval '1 day')`
    await claim('stale', rule('idem-6'), '3 minutes')
    await claim('fresh', rule('idem-6'), '10 seconds')
    expectProblem(await post('/v1/alert-rules', a.admin_key, rule('idem-6 other'), 'stale'), 422, 'idempotency_key_mismatch')
    expectProblem(await post('/v1/alert-rules', a.admin_key, rule('idem-6'), 'fresh'), 409, 'idempotency_key_in_flight')
    const taken = await post('/v1/alert-rules', a.admin_key, rule('idem-6'), 'stale')
    expect(taken.status).toBe(201)
    expect((await post('/v1/alert-rules', a.admin_key, rule('idem-6'), 'stale')).body.id).toBe(taken.body.id)
    expect(await countRules(a.org_id, 'idem-6')).toBe(1)
  })

  test('the other secret-bearing and single-use POSTs are idempotent too', async () => {
    const webhook = await post('/v1/webhooks', a.admin_key, { url: 'https://hooks.example.com/i' }, 'wh-1')
    expect((await post('/v1/webhooks', a.admin_key, { url: 'https://hooks.example.com/i' }, 'wh-1')).body).toEqual(webhook.body)
    const rotated = await post(`/v1/webhooks/${webhook.body.id}/rotate-secret`, a.admin_key, {}, 'rot-1')
    expect(rotated.status).toBe(200)
    expect((await post(`/v1/webhooks/${webhook.body.id}/rotate-secret`, a.admin_key, {}, 'rot-1')).body.secret).toBe(
      rotated.body.secret,
    )
    const minted = await post('/tokens/app', a.admin_key, { name: 'idem app' }, 'app-1')
    expect((await post('/tokens/app', a.admin_key, { name: 'idem app' }, 'app-1')).body.jti).toBe(minted.body.jti)
    // A decision is single use: a retry whose answer was lost gets that answer, not 409 override_used.
    const ov = await post('/tokens/override', a.admin_key, { event_id: 'evt-idem', allowed_decisions: ['approve'] })
    const decide = () =>
      post('/overrides/evt-idem/decide', a.admin_key, { override_jti: ov.body.jti, decision: 'approve' }, 'dec-1')
    const decided = await decide()
    expect(decided.status).toBe(200)
    expect((await decide()).body).toEqual(decided.body)
    const kid = (await post('/keys/signing', a.admin_key, {})).body.kid
    const rotate = () => post(`/keys/${kid}/rotate`, a.admin_key, {}, 'key-1')
    const newKey = await rotate()
    expect(newKey.status).toBe(201)
    expect((await rotate()).body.kid).toBe(newKey.body.kid)
  })
})
