/**
 * The JWT revocation filter (src/auth/jwt/revocation-filter.ts) in memory mode and on a real Redis:
 * the shared one (TEST_REDIS_URL, a fresh key namespace per test) and private redis-servers for
 * the faults that touch a whole server (FLUSHDB, killing subscribers, freezing). The invariant
 * throughout: a revoked jti never answers `false`; whatever the filter cannot vouch for answers
 * 'unknown', which sends the validator to Postgres.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { RedisClient } from 'bun'
import { bloomItem, bloomParams, bloomPositions } from '../../src/auth/jwt/bloom.ts'
import { createRevocationFilter, type RevocationEntry, type RevocationFilter } from '../../src/auth/jwt/revocation-filter.ts'
import { createMetrics } from '../../src/infra/metrics.ts'
import { bloomKeys } from '../../src/infra/redis-bloom.ts'
import type { RedisStateStore } from '../../src/infra/redis.ts'
import { testLog } from '../helpers/db.ts'
import { privateRedisServer, testRedis, TEST_REDIS_URL, unreachableRedis } from '../helpers/redis.ts'

// Small filters keep loads fast; the design sizing itself is covered in src/auth/jwt/bloom.test.ts.
const SIZE = { expectedItems: 20_000, falsePositiveRate: 0.008 }
const ORG = crypto.randomUUID()
const entry = (orgId = ORG): RevocationEntry => ({ orgId, jti: crypto.randomUUID() })
const entries = (n: number) => Array.from({ length: n }, () => entry())

const cleanups: (() => Promise<unknown> | unknown)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

async function store(url?: string, commandTimeoutMs?: number): Promise<RedisStateStore> {
  const s = await testRedis({ url, commandTimeoutMs })
  cleanups.push(() => s.close())
  return s
}

function raw(url = TEST_REDIS_URL): RedisClient {
  const c = new RedisClient(url)
  cleanups.push(() => c.close())
  return c
}

/** A fresh namespace on the shared Redis, deleted at the end. */
function namespace(): string {
  const ns = `test:revocation:${crypto.randomUUID()}`
  cleanups.push(async () => {
    const c = new RedisClient(TEST_REDIS_URL)
    const [, keys] = (await c.send('SCAN', ['0', 'MATCH', `${ns}:*`, 'COUNT', '10000'])) as [string, string[]]
    if (keys.length) await c.send('DEL', keys)
    c.close()
  })
  return ns
}

function filter(opts: Partial<Parameters<typeof createRevocationFilter>[0]> = {}): RevocationFilter {
  const f = createRevocationFilter({ log: testLog, ...SIZE, verifyIntervalMs: 50, ...opts })
  cleanups.push(() => f.close())
  return f
}

async function until(what: string, predicate: () => boolean, timeoutMs = 3_000): Promise<number> {
  const started = performance.now()
  while (!predicate()) {
    if (performance.now() - started > timeoutMs) throw new Error(`timed out waiting for: ${what}`)
    await Bun.sleep(2)
  }
  return performance.now() - started
}

const loaded = (f: RevocationFilter, generation?: string) => () =>
  f.stats().loaded && (generation === undefined || f.stats().generation === generation)

/** Every revoked entry answers true (never false, never 'unknown'). */
function expectAllRevoked(f: RevocationFilter, list: readonly RevocationEntry[]) {
  const answers = new Set(list.map((e) => f.check(e.orgId, e.jti)))
  expect([...answers]).toEqual([true])
}

