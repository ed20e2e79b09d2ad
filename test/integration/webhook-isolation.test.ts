/**
 * Webhook delivery isolation and observability (issue 14), on a real Postgres with real local
 * receivers: an endpoint that accepts and never answers (a raw TCP server), and a Bun.serve
 * receiver that can hold requests open while the test counts how many are in flight at once.
 *
 * Proves that one org's hanging endpoint never delays another org's delivery (there used to be a
 * round barrier: 3.2 s with a 3 s timeout), that the global, per-org and per-endpoint caps hold,
 * that shutdown aborts attempts in flight without recording them, that hostile answers (an endless
 * body, a socket kept alive and then silent, redirects of every kind) are bounded, and that every
 * failed attempt is counted, timed and logged without the URL's query or any secret.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import net from 'node:net'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { WebhookDispatcher } from '../../src/features/webhooks/dispatcher.ts'
import { createLogger } from '../../src/infra/log.ts'
import { createMetrics } from '../../src/infra/metrics.ts'
import { testApp, testSecrets, twoOrgApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testLog, type TestDatabase } from '../helpers/db.ts'
import { waitFor } from '../helpers/wait.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg

/** Accepts connections and reads requests, never answers: an endpoint that hangs. */
let hang: net.Server
let hangBase: string
const hangSockets = new Set<net.Socket>()
/** Requests seen by `hang` (first bytes of each connection), by path. */
const hangRequests: string[] = []

/** Answers at once, except under /held/<group>/<endpoint> while `gate` is closed. */
let receiver: ReturnType<typeof Bun.serve>
let base: string
const arrivals: { path: string; at: number }[] = []
const active = new Map<string, number>()
const peak = new Map<string, number>()
let gate: { promise: Promise<void>; open: () => void } | null = null

function closeGate() {
  let open!: () => void
  const promise = new Promise<void>((r) => (open = r))
  gate = { promise, open }
}
function openGate() {
  gate?.open()
  gate = null
}
function track(key: string, delta: number) {
  const n = (active.get(key) ?? 0) + delta
  active.set(key, n)
  if (n > (peak.get(key) ?? 0)) peak.set(key, n)
}

/** A raw endpoint: the first request on a connection gets a keep-alive 200, later ones nothing. */
let silentAfterFirst: net.Server
let silentBase: string

const lax = { allowInsecure: true, allowPrivate: true }
const started: WebhookDispatcher[] = []
function dispatcher(over: Partial<ConstructorParameters<typeof WebhookDispatcher>[0]> = {}) {
  return new WebhookDispatcher({
    sql: db.app,
    secrets: testSecrets,
    log: testLog,
    policy: lax,
    timeoutMs: 6_000,
    maxAttempts: 3,
    retryBaseMs: 5,
    pollMs: 20,
    ...over,
  })
}
function run(d: WebhookDispatcher): WebhookDispatcher {
  started.push(d)
  d.start()
  return d
}

beforeAll(async () => {
  ;({ db, a, b } = await twoOrgApp())
  t = testApp(db, { WEBHOOK_ALLOW_INSECURE: 'true', WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' })
  hang = net.createServer((socket) => {
    hangSockets.add(socket)
    socket.once('data', (chunk) => hangRequests.push(chunk.toString('latin1').split(' ')[1] ?? ''))
    socket.on('error', () => {})
    socket.on('close', () => hangSockets.delete(socket))
  })
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r))
  hangBase = `http://127.0.0.1:${(hang.address() as net.AddressInfo).port}`

  silentAfterFirst = net.createServer((socket) => {
    let answered = false
    socket.on('error', () => {})
    socket.on('data', () => {
      if (answered) return
      answered = true
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\nkeep-alive: timeout=300\r\n\r\nok')
    })
  })
  await new Promise<void>((r) => silentAfterFirst.listen(0, '127.0.0.1', r))
  silentBase = `http://127.0.0.1:${(silentAfterFirst.address() as net.AddressInfo).port}`

  receiver = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname
      await req.text()
      arrivals.push({ path, at: performance.now() })
      if (path === '/endless') {
        return new Response(new ReadableStream({ pull: (c) => Bun.sleep(1).then(() => c.enqueue(new Uint8Array(65_536))) }))
      }
      const redirect = /^\/redirect\/(\d{3})$/.exec(path)
      if (redirect) return new Response(null, { status: Number(redirect[1]), headers: { location: `${base}/trap` } })
      if (path.startsWith('/fail500')) return new Response('no', { status: 500 })
      if (path.startsWith('/fail-once/') && arrived(path).length === 1) return new Response('no', { status: 500 })
      if (path === '/gone') return new Response(null, { status: 410 })
      const held = /^\/held\/([^/]+)\/([^/]+)$/.exec(path)
      if (held && gate) {
        const keys = [`group:${held[1]}`, `endpoint:${held[1]}/${held[2]}`]
        for (const k of keys) track(k, 1)
        try {
          await gate.promise
        } finally {
          for (const k of keys) track(k, -1)
        }
      }
      return new Response('ok')
    },
  })
  base = `http://127.0.0.1:${receiver.port}`
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  openGate()
  for (const d of started) await d.stop()
  for (const s of hangSockets) s.destroy()
  hang?.close()
  silentAfterFirst?.close()
  await receiver?.stop(true)
  await db.drop()
}, HOOK_TIMEOUT_MS)

