/**
 * Cluster mode's shared state on a real Redis (no mocks): two app instances on one database and
 * one Redis, each with its own resolver, limiter and Redis connections, as two processes would.
 * Revocation through one instance is refused by the other on its next request; the ingest quota
 * is one bucket per org across instances; with Redis down or frozen ingest still answers (the
 * documented local fallback), never 500.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { hashToken } from '../../src/auth/opaque/format.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { OrgRateLimiter } from '../../src/features/ingest/rate-limit.ts'
import type { RedisStateStore } from '../../src/infra/redis.ts'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'
import { privateRedisServer, testRedis, unreachableRedis } from '../helpers/redis.ts'
import { v2Event } from '../helpers/events.ts'

let db: TestDatabase
let org: CreatedOrg
const stores: RedisStateStore[] = []

async function store(options: Parameters<typeof testRedis>[0] = {}) {
  const s = await testRedis(options)
  stores.push(s)
  return s
}

beforeAll(async () => {
  db = await testDatabase()
  org = await createOrg(db.app, 'cluster org', 'cli')
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()))
  await db.drop()
}, HOOK_TIMEOUT_MS)

const events = (n: number) => ({ events: Array.from({ length: n }, () => v2Event()) })
const host = () => ({ machine_id: crypto.randomUUID().replace(/-/g, ''), hostname: 'h', os: 'linux', arch: 'x64' })

async function newDeployToken(app: ReturnType<typeof testApp>) {
  const res = await app.call('POST', '/v1/deploy-tokens', { token: org.admin_key, json: { name: 'cluster' } })
  expect(res.status).toBe(201)
  return res.body as { id: string; token: string }
}

describe('revocation across instances', () => {
  test('without Redis the other instance keeps serving the token from its cache (the gap Redis closes)', async () => {
    const a = testApp(db)
    const b = testApp(db)
    const created = await newDeployToken(a)
    expect((await b.call('GET', '/v1/auth/whoami', { token: created.token })).status).toBe(200)
    expect((await a.call('DELETE', `/v1/deploy-tokens/${created.id}`, { token: org.admin_key })).status).toBe(204)
    expect((await a.call('GET', '/v1/auth/whoami', { token: created.token })).status).toBe(401)
    expect((await b.call('GET', '/v1/auth/whoami', { token: created.token })).status).toBe(200)
  })

  test('a deploy token revoked through A is refused by B on its very next request', async () => {
    const a = testApp(db, {}, undefined, { redis: await store() })
    const b = testApp(db, {}, undefined, { redis: await store() })
    for (let i = 0; i < 10; i++) {
      const created = await newDeployToken(a)
      // B resolves it (Postgres, or the entry A wrote to Redis) and caches it.
      expect((await b.call('GET', '/v1/auth/whoami', { token: created.token })).status).toBe(200)
      expect((await b.call('GET', '/v1/auth/whoami', { token: created.token })).status).toBe(200)
      const started = performance.now()
      expect((await a.call('DELETE', `/v1/deploy-tokens/${created.id}`, { token: org.admin_key })).status).toBe(204)
      const next = await b.call('GET', '/v1/auth/whoami', { token: created.token })
      expect(next.status).toBe(401)
      expect(performance.now() - started).toBeLessThan(100)
    }
  })

  test("a machine's re-registration on A revokes its previous service token on B at once", async () => {
    const a = testApp(db, {}, undefined, { redis: await store() })
    const b = testApp(db, {}, undefined, { redis: await store() })
    const h = host()
    const first = await a.call('POST', '/v1/machines/register', { token: org.deploy_token, json: h })
    const machine = first.body.machine_id as string
    const old = first.body.service_token as string
    expect((await b.call('GET', `/v1/machines/${machine}/policies`, { token: old })).status).toBe(200)
    const second = await a.call('POST', '/v1/machines/register', { token: org.deploy_token, json: h })
    expect(second.body.service_token).not.toBe(old)
    expect((await b.call('GET', `/v1/machines/${machine}/policies`, { token: old })).status).toBe(401)
    expect((await b.call('GET', `/v1/machines/${machine}/policies`, { token: second.body.service_token })).status).toBe(200)
  })

  test('lookups are written through to Redis; a revocation tombstones them and a late write cannot undo it', async () => {
    const ra = await store()
    const a = testApp(db, {}, undefined, { redis: ra })
    const created = await newDeployToken(a)
    const hash = hashToken(created.token).toString('hex')
    expect((await a.call('GET', '/v1/auth/whoami', { token: created.token })).status).toBe(200)
    let shared = await ra.getToken(hash)
    for (let i = 0; shared === null && i < 50; i++) {
      await Bun.sleep(10) // the write-through is not awaited by the request
      shared = await ra.getToken(hash)
    }
    expect(shared).toMatchObject({ value: { o: org.org_id, t: created.id, k: 'install' } })
    // A third instance, cold, resolves it from Redis.
    const c = testApp(db, {}, undefined, { redis: await store() })
    expect(await c.resolver.resolve(created.token)).toMatchObject({ orgId: org.org_id, tokenId: created.id })

    expect((await a.call('DELETE', `/v1/deploy-tokens/${created.id}`, { token: org.admin_key })).status).toBe(204)
    expect(await ra.getToken(hash)).toBe('revoked')
    // A lookup that read Postgres before the revocation and writes afterwards loses to the tombstone.
    await ra.putToken(hash, (shared as { value: unknown }).value, 30_000)
    expect(await ra.getToken(hash)).toBe('revoked')
    // A cold instance meets the tombstone and asks Postgres: the deploy token is retired (it keeps
    // its machines, docs/tokens.md), not the live principal Redis held.
    const cold = await testApp(db, {}, undefined, { redis: await store() }).resolver.resolve(created.token)
    expect(cold).toMatchObject({ tokenId: created.id, retired: true })
    expect(
      (await testApp(db, {}, undefined, { redis: await store() }).call('GET', '/v1/auth/whoami', { token: created.token }))
        .status,
    ).toBe(401)
  })
})

describe('shared ingest quota', () => {
  const env = { INGEST_RATE_PER_S: '1', INGEST_RATE_BURST: '10' }

  test('two instances together cannot exceed the org burst; 429 + Retry-After as in embedded mode', async () => {
    const a = testApp(db, env, undefined, { redis: await store() })
    const b = testApp(db, env, undefined, { redis: await store() })
    const x = await createOrg(db.app, 'quota x', 'cli')
    const y = await createOrg(db.app, 'quota y', 'cli')
    const post = (app: typeof a, token: string, n: number) => app.call('POST', '/v1/ingest', { token, json: events(n) })
    expect((await post(a, x.deploy_token, 4)).status).toBe(200)
    expect((await post(b, x.deploy_token, 4)).status).toBe(200)
    // Each instance alone would still have 6 left; together only 2 remain.
    const over = await post(a, x.deploy_token, 4)
    expect(over.status).toBe(429)
    expect(over.body).toMatchObject({ status: 429, code: 'rate_limited' })
    expect(Number(over.headers.get('retry-after'))).toBe(2)
    expect((await post(b, x.deploy_token, 4)).status).toBe(429)
    expect((await post(b, x.deploy_token, 2)).status).toBe(200)
    // X's flood does not touch Y's bucket.
    expect((await post(b, y.deploy_token, 10)).status).toBe(200)
  })

  test('many concurrent takes through separate connections admit exactly the burst', async () => {
    const limiters = [await store(), await store(), await store()].map((shared) => new OrgRateLimiter(1, 50, { shared }))
    const orgId = crypto.randomUUID()
    const outcomes = await Promise.allSettled(Array.from({ length: 90 }, (_, i) => limiters[i % 3]!.take(orgId, 1)))
    expect(outcomes.filter((o) => o.status === 'fulfilled').length).toBe(50)
    const other = crypto.randomUUID()
    await limiters[0]!.take(other, 50)
  })
})

describe('Redis unavailable', () => {
  const env = { INGEST_RATE_PER_S: '1', INGEST_RATE_BURST: '5' }

  test('down from the start: auth, ingest and revocation work on memory and Postgres; the local bucket limits', async () => {
    const redis = await unreachableRedis()
    stores.push(redis)
    const a = testApp(db, env, undefined, { redis })
    const x = await createOrg(db.app, 'down x', 'cli')
    const ok = await a.call('POST', '/v1/ingest', { token: x.deploy_token, json: events(3) })
    expect(ok.status).toBe(200)
    const over = await a.call('POST', '/v1/ingest', { token: x.deploy_token, json: events(3) })
    expect(over.status).toBe(429)
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    const created = await newDeployToken(a)
    expect((await a.call('DELETE', `/v1/deploy-tokens/${created.id}`, { token: org.admin_key })).status).toBe(204)
    expect((await a.call('GET', '/v1/auth/whoami', { token: created.token })).status).toBe(401)
    const metrics = await a.call('GET', '/metrics')
    expect(metrics.text).toMatch(/quint_redis_fallbacks_total\{op="ingest_quota"\} [1-9]/)
    expect(metrics.text).toMatch(/quint_redis_fallbacks_total\{op="token_revoke"\} 1/)
  })

  test('a subscriber that stops answering (half-open: no close event) is dropped and resubscribed', async () => {
    const server = await privateRedisServer()
    try {
      const redis = await store({ url: server.url, subscriberPingMs: 200 })
      let lost = 0
      let subscribed = 0
      redis.subscribeChannel(`test:ping:${crypto.randomUUID()}`, {
        message() {},
        subscribed: () => void subscribed++,
        lost: () => void lost++,
      })
      for (let i = 0; i < 100 && subscribed === 0; i++) await Bun.sleep(20)
      expect(subscribed).toBe(1)
      // SIGSTOP keeps the TCP connection open: nothing but the PING can tell it is dead.
      server.freeze()
      for (let i = 0; i < 150 && lost === 0; i++) await Bun.sleep(20)
      expect(lost).toBeGreaterThanOrEqual(1)
      server.thaw()
      for (let i = 0; i < 250 && subscribed < 2; i++) await Bun.sleep(20)
      expect(subscribed).toBeGreaterThanOrEqual(2)
    } finally {
      await server.stop()
    }
  })

  test('a frozen server (commands time out) costs a short delay, not an error', async () => {
    const server = await privateRedisServer()
    try {
      const redis = await store({ url: server.url, commandTimeoutMs: 100 })
      const a = testApp(db, env, undefined, { redis })
      const x = await createOrg(db.app, 'frozen x', 'cli')
      expect((await a.call('POST', '/v1/ingest', { token: x.deploy_token, json: events(1) })).status).toBe(200)
      server.freeze()
      const started = performance.now()
      const res = await a.call('POST', '/v1/ingest', { token: x.deploy_token, json: events(2) })
      expect(res.status).toBe(200)
      expect(performance.now() - started).toBeLessThan(2_000)
      // The fallback bucket knows nothing of the shared one: it starts full, so 3 more pass
      // and the next is refused locally.
      expect((await a.call('POST', '/v1/ingest', { token: x.deploy_token, json: events(3) })).status).toBe(200)
      expect((await a.call('POST', '/v1/ingest', { token: x.deploy_token, json: events(3) })).status).toBe(429)
    } finally {
      await server.stop()
    }
  })
})
