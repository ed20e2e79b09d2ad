/**
 * The revocation SLO metric (issue 14): `quint_revocation_propagation_seconds{path}` is observed
 * once per revocation on every instance, when it reaches that instance's filter: `local` on the
 * revoking one, `pubsub` on the others through Redis, `poll` on the others without Redis. Real
 * Postgres, real Redis (a fresh key namespace), real HTTP revocations through the composed app.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createRevocationFilter } from '../../src/auth/jwt/revocation-filter.ts'
import { revokedForFilter } from '../../src/features/jwt-tokens/repo.ts'
import { RevocationPoll } from '../../src/features/jwt-tokens/revocation-poll.ts'
import { LocalBus } from '../../src/bus/bus.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { createMetrics, type Metrics } from '../../src/infra/metrics.ts'
import type { RedisStateStore } from '../../src/infra/redis.ts'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, testLog, type TestDatabase } from '../helpers/db.ts'
import { testRedis } from '../helpers/redis.ts'
import { waitFor } from '../helpers/wait.ts'

let db: TestDatabase
let org: CreatedOrg
const stores: RedisStateStore[] = []

/** Observations so far, by path, from one instance's registry. */
async function observed(metrics: Metrics): Promise<Record<string, { count: number; sum: number }>> {
  const out: Record<string, { count: number; sum: number }> = {}
  for (const v of (await metrics.revocationPropagation.get()).values) {
    const path = String(v.labels.path)
    out[path] ??= { count: 0, sum: 0 }
    if (v.metricName === 'quint_revocation_propagation_seconds_count') out[path].count = v.value
    if (v.metricName === 'quint_revocation_propagation_seconds_sum') out[path].sum = v.value
  }
  return out
}

const count = async (metrics: Metrics, path: string) => (await observed(metrics))[path]?.count ?? 0

/** An agent token (with a sub-agent under it) to revoke; returns their jtis. */
async function tokens(t: ReturnType<typeof testApp>): Promise<{ agent: string; sub: string }> {
  const app = await t.call('POST', '/tokens/app', { token: org.admin_key, json: { scopes: ['*'] } })
  const bearer = await t.call('POST', '/tokens/bearer', { token: app.body.token, json: { environment: 'prod' } })
  const agent = await t.call('POST', '/tokens/agent', {
    token: org.admin_key,
    json: { bearer_jti: bearer.body.jti, agent_id: 'a', rbac: {} },
  })
  const sub = await t.call('POST', '/tokens/subagent', { token: agent.body.token, json: { agent_id: 's' } })
  expect(sub.status).toBe(201)
  return { agent: agent.body.jti, sub: sub.body.jti }
}

beforeAll(async () => {
  db = await testDatabase()
  org = await createOrg(db.app, 'slo', 'cli')
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
  for (const s of stores) await s.close()
}, HOOK_TIMEOUT_MS)

describe('without Redis: local on the revoking instance, poll on the others', () => {
  test('one observation per revoked jti per instance; re-revoking is not measured again', async () => {
    const a = testApp(db)
    const b = testApp(db)
    // B's poll must be running before the revocation commits: older ones come with its rebuild.
    await Promise.all([a.ready, b.ready])
    const { agent, sub } = await tokens(a)
    expect((await a.call('POST', `/revoke/cascade/${agent}`, { token: org.admin_key })).status).toBe(200)
    expect(await count(a.metrics, 'local')).toBe(2)
    // B learns both through its poll (every 2 s).
    await waitFor('the poll on instance B', async () => (await count(b.metrics, 'poll')) === 2, 15_000)
    const seen = await observed(b.metrics)
    expect(seen.poll!.sum).toBeGreaterThan(0)
    expect(seen.local).toBeUndefined()
    // A's own poll sees its revocations too, but they arrived here already: not observed twice.
    await Bun.sleep(2_500)
    expect(await count(a.metrics, 'poll')).toBe(0)
    // Revoking again only re-announces (nothing newly committed): nothing more is observed.
    expect((await a.call('DELETE', `/revocation/${sub}`, { token: org.admin_key })).status).toBe(200)
    expect(await count(a.metrics, 'local')).toBe(2)
  })

  test('revocations from before a poll started came with the rebuild: added, not observed', async () => {
    const a = testApp(db)
    const before = await tokens(a)
    await a.call('DELETE', `/revocation/${before.agent}`, { token: org.admin_key })
    const metrics = createMetrics()
    const filter = createRevocationFilter({ log: testLog, metrics })
    const poll = new RevocationPoll({ sql: db.app, filter, log: testLog })
    await poll.start()
    expect(await poll.pollOnce()).toBeGreaterThanOrEqual(1)
    expect(filter.check(org.org_id, before.agent)).toBe(true)
    expect(await count(metrics, 'poll')).toBe(0)
    const after = await tokens(a)
    await a.call('DELETE', `/revocation/${after.agent}`, { token: org.admin_key })
    expect(await poll.pollOnce()).toBe(1)
    expect(await count(metrics, 'poll')).toBe(1)
    await poll.stop()
    await filter.close()
  })
})