async function createHook(org: CreatedOrg, url: string): Promise<string> {
  const res = await t.call('POST', '/v1/webhooks', { token: org.admin_key, json: { url } })
  expect(res.status).toBe(201)
  return res.body.id
}

async function ping(org: CreatedOrg, hook: string): Promise<string> {
  const res = await t.call('POST', `/v1/webhooks/${hook}/test`, { token: org.admin_key })
  expect(res.status).toBe(202)
  return res.body.delivery_id
}

async function delivery(org: CreatedOrg, hook: string, id: string) {
  const res = await t.call('GET', `/v1/webhooks/${hook}/deliveries/${id}`, { token: org.admin_key })
  expect(res.status).toBe(200)
  return res.body
}

/** Runs passes until `done` holds (retries are due within milliseconds here). */
async function until(d: WebhookDispatcher, done: () => Promise<boolean>, ms = 10_000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    await d.runOnce()
    if (await done()) return
    await Bun.sleep(5)
  }
  throw new Error('condition not reached')
}

/** Leftover deliveries of hanging endpoints would come back when their lease ends: remove them. */
async function removeHooks(ids: string[]) {
  await db.owner`delete from webhooks where id = any(${ids}::uuid[])`
}

const arrived = (path: string) => arrivals.filter((r) => r.path === path)

describe('isolation between tenants', () => {
  test("org A's endpoint that never answers does not delay org B's delivery; shutdown aborts A's attempt", async () => {
    const hookA = await createHook(a, `${hangBase}/a-never`)
    const hookB = await createHook(b, `${base}/b-prompt`)
    const d = run(dispatcher({ timeoutMs: 6_000 }))
    try {
      const idA = await ping(a, hookA)
      await waitFor("A's attempt to reach the hanging endpoint", () => hangRequests.includes('/a-never'))
      // A's attempt is now in flight and will be for 6 s.
      const t0 = performance.now()
      const idB = await ping(b, hookB)
      await waitFor("B's delivery", () => arrived('/b-prompt').length > 0, 10_000)
      const waited = arrived('/b-prompt')[0]!.at - t0
      // Before issue 14 B waited for A's timeout (a round waited for every org's attempts).
      expect(waited).toBeLessThan(2_000)
      await waitFor("B's outcome recorded", async () => (await delivery(b, hookB, idB)).status === 'succeeded', 3_000)
      const x = await delivery(a, hookA, idA)
      expect(x).toMatchObject({ status: 'pending', attempt_count: 1 })
      expect(x.attempts).toHaveLength(0)
      expect(d.inFlight).toBe(1)

      // Shutdown aborts the hanging attempt at once and records nothing: the lease brings it back.
      const s0 = performance.now()
      await d.stop()
      expect(performance.now() - s0).toBeLessThan(2_000)
      expect(d.inFlight).toBe(0)
      const after = await delivery(a, hookA, idA)
      expect(after).toMatchObject({ status: 'pending', attempt_count: 1 })
      expect(after.attempts).toHaveLength(0)
      expect(Date.parse(after.next_attempt_at) - Date.now()).toBeGreaterThan(20_000)
    } finally {
      await d.stop()
      await removeHooks([hookA, hookB])
    }
  })

  test("an org whose endpoints all hang holds at most its own share of slots; another org's delivery still goes", async () => {
    const hooksA: string[] = []
    for (let i = 0; i < 6; i++) hooksA.push(await createHook(a, `${hangBase}/share-${i}`))
    for (const h of hooksA) for (let n = 0; n < 2; n++) await ping(a, h)
    const hookB = await createHook(b, `${base}/share-b`)
    const d = run(dispatcher({ concurrency: 4, concurrencyPerOrg: 2, concurrencyPerEndpoint: 4, timeoutMs: 6_000 }))
    try {
      await waitFor("A's first attempts", () => hangRequests.filter((p) => p.startsWith('/share-')).length >= 2)
      await Bun.sleep(300)
      // A has 12 due deliveries and 4 free slots, but its cap is 2.
      expect(hangRequests.filter((p) => p.startsWith('/share-'))).toHaveLength(2)
      expect(d.inFlight).toBe(2)
      const t0 = performance.now()
      const idB = await ping(b, hookB)
      await waitFor("B's delivery", () => arrived('/share-b').length > 0, 10_000)
      expect(arrived('/share-b')[0]!.at - t0).toBeLessThan(2_000)
      await waitFor("B's outcome recorded", async () => (await delivery(b, hookB, idB)).status === 'succeeded', 3_000)
    } finally {
      await d.stop()
      await removeHooks([...hooksA, hookB])
    }
  })
})

