/**
 * `POST /bloom/rebuild` on a real Postgres, in memory mode and with a shared Redis: management
 * only, rebuilds from Postgres (a revocation the filter had missed is refused afterwards, here and,
 * through the new shared generation, on another instance), one at a time (409) and at most once
 * per 10 s per instance (429 + Retry-After).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Hono } from 'hono'
import { CredentialResolver } from '../../src/auth/credentials.ts'
import { createRevocationFilter, type RevocationFilter } from '../../src/auth/jwt/revocation-filter.ts'
import { mountFilterRebuild } from '../../src/features/jwt-tokens/rebuild-routes.ts'
import { revokedForFilter } from '../../src/features/jwt-tokens/repo.ts'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { requireAnyAuth } from '../../src/http/auth.ts'
import { RouteRegistry } from '../../src/http/openapi.ts'
import { errorToProblem } from '../../src/http/problem.ts'
import type { AppEnv } from '../../src/http/request-context.ts'
import type { RedisStateStore } from '../../src/infra/redis.ts'
import { testApp, twoOrgApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testLog, type TestDatabase } from '../helpers/db.ts'
import { testRedis } from '../helpers/redis.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let bearerJti: string
const closers: (() => Promise<void>)[] = []

beforeAll(async () => {
  ;({ db, t, a } = await twoOrgApp())
  const app = await t.call('POST', '/tokens/app', { token: a.admin_key, json: { name: 'root', scopes: ['*'] } })
  const bearer = await t.call('POST', '/tokens/bearer', {
    token: a.admin_key,
    json: { app_token_hash: app.body.token_hash, environment: 'prod' },
  })
  bearerJti = bearer.body.jti
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  for (const close of closers.reverse()) await close()
  await db.drop()
}, HOOK_TIMEOUT_MS)

async function agent() {
  const res = await t.call('POST', '/tokens/agent', {
    token: a.admin_key,
    json: { bearer_jti: bearerJti, agent_id: 'a', rbac: { allowed_actions: ['x:*'] } },
  })
  expect(res.status).toBe(201)
  return { token: res.body.token as string, jti: res.body.jti as string }
}

/** A revocation committed in Postgres that no filter heard of (an instance cut off from Redis). */
async function revokeBehindTheFiltersBack(jti: string) {
  await db.owner`update auth.issued_tokens set revoked_at = now() where jti = ${jti}`
}