describe('with Redis: pubsub on the others', () => {
  test('the commit time travels with the message; each instance observes each jti once', async () => {
    const ns = `test:slo:${crypto.randomUUID()}`
    const instance = async () => {
      const redis = await testRedis()
      stores.push(redis)
      const metrics = createMetrics()
      const source = () =>
        (async function* () {
          yield* await revokedForFilter(db.app, 30)
        })()
      const revocationFilter = createRevocationFilter({
        redis,
        log: testLog,
        metrics,
        namespace: ns,
        source,
        verifyIntervalMs: 200,
      })
      const t = testApp(db, {}, new LocalBus(), { redis, revocationFilter })
      await waitFor('the filter to load', () => revocationFilter.stats().loaded, 15_000)
      return { t, metrics, revocationFilter }
    }
    const a = await instance()
    const b = await instance()
    const { agent } = await tokens(a.t)
    expect((await a.t.call('POST', `/revocation/cascade/${agent}`, { token: org.admin_key })).status).toBe(200)
    expect(await count(a.metrics, 'local')).toBe(2)
    await waitFor('the message on instance B', async () => (await count(b.metrics, 'pubsub')) === 2, 15_000)
    expect(b.revocationFilter.check(org.org_id, agent)).toBe(true)
    const seen = await observed(b.metrics)
    expect(seen.pubsub!.sum).toBeGreaterThanOrEqual(0)
    expect(seen.local).toBeUndefined()
    expect(seen.poll).toBeUndefined()
    // The revoking instance does not count its own message.
    expect(await count(a.metrics, 'pubsub')).toBe(0)
    await a.revocationFilter.close()
    await b.revocationFilter.close()
  })
})

test('promtool check metrics is clean for the revocation metrics (where promtool is installed)', async () => {
  const promtool = Bun.which('promtool')
  if (!promtool) return
  const metrics = createMetrics()
  const filter = createRevocationFilter({ log: testLog, metrics })
  await filter.rebuild([])
  await filter.add([{ orgId: crypto.randomUUID(), jti: crypto.randomUUID(), committedAt: Date.now() - 20 }])
  const text = await metrics.registry.metrics()
  const ours = text
    .split('\n# HELP ')
    .filter((block) => block.startsWith('quint_revocation_') || block.startsWith('# HELP quint_revocation_'))
    .map((block) => (block.startsWith('# HELP ') ? block : `# HELP ${block}`))
    .join('\n')
  expect(ours).toContain('quint_revocation_propagation_seconds_bucket{le="0.025",path="local"} 1')
  const stdin = new TextEncoder().encode(`${ours.trimEnd()}\n`)
  const proc = Bun.spawn([promtool, 'check', 'metrics'], { stdin, stdout: 'pipe', stderr: 'pipe' })
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  expect({ code, out, err }).toEqual({ code: 0, out: '', err: '' })
  await filter.close()
})