describe('saturated orgs', () => {
  test('an org that stays overdue but has no free slot does not hide other orgs from the loop', async () => {
    // One org looked at per pass. A is the most overdue and stays so (its endpoint is at its cap
    // with more due). B's first attempt fails, and its retry is due after A's due time: unless the
    // loop sets A aside, it would look at A alone until A's attempt times out.
    const hookA = await createHook(a, `${hangBase}/sat-a`)
    for (let i = 0; i < 3; i++) await ping(a, hookA)
    const hookB = await createHook(b, `${base}/fail-once/sat-b`)
    const d = run(dispatcher({ orgs: 1, concurrencyPerEndpoint: 1, timeoutMs: 6_000 }))
    try {
      await waitFor("A's first attempt", () => hangRequests.includes('/sat-a'))
      const t0 = performance.now()
      const idB = await ping(b, hookB)
      await waitFor("B's retry", () => arrived('/fail-once/sat-b').length >= 2, 10_000)
      expect(arrived('/fail-once/sat-b')[1]!.at - t0).toBeLessThan(2_000)
      await waitFor("B's outcome recorded", async () => (await delivery(b, hookB, idB)).status === 'succeeded', 3_000)
      expect((await delivery(b, hookB, idB)).attempts.map((x: any) => x.status)).toEqual([500, 200])
      expect(hangRequests.filter((p) => p === '/sat-a')).toHaveLength(1)
    } finally {
      await d.stop()
      await removeHooks([hookA, hookB])
    }
  })
})