describe('memory mode', () => {
  test("'unknown' before the first rebuild; an add is a hit even then", async () => {
    const f = filter()
    const early = entry()
    expect(f.check(ORG, crypto.randomUUID())).toBe('unknown')
    await f.add([early])
    expect(f.check(early.orgId, early.jti)).toBe(true)
    expect(f.check(ORG, crypto.randomUUID())).toBe('unknown')
    expect(f.stats()).toMatchObject({ generation: null, loaded: false, hashes: 7 })

    const list = entries(1000)
    const { generation, count } = await f.rebuild(list)
    expect(count).toBe(1000)
    expect(f.stats()).toMatchObject({ generation, loaded: true, count: 1000 })
    expectAllRevoked(f, list)
    // Added a moment before the rebuild but missing from its list: kept by the journal.
    expect(f.check(early.orgId, early.jti)).toBe(true)
    let negatives = 0
    for (let i = 0; i < 1000; i++) if (f.check(ORG, crypto.randomUUID()) === false) negatives++
    expect(negatives).toBeGreaterThan(950)
  })

  test('onAdded fires for every add; the same jti of another org is not revoked', async () => {
    const f = filter({ expectedItems: 1000, falsePositiveRate: 1e-9 })
    await f.rebuild([])
    const seen: string[] = []
    f.onAdded((orgId, jti) => seen.push(`${orgId}:${jti}`))
    const list = entries(3)
    await f.add(list)
    expect(seen).toEqual(list.map((e) => bloomItem(e.orgId, e.jti)))
    expect(f.check(crypto.randomUUID(), list[0]!.jti)).toBe(false)
  })

  test('rebuild swaps atomically: concurrent checks never see a revoked jti as not revoked', async () => {
    const f = filter({ expectedItems: 300_000 })
    const revoked = entries(200)
    await f.rebuild(revoked)
    const during = entries(50)
    let checks = 0
    let bad = 0
    let stop = false
    const checker = (async () => {
      while (!stop) {
        for (const e of revoked) if (f.check(e.orgId, e.jti) !== true) bad++
        checks += revoked.length
        await Bun.sleep(0)
      }
    })()
    async function* slowList() {
      for (const e of revoked) yield e
      for (let i = 0; i < 200_000; i++) {
        if (i % 20_000 === 0) {
          // Revocations committed while the list is being read, missing from it.
          await f.add(during.splice(0, 5))
          await Bun.sleep(1)
        }
        yield entry()
      }
    }
    const addedDuring = [...during]
    const before = f.stats().generation
    const { generation } = await f.rebuild(slowList())
    stop = true
    await checker
    expect(generation).not.toBe(before)
    expect(checks).toBeGreaterThan(1000)
    expect(bad).toBe(0)
    expectAllRevoked(f, revoked)
    expectAllRevoked(f, addedDuring)
  })
})