/** An instance as serve.ts builds it: its own filter on Postgres, optionally sharing Redis. */
function instance(redis: RedisStateStore | null, namespace: string) {
  const source = () =>
    (async function* () {
      yield* await revokedForFilter(db.app, 30)
    })()
  const filter = createRevocationFilter({ redis, log: testLog, namespace, source, verifyIntervalMs: 200 })
  closers.push(() => filter.close())
  const { app } = testApp(db, {}, undefined, { redis: redis ?? undefined, revocationFilter: filter, start: false })
  const call = async (method: string, path: string, token?: string) => {
    const res = await app.fetch(
      new Request(`http://test${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} }),
    )
    return { status: res.status, headers: res.headers, body: (await res.json().catch(() => null)) as any }
  }
  return { filter, call }
}

async function loaded(filter: RevocationFilter) {
  for (let i = 0; i < 200 && !filter.stats().loaded; i++) await Bun.sleep(25)
  expect(filter.stats().loaded).toBe(true)
}

describe('memory mode', () => {
  test('rebuilds from Postgres: a missed revocation is refused afterwards; rate-limited; management only', async () => {
    const one = instance(null, `test:rebuild:${crypto.randomUUID()}`)
    await one.filter.rebuild([])
    const tok = await agent()
    expect((await one.call('GET', '/v1/auth/whoami', tok.token)).status).toBe(200)
    await revokeBehindTheFiltersBack(tok.jti)
    // The filter vouches "not revoked" and the token is cached: still accepted.
    expect(one.filter.check(a.org_id, tok.jti)).toBe(false)
    expect((await one.call('GET', '/v1/auth/whoami', tok.token)).status).toBe(200)

    // Not management: an agent token (still cached as valid here) and a deploy token.
    expect((await one.call('POST', '/bloom/rebuild', tok.token)).status).toBe(403)
    expect((await one.call('POST', '/bloom/rebuild')).status).toBe(401)
    const deploy = await one.call('POST', '/bloom/rebuild', a.deploy_token)
    expect(deploy.status).toBe(403)
    const before = one.filter.stats().generation
    const res = await one.call('POST', '/bloom/rebuild', a.admin_key)
    expect(res.status).toBe(200)
    expect(res.body.generation).toMatch(/^[a-z0-9-]+$/)
    expect(res.body.generation).not.toBe(before)
    expect(res.body.count).toBeGreaterThanOrEqual(1)
    expect(one.filter.stats().generation).toBe(res.body.generation)
    expect(one.filter.check(a.org_id, tok.jti)).toBe(true)
    expect((await one.call('GET', '/v1/auth/whoami', tok.token)).status).toBe(401)

    const again = await one.call('POST', '/bloom/rebuild', a.admin_key)
    expect(again.status).toBe(429)
    expect(again.body.code).toBe('rate_limited')
    const retry = Number(again.headers.get('retry-after'))
    expect(retry).toBeGreaterThanOrEqual(1)
    expect(retry).toBeLessThanOrEqual(10)
    const [audit] =
      await db.owner`select details from audit_log where org_id = ${a.org_id} and action = 'revocation_filter.rebuild'`
    expect(audit!.details).toEqual({ count: res.body.count })
  })

  test('every composed instance has a filter to rebuild (the test app is wired as serve is)', async () => {
    const res = await t.call('POST', '/bloom/rebuild', { token: a.admin_key })
    expect(res.status).toBe(200)
    expect(res.body.generation).toMatch(/^[a-z0-9-]+$/)
  })

  test('one rebuild at a time: a second while one runs is 409 rebuild_in_progress', async () => {
    // The route alone, on a real filter whose rebuild we hold open.
    const filter = createRevocationFilter({ log: testLog })
    closers.push(() => filter.close())
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => (release = resolve))
    const held = {
      rebuild: async (entries: Parameters<RevocationFilter['rebuild']>[0]) => {
        await gate
        return filter.rebuild(entries)
      },
    }
    const app = new Hono<AppEnv>()
    app.use(async (c, next) => {
      c.set('requestId', 'r')
      await next()
    })
    const resolver = new CredentialResolver(db.app, testLog, { jwt: null })
    const anyAuth = requireAnyAuth(resolver)
    const guards = {
      authenticated: anyAuth,
      enroll: anyAuth,
      machine: anyAuth,
      ingest: anyAuth,
      read: anyAuth,
      triage: anyAuth,
      manage: anyAuth,
      members: anyAuth,
    }
    mountFilterRebuild(new RouteRegistry(app, guards), {
      sql: db.app,
      filter: held,
      clockSkewS: 30,
      minIntervalMs: 0,
    })
    app.onError((err) => errorToProblem(err, 'r', testLog))
    const post = () =>
      app.fetch(new Request('http://test/bloom/rebuild', { method: 'POST', headers: { authorization: `Bearer ${a.admin_key}` } }))
    const first = post()
    for (let i = 0; i < 100; i++) {
      await Bun.sleep(5)
      const second = await post()
      if (second.status === 409) {
        expect(((await second.json()) as { code: string }).code).toBe('rebuild_in_progress')
        break
      }
      if (i === 99) throw new Error(`expected 409, got ${second.status}`)
    }
    release()
    expect((await first).status).toBe(200)
    expect((await post()).status).toBe(200)
  })
})

describe('with Redis', () => {
  test('the rebuilt generation is shared: another instance loads it and refuses the missed revocation', async () => {
    const ns = `test:rebuild:${crypto.randomUUID()}`
    const r1 = await testRedis()
    const r2 = await testRedis()
    closers.push(
      () => r1.close(),
      () => r2.close(),
    )
    const one = instance(r1, ns)
    const two = instance(r2, ns)
    await loaded(one.filter)
    await loaded(two.filter)
    const tok = await agent()
    // Both instances have the token in their validated caches: the other one must drop it when
    // it loads the new generation (onGeneration), not serve it for the rest of the cache TTL.
    expect((await one.call('GET', '/v1/auth/whoami', tok.token)).status).toBe(200)
    expect((await two.call('GET', '/v1/auth/whoami', tok.token)).status).toBe(200)
    await revokeBehindTheFiltersBack(tok.jti)
    expect(two.filter.check(a.org_id, tok.jti)).toBe(false)
    expect((await two.call('GET', '/v1/auth/whoami', tok.token)).status).toBe(200)

    const res = await one.call('POST', '/bloom/rebuild', a.admin_key)
    expect(res.status).toBe(200)
    expect(res.body.count).toBeGreaterThanOrEqual(1)
    for (let i = 0; i < 200 && !(two.filter.stats().generation === res.body.generation && two.filter.stats().loaded); i++)
      await Bun.sleep(10)
    expect(two.filter.stats().generation).toBe(res.body.generation)
    expect(two.filter.check(a.org_id, tok.jti)).toBe(true)
    expect((await two.call('GET', '/v1/auth/whoami', tok.token)).status).toBe(401)
    expect((await one.call('GET', '/v1/auth/whoami', tok.token)).status).toBe(401)
    // The limit is per instance: the other one may rebuild now, once.
    expect((await two.call('POST', '/bloom/rebuild', a.admin_key)).status).toBe(200)
    expect((await two.call('POST', '/bloom/rebuild', a.admin_key)).status).toBe(429)
  })
})