describe('concurrency caps', () => {
  test('one endpoint never has more attempts in flight than its cap', async () => {
    closeGate()
    const hook = await createHook(a, `${base}/held/cap1/one`)
    const ids: string[] = []
    for (let i = 0; i < 10; i++) ids.push(await ping(a, hook))
    const d = run(dispatcher({ concurrency: 50, concurrencyPerOrg: 50, concurrencyPerEndpoint: 3 }))
    try {
      await waitFor('three held requests', () => (active.get('endpoint:cap1/one') ?? 0) >= 3)
      await Bun.sleep(300)
      expect(active.get('endpoint:cap1/one')).toBe(3)
      expect(d.inFlight).toBe(3)
      openGate()
      await waitFor('all ten delivered', async () => {
        for (const id of ids) if ((await delivery(a, hook, id)).status !== 'succeeded') return false
        return true
      })
      expect(peak.get('endpoint:cap1/one')).toBe(3)
      expect(arrived('/held/cap1/one')).toHaveLength(10)
    } finally {
      openGate()
      await d.stop()
    }
  })

  test('the global cap holds across orgs and endpoints, and both orgs get slots', async () => {
    closeGate()
    const hooks: [CreatedOrg, string][] = []
    for (let i = 0; i < 3; i++) hooks.push([a, await createHook(a, `${base}/held/cap2/a${i}`)])
    for (let i = 0; i < 3; i++) hooks.push([b, await createHook(b, `${base}/held/cap2/b${i}`)])
    const ids: [CreatedOrg, string, string][] = []
    for (const [org, hook] of hooks) for (let n = 0; n < 2; n++) ids.push([org, hook, await ping(org, hook)])
    const d = run(dispatcher({ concurrency: 4, concurrencyPerOrg: 4, concurrencyPerEndpoint: 2 }))
    try {
      await waitFor('four held requests', () => (active.get('group:cap2') ?? 0) >= 4)
      await Bun.sleep(300)
      expect(active.get('group:cap2')).toBe(4)
      const heldBy = (prefix: string) =>
        [...active].filter(([k, n]) => k.startsWith(`endpoint:cap2/${prefix}`) && n > 0).reduce((s, [, n]) => s + n, 0)
      // Fair shares: neither org took every slot.
      expect(heldBy('a')).toBeGreaterThan(0)
      expect(heldBy('b')).toBeGreaterThan(0)
      openGate()
      await waitFor('all twelve delivered', async () => {
        for (const [org, hook, id] of ids) if ((await delivery(org, hook, id)).status !== 'succeeded') return false
        return true
      })
      expect(peak.get('group:cap2')).toBe(4)
      for (const [, , n] of [...peak].map(([k, v]) => [k, k, v] as const)) expect(n).toBeLessThanOrEqual(4)
      for (const [k, n] of peak) if (k.startsWith('endpoint:cap2/')) expect([k, n <= 2]).toEqual([k, true])
    } finally {
      openGate()
      await d.stop()
    }
  })

  test('a backlog on one endpoint does not hold back the same org’s other endpoint', async () => {
    closeGate()
    const busy = await createHook(a, `${base}/held/cap3/busy`)
    for (let i = 0; i < 8; i++) await ping(a, busy)
    const quiet = await createHook(a, `${base}/cap3-quiet`)
    const d = run(dispatcher({ concurrency: 10, concurrencyPerOrg: 10, concurrencyPerEndpoint: 2 }))
    try {
      await waitFor('the busy endpoint at its cap', () => (active.get('endpoint:cap3/busy') ?? 0) >= 2)
      const id = await ping(a, quiet)
      await waitFor('the quiet endpoint delivered', async () => (await delivery(a, quiet, id)).status === 'succeeded', 3_000)
      expect(active.get('endpoint:cap3/busy')).toBe(2)
    } finally {
      openGate()
      await d.stop()
    }
  })
})

describe('hostile endpoints', () => {
  test('an endless response body does not stall the attempt', async () => {
    const hook = await createHook(a, `${base}/endless`)
    const id = await ping(a, hook)
    const d = dispatcher({ timeoutMs: 5_000 })
    await until(d, async () => (await delivery(a, hook, id)).status !== 'pending')
    const x = await delivery(a, hook, id)
    expect(x).toMatchObject({ status: 'succeeded', last_status: 200 })
    expect(x.attempts[0].duration_ms).toBeLessThan(2_500)
  })

  test('a kept-alive socket that goes silent ends with the attempt timeout', async () => {
    const hook = await createHook(a, `${silentBase}/keepalive`)
    const first = await ping(a, hook)
    const d = dispatcher({ timeoutMs: 1_000 })
    await until(d, async () => (await delivery(a, hook, first)).status === 'succeeded')
    const second = await ping(a, hook)
    const t0 = performance.now()
    await until(d, async () => (await delivery(a, hook, second)).attempts.length > 0)
    expect(performance.now() - t0).toBeLessThan(5_000)
    const x = await delivery(a, hook, second)
    // Either the pooled socket was reused and the timeout ended the wait, or a new connection was made.
    expect([x.attempts[0].status, x.attempts[0].error]).toEqual(
      x.attempts[0].status === 200 ? [200, null] : [null, 'timed out after 1000 ms'],
    )
  })

  test('no redirect is followed, whatever its status', async () => {
    const d = dispatcher({ maxAttempts: 1 })
    for (const status of [301, 302, 303, 307, 308]) {
      const hook = await createHook(a, `${base}/redirect/${status}`)
      const id = await ping(a, hook)
      await until(d, async () => (await delivery(a, hook, id)).status !== 'pending')
      const x = await delivery(a, hook, id)
      expect(x).toMatchObject({ status: 'dead', last_status: status, last_error: `redirect (HTTP ${status}) not followed` })
    }
    expect(arrived('/trap')).toHaveLength(0)
  })
})