describe('cluster mode (shared Redis)', () => {
  // How fast is measured by `bun run bench` (revocation suite), not here: these tests check that
  // an add is pushed (pub/sub), well before the periodic check could have found it.
  test('an add on one instance is pushed to another at once (not found by its periodic check)', async () => {
    const ns = namespace()
    const a = filter({ redis: await store(), namespace: ns })
    const b = filter({ redis: await store(), namespace: ns, verifyIntervalMs: 60_000 })
    const initial = entries(100)
    const { generation } = await a.rebuild(initial)
    await until('B loads the generation', loaded(b, generation))
    expectAllRevoked(b, initial)

    const arrivals = new Set<string>()
    b.onAdded((_org, jti) => arrivals.add(jti))
    for (let i = 0; i < 30; i++) {
      const e = entry()
      expect(b.check(e.orgId, e.jti)).not.toBe('unknown')
      await a.add([e])
      await until('B receives the add', () => arrivals.has(e.jti), 1_000)
      expect(b.check(e.orgId, e.jti)).toBe(true)
    }
    expect(b.stats()).toMatchObject({ generation, loaded: true })
  })

  test('two processes: an add in this one is pushed to the other (well within its 2 s periodic check)', async () => {
    const ns = namespace()
    const a = filter({ redis: await store(), namespace: ns })
    await a.rebuild(entries(10))
    const root = new URL('../../', import.meta.url).pathname
    const code = `
      import { createRevocationFilter } from '${root}src/auth/jwt/revocation-filter.ts'
      import { RedisStateStore } from '${root}src/infra/redis.ts'
      import { createLogger } from '${root}src/infra/log.ts'
      const log = createLogger('silent', 'stderr')
      const redis = new RedisStateStore({ url: process.env.URL, commandTimeoutMs: 1000, log })
      const f = createRevocationFilter({ redis, log, namespace: process.env.NS, expectedItems: ${SIZE.expectedItems} })
      f.onAdded((org, jti) => console.log(JSON.stringify({ jti, at: performance.timeOrigin + performance.now(), check: f.check(org, jti) })))
      const t = setInterval(() => { if (f.stats().loaded) { clearInterval(t); console.log(JSON.stringify({ ready: true })) } }, 5)
    `
    const child = Bun.spawn(['bun', '-e', code], {
      env: { ...process.env, URL: TEST_REDIS_URL, NS: ns },
      stdout: 'pipe',
      stderr: 'inherit',
    })
    cleanups.push(() => child.kill('SIGKILL'))
    const lines: Record<string, unknown>[] = []
    void (async () => {
      let buf = ''
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += chunk
        let nl: number
        while ((nl = buf.indexOf('\n')) >= 0) {
          lines.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>)
          buf = buf.slice(nl + 1)
        }
      }
    })()
    await until('the other process loads', () => lines.some((l) => l.ready), 10_000)
    const latencies: number[] = []
    for (let i = 0; i < 20; i++) {
      const e = entry()
      const started = performance.timeOrigin + performance.now()
      await a.add([e])
      await until('the other process receives the add', () => lines.some((l) => l.jti === e.jti), 1_000)
      const line = lines.find((l) => l.jti === e.jti)!
      expect(line.check).toBe(true)
      latencies.push((line.at as number) - started)
    }
    expect(Math.max(...latencies)).toBeLessThan(1_000)
  })

  test('a new instance loads the whole bitmap (SETBIT by others, Redis bit order) and follows from there', async () => {
    const ns = namespace()
    const a = filter({ redis: await store(), namespace: ns })
    const list = entries(500)
    const { generation } = await a.rebuild(list)
    const later = entries(20)
    await a.add(later)
    // The bits of one add, read straight from Redis: the layout is SETBIT's.
    const c = raw()
    const params = bloomParams(SIZE.expectedItems, SIZE.falsePositiveRate)
    for (const p of bloomPositions(params, bloomItem(later[0]!.orgId, later[0]!.jti))) {
      expect(await c.send('GETBIT', [bloomKeys(ns).bitmap(generation), String(p)])).toBe(1)
    }
    const fresh = filter({ redis: await store(), namespace: ns })
    expect(fresh.check(ORG, crypto.randomUUID())).toBe('unknown')
    await until('the new instance loads', loaded(fresh, generation))
    expectAllRevoked(fresh, [...list, ...later])
    expect(fresh.stats().count).toBe(500)
  })

  test('rebuild on one instance while another adds: the new generation has every add', async () => {
    const ns = namespace()
    const a = filter({ redis: await store(), namespace: ns })
    const b = filter({ redis: await store(), namespace: ns })
    const { generation: g1 } = await a.rebuild(entries(10))
    await until('B loads g1', loaded(b, g1))
    const addedByB: RevocationEntry[] = []
    let bad = 0
    async function* list() {
      for (let i = 0; i < 5_000; i++) {
        if (i % 500 === 0) {
          // B revokes while A reads its (older) list: only the building set carries these.
          const e = entry()
          addedByB.push(e)
          await b.add([e])
          await Bun.sleep(2)
          for (const x of addedByB) if (b.check(x.orgId, x.jti) !== true) bad++
        }
        yield entry()
      }
    }
    const { generation: g2 } = await a.rebuild(list())
    await until('B loads g2', loaded(b, g2))
    expect(bad).toBe(0)
    expectAllRevoked(a, addedByB)
    expectAllRevoked(b, addedByB)
    // A third instance knows only what Redis holds.
    const c = filter({ redis: await store(), namespace: ns })
    await until('C loads g2', loaded(c, g2))
    expectAllRevoked(c, addedByB)
    // The replaced generation is left to expire, not deleted under a loader.
    const ttl = (await raw().send('PTTL', [bloomKeys(ns).bitmap(g1)])) as number
    expect(ttl).toBeGreaterThan(0)
  })

  test("a deleted bitmap turns the filter 'unknown'; with a source it rebuilds itself", async () => {
    const ns = namespace()
    const list = entries(50)
    const a = filter({ redis: await store(), namespace: ns })
    const b = filter({ redis: await store(), namespace: ns, source: () => list })
    await a.rebuild(list)
    // B, finding no generation at its start, may have built one from its source as well.
    await until('both load one generation', () => loaded(a)() && loaded(b)() && a.stats().generation === b.stats().generation)
    const generation = a.stats().generation!
    // Whoever caches on A's answers is told when A stops being sure, or swaps generations.
    const told: string[] = []
    a.onGeneration((g) => void told.push(g))
    await raw().send('DEL', [bloomKeys(ns).bitmap(generation)])
    const probe = entry()
    // A never answers false for what it cannot vouch for any more, whatever B is doing.
    await until("A goes 'unknown'", () => a.check(probe.orgId, probe.jti) === 'unknown' || a.stats().generation !== generation)
    await until('A tells its listeners', () => told.length > 0)
    expectAllRevoked(a, list)
    // B (with the authoritative list) rebuilt the generation; both follow it.
    await until('a repaired generation', () => a.stats().loaded && a.stats().generation !== generation && b.stats().loaded)
    expect(b.stats().generation).toBe(a.stats().generation)
    expectAllRevoked(a, list)
    expectAllRevoked(b, list)
    expect(a.check(probe.orgId, probe.jti)).not.toBe('unknown')
  })

  test('with a source, the shared generation is rebuilt when it gets old, by one instance at a time', async () => {
    const ns = namespace()
    const list = entries(20)
    const filters: RevocationFilter[] = []
    for (let i = 0; i < 3; i++)
      filters.push(filter({ redis: await store(), namespace: ns, source: () => list, rebuildIntervalMs: 300 }))
    await until('all load one generation', () =>
      filters.every((f) => loaded(f)() && f.stats().generation === filters[0]!.stats().generation),
    )
    const first = filters[0]!.stats().generation
    const seen = new Set<string>()
    const started = performance.now()
    while (performance.now() - started < 1_500) {
      for (const f of filters) {
        expectAllRevoked(f, list)
        const g = f.stats().generation
        if (g) seen.add(g)
      }
      await Bun.sleep(10)
    }
    expect(seen.size).toBeGreaterThan(2)
    // About one rebuild per interval across all instances, not one per instance.
    expect(seen.size).toBeLessThan(12)
    expect(filters[0]!.stats().generation).not.toBe(first)
  })

  test("a generation it cannot load, or of other parameters, keeps it 'unknown' until a good one", async () => {
    const ns = namespace()
    const keys = bloomKeys(ns)
    const a = filter({ redis: await store(), namespace: ns })
    const b = filter({ redis: await store(), namespace: ns })
    const list = entries(20)
    const { generation } = await a.rebuild(list)
    await until('B loads', loaded(b, generation))
    const c = raw()
    // A pointer to a generation whose bitmap is not there, announced on the channel.
    await c.send('HSET', [keys.current, 'g', 'ghost-1'])
    await c.send('PUBLISH', [keys.channel, JSON.stringify({ i: 'test', t: 'g', g: 'ghost-1' })])
    const probe = entry()
    await until("B goes 'unknown'", () => b.check(probe.orgId, probe.jti) === 'unknown')
    await Bun.sleep(200)
    expect(b.check(probe.orgId, probe.jti)).toBe('unknown')
    expectAllRevoked(b, list)
    // A generation of another size (another version of the binary): never read as "not revoked".
    const { generation: g2 } = await a.rebuild(list)
    await until('B loads g2', loaded(b, g2))
    await c.send('HSET', [keys.current, 'm', '8'])
    await c.send('PUBLISH', [keys.channel, JSON.stringify({ i: 'test', t: 'g', g: 'other' })])
    await until("B goes 'unknown'", () => b.check(probe.orgId, probe.jti) === 'unknown')
    await Bun.sleep(200)
    expect(b.check(probe.orgId, probe.jti)).toBe('unknown')
    const { generation: g3 } = await a.rebuild(list)
    await until('B loads g3', loaded(b, g3))
    expect(b.check(probe.orgId, probe.jti)).toBe(false)
  })
})

describe('cluster mode faults (private redis-server)', () => {
  async function server() {
    const s = await privateRedisServer()
    cleanups.push(() => s.stop())
    return s
  }

  test("FLUSHDB: 'unknown' until rebuilt from the source", async () => {
    const s = await server()
    const list = entries(30)
    const a = filter({ redis: await store(s.url), source: () => list })
    const b = filter({ redis: await store(s.url) })
    await a.rebuild(list)
    // A, finding no generation at its start, may have built one from its source as well.
    await until('both load one generation', () => loaded(a)() && loaded(b)() && a.stats().generation === b.stats().generation)
    const generation = a.stats().generation!
    await raw(s.url).send('FLUSHDB', [])
    const probe = entry()
    await until("B goes 'unknown'", () => b.check(probe.orgId, probe.jti) === 'unknown' || b.stats().generation !== generation)
    expectAllRevoked(b, list)
    await until('repaired and reloaded', () => b.stats().loaded && b.stats().generation !== generation)
    expectAllRevoked(b, list)
  })

  test("a subscriber reconnect is 'unknown' until reloaded, and what it missed is in the reload", async () => {
    const s = await server()
    const a = filter({ redis: await store(s.url) })
    const b = filter({ redis: await store(s.url) })
    const { generation } = await a.rebuild(entries(10))
    await until('B loads', loaded(b, generation))
    const probe = entry()
    const c = raw(s.url)
    await c.send('CLIENT', ['KILL', 'TYPE', 'pubsub'])
    await until("B goes 'unknown'", () => b.check(probe.orgId, probe.jti) === 'unknown')
    // Revoked while B's subscriber is away: the message is lost to B, the bitmap has it.
    const missed = entry()
    await a.add([missed])
    await until('B reloads', loaded(b, generation))
    expect(b.check(missed.orgId, missed.jti)).toBe(true)
    expect(b.check(probe.orgId, probe.jti)).toBe(false)
  })

  test("a frozen Redis: add returns, checks turn 'unknown', and the add is shared once it thaws", async () => {
    const s = await server()
    const a = filter({ redis: await store(s.url, 100) })
    const b = filter({ redis: await store(s.url, 100) })
    const { generation } = await a.rebuild(entries(10))
    await until('B loads', loaded(b, generation))
    s.freeze()
    try {
      const e = entry()
      const started = performance.now()
      await a.add([e])
      expect(performance.now() - started).toBeLessThan(1_000)
      expect(a.check(e.orgId, e.jti)).toBe(true)
      const probe = entry()
      await until("B goes 'unknown'", () => b.check(probe.orgId, probe.jti) === 'unknown')
      s.thaw()
      await until('B sees the add made during the freeze', () => b.check(e.orgId, e.jti) === true && b.stats().loaded, 5_000)
    } finally {
      s.thaw()
    }
  })

  test("Redis down from the start: add never throws, hits stay true, the rest is 'unknown'", async () => {
    const metrics = createMetrics()
    const down = await unreachableRedis()
    cleanups.push(() => down.close())
    const f = filter({ redis: down, metrics })
    const list = entries(10)
    await f.rebuild(list)
    const e = entry()
    await f.add([e])
    expect(f.check(e.orgId, e.jti)).toBe(true)
    expectAllRevoked(f, list)
    expect(f.check(ORG, crypto.randomUUID())).toBe('unknown')
    expect(f.stats().loaded).toBe(false)
    const text = await metrics.registry.metrics()
    expect(text).toContain('quint_redis_fallbacks_total{op="revocation_bloom_add"} 1')
    expect(text).toContain('quint_revocation_filter_loaded 0')
  })
})