describe('observability', () => {
  test('attempts are counted by outcome with latency; each failed attempt is logged without URL query or secret', async () => {
    const lines: string[] = []
    const log = createLogger('debug', { write: (line: string) => void lines.push(line) })
    const metrics = createMetrics()
    const d = dispatcher({ log, metrics, maxAttempts: 2 })
    const failing = await createHook(a, `${base}/fail500?sig=s3cr3tvalue`)
    const gone = await createHook(b, `${base}/gone`)
    const ok = await createHook(b, `${base}/observed-ok`)
    const down = await createHook(a, `${base}/down`)
    await db.owner`update webhooks set url = 'http://127.0.0.1:1/nothing?key=hidden' where id = ${down}`
    const ids: [CreatedOrg, string, string][] = [
      [a, failing, await ping(a, failing)],
      [b, gone, await ping(b, gone)],
      [b, ok, await ping(b, ok)],
      [a, down, await ping(a, down)],
    ]
    await until(d, async () => {
      for (const [org, hook, id] of ids) if ((await delivery(org, hook, id)).status === 'pending') return false
      return true
    })
    const text = await metrics.registry.metrics()
    const value = (series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `))
      return line === undefined ? null : Number(line.slice(series.length + 1))
    }
    expect(value('quint_webhook_attempts_total{outcome="success"}')).toBe(1)
    expect(value('quint_webhook_attempts_total{outcome="http_error"}')).toBe(2)
    expect(value('quint_webhook_attempts_total{outcome="gone"}')).toBe(1)
    expect(value('quint_webhook_attempts_total{outcome="network_error"}')).toBe(2)
    expect(value('quint_webhook_deliveries_total{result="succeeded"}')).toBe(1)
    expect(value('quint_webhook_deliveries_total{result="failed"}')).toBe(1)
    expect(value('quint_webhook_deliveries_total{result="dead"}')).toBe(2)
    expect(value('quint_webhook_attempt_duration_seconds_count{outcome="success"}')).toBe(1)
    expect(value('quint_webhook_attempt_duration_seconds_count{outcome="http_error"}')).toBe(2)
    expect(value('quint_webhook_attempt_duration_seconds_bucket{le="60",outcome="success"}')).toBe(1)
    expect(value('quint_webhook_attempts_in_flight')).toBe(0)

    const failed = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'webhook attempt failed')
    // 2 + 1 + 2 failed attempts, one line each; none for the success.
    expect(failed).toHaveLength(5)
    const of = (hook: string) => failed.filter((l) => l.webhook_id === hook)
    expect(of(failing).map((l) => [l.org_id, l.attempt, l.outcome, l.status, l.result])).toEqual([
      [a.org_id, 1, 'http_error', 500, 'retrying'],
      [a.org_id, 2, 'http_error', 500, 'dead'],
    ])
    expect(Date.parse(of(failing)[0].next_attempt_at)).toBeGreaterThan(Date.now() - 60_000)
    expect(of(failing)[1].next_attempt_at).toBeNull()
    expect(of(gone).map((l) => [l.org_id, l.outcome, l.status, l.result, l.webhook_disabled])).toEqual([
      [b.org_id, 'gone', 410, 'failed', true],
    ])
    expect(of(down).map((l) => [l.outcome, l.status, l.result])).toEqual([
      ['network_error', null, 'retrying'],
      ['network_error', null, 'dead'],
    ])
    for (const l of failed) expect(l.delivery_id).toEqual(expect.any(String))
    const all = lines.join('\n')
    for (const leak of ['s3cr3tvalue', 'sig=', 'key=hidden', '/fail500', '/nothing', 'whsec_']) expect(all).not.toContain(leak)
  })

  test('a secret that no longer opens is a secret_error; nothing is sent', async () => {
    const metrics = createMetrics()
    const d = dispatcher({ metrics, maxAttempts: 1 })
    const hook = await createHook(a, `${base}/sealed-wrong`)
    await db.owner`update webhooks set secret_ciphertext = ${Buffer.alloc(64, 7)} where id = ${hook}`
    const id = await ping(a, hook)
    await until(d, async () => (await delivery(a, hook, id)).status !== 'pending')
    const x = await delivery(a, hook, id)
    expect(x).toMatchObject({ status: 'dead', last_status: null })
    expect(x.last_error).toMatch(/^not sent: the signing secret/)
    expect(arrived('/sealed-wrong')).toHaveLength(0)
    expect(await metrics.registry.metrics()).toContain('quint_webhook_attempts_total{outcome="secret_error"} 1')
  })
})
