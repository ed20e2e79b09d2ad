/**
 * Webhooks end to end on a real Postgres with a real HTTP receiver (Bun.serve on 127.0.0.1):
 * registration (secret shown once), an ingested event raising a built-in alert that is delivered
 * signed with both schemes (checked by an independent WebCrypto implementation of Standard
 * Webhooks and of the X-Quint-Signature scheme), retries with attempts logged, 410 disabling the
 * endpoint, dead after the last attempt, Retry-After, redelivery, secret rotation (two
 * signatures), the URL and SSRF rules, two dispatchers claiming the same work, tenant isolation,
 * and bad input (problem+json, never a 500).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { evaluateAlerts } from '../../src/features/alerts/consumer.ts'
import type { BusMessage } from '../../src/bus/bus.ts'
import { normalizeIngestItem } from '../../src/features/ingest/events.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { parseRetryAfter, retryDelayMs, WebhookDispatcher, MAX_BACKOFF_MS } from '../../src/features/webhooks/dispatcher.ts'
import { addressRefusal, checkWebhookUrl, resolveTarget } from '../../src/features/webhooks/url-guard.ts'
import { withOrg } from '../../src/infra/db.ts'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { testApp, testSecrets, twoOrgApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testLog, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'

let db: TestDatabase
/** Allows http:// and loopback targets (the receiver); `strict` has the production defaults. */
let t: ReturnType<typeof testApp>
let strict: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg

interface Received {
  path: string
  headers: Headers
  body: string
}
const received: Received[] = []
/** Per path, the statuses to answer in turn (the last one repeats); default 200. */
const script = new Map<string, { status: number; headers?: Record<string, string> }[]>()
let receiver: ReturnType<typeof Bun.serve>
let base: string
/** While set, requests to /hold wait for it (an attempt kept in flight). */
let hold: Promise<void> | null = null

const lax = { allowInsecure: true, allowPrivate: true }
const dispatcher = (over: Partial<ConstructorParameters<typeof WebhookDispatcher>[0]> = {}) =>
  new WebhookDispatcher({
    sql: db.app,
    secrets: testSecrets,
    log: testLog,
    policy: lax,
    timeoutMs: 2_000,
    maxAttempts: 3,
    retryBaseMs: 5,
    pollMs: 10,
    ...over,
  })
let d: WebhookDispatcher

beforeAll(async () => {
  ;({ db, a, b } = await twoOrgApp())
  t = testApp(db, { WEBHOOK_ALLOW_INSECURE: 'true', WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' })
  strict = testApp(db)
  receiver = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname
      received.push({ path, headers: req.headers, body: await req.text() })
      if (path === '/hold' && hold) await hold
      const steps = script.get(path) ?? [{ status: 200 }]
      const step = steps.length > 1 ? steps.shift()! : steps[0]!
      if (path === '/redirect') return new Response(null, { status: 302, headers: { location: `${base}/ok` } })
      return new Response('ok', { status: step.status, headers: step.headers })
    },
  })
  base = `http://127.0.0.1:${receiver.port}`
  d = dispatcher()
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  await receiver?.stop(true)
  await db.drop()
}, HOOK_TIMEOUT_MS)

// ---- an independent verifier (WebCrypto, not the code under test) ----

const enc = new TextEncoder()
async function hmac(key: Uint8Array<ArrayBuffer>, data: string): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
  return new Uint8Array(await crypto.subtle.sign('HMAC', k, enc.encode(data)))
}
const b64 = (u: Uint8Array) => Buffer.from(u).toString('base64')
const hex = (u: Uint8Array) => Buffer.from(u).toString('hex')

/** Standard Webhooks v1: true when any `v1,` signature matches and the timestamp is fresh. */
async function verifyStandard(secret: string, r: Received): Promise<boolean> {
  const id = r.headers.get('webhook-id')!
  const ts = r.headers.get('webhook-timestamp')!
  if (Math.abs(Date.now() / 1000 - Number(ts)) > 300) return false
  const key = Uint8Array.from(atob(secret.replace(/^whsec_/, '')), (ch) => ch.charCodeAt(0))
  const expected = b64(await hmac(key, `${id}.${ts}.${r.body}`))
  return r.headers
    .get('webhook-signature')!
    .split(' ')
    .some((s) => s.startsWith('v1,') && s.slice(3) === expected)
}

/** X-Quint-Signature (SPEC §16.8): t=<ts>,v1=<hex HMAC(secret, "<ts>.<body>")>[,v1=…]. */
async function verifyQuint(secret: string, r: Received): Promise<boolean> {
  const parts = r.headers
    .get('x-quint-signature')!
    .split(',')
    .map((p) => p.split('=') as [string, string])
  const ts = parts.find(([k]) => k === 't')![1]
  if (ts !== r.headers.get('webhook-timestamp')) return false
  const expected = hex(await hmac(enc.encode(secret), `${ts}.${r.body}`))
  return parts.some(([k, v]) => k === 'v1' && v === expected)
}

// ---- helpers ----

function expectProblem(res: { status: number; headers: Headers; body: any }, status: number) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  expect(res.body.status).toBe(status)
}

async function createHook(org: CreatedOrg, path: string, body: Record<string, unknown> = {}) {
  const res = await t.call('POST', '/v1/webhooks', { token: org.admin_key, json: { url: `${base}${path}`, ...body } })
  expect(res.status).toBe(201)
  return res.body as { id: string; secret: string; url: string }
}

async function ping(org: CreatedOrg, id: string): Promise<string> {
  const res = await t.call('POST', `/v1/webhooks/${id}/test`, { token: org.admin_key })
  expect(res.status).toBe(202)
  return res.body.delivery_id
}

async function delivery(org: CreatedOrg, hook: string, id: string) {
  const res = await t.call('GET', `/v1/webhooks/${hook}/deliveries/${id}`, { token: org.admin_key })
  expect(res.status).toBe(200)
  return res.body
}

/** Runs dispatcher rounds until `done` holds (retries are due within milliseconds here). */
async function until(done: () => Promise<boolean>, disp = d, ms = 5_000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    await disp.runOnce()
    if (await done()) return
    await Bun.sleep(5)
  }
  throw new Error('condition not reached')
}
const settled = (org: CreatedOrg, hook: string, id: string) => async () => (await delivery(org, hook, id)).status !== 'pending'
const at = (path: string) => received.filter((r) => r.path === path)

describe('registration', () => {
  test('the secret is shown once, stored sealed, and never listed', async () => {
    const w = await createHook(a, '/reg', { description: 'ops', event_types: ['alert.created'] })
    expect(w.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/)
    const bytes = Buffer.from(w.secret.slice(6), 'base64').length
    expect(bytes).toBeGreaterThanOrEqual(24)
    expect(bytes).toBeLessThanOrEqual(64)
    const list = await t.call('GET', '/v1/webhooks', { token: a.admin_key })
    const one = await t.call('GET', `/v1/webhooks/${w.id}`, { token: a.admin_key })
    expect(one.body).toMatchObject({
      id: w.id,
      url: `${base}/reg`,
      description: 'ops',
      event_types: ['alert.created'],
      enabled: true,
    })
    for (const r of [list, one]) {
      expect(r.text).not.toContain(w.secret)
      expect(r.text).not.toContain('secret"')
    }
    const [row] = await db.owner<{ c: Buffer }[]>`select secret_ciphertext as c from webhooks where id = ${w.id}`
    expect(row!.c.toString('latin1')).not.toContain(w.secret.slice(6, 20))
  })

  test("SPEC §7.5 POST /webhooks/register works for the caller's own org only", async () => {
    const ok = await t.call('POST', '/webhooks/register', {
      token: a.admin_key,
      json: { customer_id: a.org_id, endpoint_url: `${base}/spec` },
    })
    expect(ok.status).toBe(201)
    expect(ok.body).toEqual({
      webhook_id: expect.any(String),
      endpoint_url: `${base}/spec`,
      secret: expect.stringMatching(/^whsec_/),
    })
    const other = await t.call('POST', '/webhooks/register', {
      token: a.admin_key,
      json: { customer_id: b.org_id, endpoint_url: `${base}/spec` },
    })
    expectProblem(other, 404)
    const [n] = await db.owner<{ n: number }[]>`select count(*)::int as n from webhooks where org_id = ${b.org_id}`
    expect(n!.n).toBe(0)
  })

  test('keyset pagination over webhooks', async () => {
    for (let i = 0; i < 3; i++) await createHook(b, `/page-${i}`)
    const p1 = await t.call('GET', '/v1/webhooks?limit=2', { token: b.admin_key })
    expect(p1.body.webhooks).toHaveLength(2)
    const p2 = await t.call('GET', `/v1/webhooks?limit=2&cursor=${p1.body.next_cursor}`, { token: b.admin_key })
    expect(p2.body.webhooks.length).toBeGreaterThanOrEqual(1)
    const ids = [...p1.body.webhooks, ...p2.body.webhooks].map((x: any) => x.id)
    expect(new Set(ids).size).toBe(ids.length)
  })
})

describe('delivery', () => {
  test('an ingested high-risk event raises an alert that is delivered once, signed both ways', async () => {
    const w = await createHook(a, '/alerts', { event_types: ['alert.created'] })
    const event = v2Event({
      session_id: `s-${crypto.randomUUID()}`,
      tool_name: 'Read',
      arguments_json: '{"file_path":"src/index.ts"}',
      risk_score: 95,
    })
    const res = await t.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events: [event] } })
    expect(res.status).toBe(200)
    await drainOnce(db.app, 'pipeline', storeEvents)
    await drainOnce(db.app, 'alerts', evaluateAlerts)
    const [alert] = await db.owner<{ id: string }[]>`
      select id from alerts where org_id = ${a.org_id} and event_key = ${`e:${event.event_id}`} and rule_key = 'builtin:high_risk'`
    expect(alert).toBeDefined()
    // The same batch applied again (as after a crash) enqueues nothing more.
    const r0 = normalizeIngestItem(event, '', Date.now())
    if (!r0.ok) throw new Error(r0.reason)
    const message: BusMessage = {
      kind: 'events',
      receivedAt: new Date().toISOString(),
      machineId: null,
      events: [{ ...r0.event, occurredAt: r0.event.occurredAt.toISOString() }],
    }
    await withOrg(db.app, a.org_id, (tx) =>
      evaluateAlerts(tx, [
        { batchId: '1', message },
        { batchId: '2', message },
      ]),
    )
    const [queued] = await db.owner<{ n: number }[]>`select count(*)::int as n from webhook_deliveries where webhook_id = ${w.id}`
    expect(queued!.n).toBe(1)

    await until(async () => at('/alerts').length > 0)
    const got = at('/alerts')
    expect(got).toHaveLength(1)
    const r = got[0]!
    expect(r.headers.get('webhook-id')).toBe(`msg_${alert!.id}`)
    expect(r.headers.get('content-type')).toBe('application/json')
    expect(await verifyStandard(w.secret, r)).toBe(true)
    expect(await verifyQuint(w.secret, r)).toBe(true)
    expect(await verifyStandard(`whsec_${Buffer.alloc(32, 1).toString('base64')}`, r)).toBe(false)
    const body = JSON.parse(r.body)
    expect(body).toMatchObject({
      type: 'alert.created',
      data: { id: alert!.id, rule_key: 'builtin:high_risk', severity: 'critical' },
    })
    expect(body.data.context.risk_score).toBe(95)

    const log = await t.call('GET', `/v1/webhooks/${w.id}/deliveries`, { token: a.admin_key })
    expect(log.body.deliveries).toHaveLength(1)
    expect(log.body.deliveries[0]).toMatchObject({
      status: 'succeeded',
      attempt_count: 1,
      last_status: 200,
      event_type: 'alert.created',
    })
    expect(log.body.deliveries[0].attempts).toEqual([
      { at: expect.any(String), duration_ms: expect.any(Number), status: 200, error: null },
    ])
    await d.runOnce()
    expect(at('/alerts')).toHaveLength(1)
  })

  test('the audit log streamed: audit.* subscribers get every entry, signed, with IP and before/after; others none', async () => {
    const audit = await createHook(a, '/audit', { event_types: ['audit.*'] })
    const alertsOnly = await createHook(a, '/alerts-only')
    const other = await createHook(b, '/audit-b', { event_types: ['audit.*'] })
    const email = `${crypto.randomUUID()}@example.com`
    const invited = await t.call('POST', '/v1/team', {
      token: a.admin_key,
      json: { email, role: 'viewer' },
      headers: { 'user-agent': 'audit-stream-test' },
    })
    expect(invited.status).toBe(201)
    const [entry] = await db.owner<{ id: string }[]>`
      select id::text from audit_log where org_id = ${a.org_id} and action = 'member.invite' and target_id = ${invited.body.id}`
    await until(async () => at('/audit').some((r) => JSON.parse(r.body).data.id === entry!.id))
    const r = at('/audit').find((x) => JSON.parse(x.body).data.id === entry!.id)!
    expect(r.headers.get('webhook-id')).toBe(`msg_audit_${entry!.id}`)
    expect(await verifyStandard(audit.secret, r)).toBe(true)
    const body = JSON.parse(r.body)
    expect(body).toMatchObject({
      type: 'audit.member.invite',
      data: {
        id: entry!.id,
        action: 'member.invite',
        actor_type: 'api_key',
        target_type: 'member',
        target_id: invited.body.id,
        user_agent: 'audit-stream-test',
        details: { before: null, after: { email, role: 'viewer', status: 'pending' } },
      },
    })
    // The same shape as GET /v1/audit-log.
    const listed = await t.call('GET', `/v1/audit-log?target_id=${invited.body.id}`, { token: a.admin_key })
    expect(listed.body.entries[0]).toEqual(body.data)
    // Not to webhooks without audit.* (empty means every alert event), not to another org's.
    await d.runOnce()
    expect(at('/alerts-only').map((x) => JSON.parse(x.body).type)).toEqual([])
    expect(at('/audit-b').some((x) => JSON.parse(x.body).data.id === entry!.id)).toBe(false)
    const queued = await db.owner<{ n: number }[]>`
      select count(*)::int as n from webhook_deliveries
       where (webhook_id = ${alertsOnly.id} and event_type like 'audit.%') or (webhook_id = ${other.id} and payload->'data'->>'id' = ${entry!.id})`
    expect(queued[0]!.n).toBe(0)
    // An audit write that rolls back queues nothing: a last owner's removal is refused (409).
    const before = await db.owner<
      { n: number }[]
    >`select count(*)::int as n from webhook_deliveries where webhook_id = ${audit.id}`
    expect((await t.call('PATCH', `/v1/webhooks/${audit.id}`, { token: a.admin_key, json: { enabled: false } })).status).toBe(200)
    expect((await t.call('PATCH', `/v1/webhooks/${audit.id}`, { token: a.admin_key, json: { enabled: true } })).status).toBe(200)
    const after = await db.owner<{ n: number; types: string[] }[]>`
      select count(*)::int as n, array_agg(event_type order by created_at) as types from webhook_deliveries where webhook_id = ${audit.id}`
    // Disabling is not streamed to the webhook it disables; enabling it again is.
    expect(after[0]!.n).toBe(before[0]!.n + 1)
    expect(after[0]!.types.at(-1)).toBe('audit.webhook.update')
    for (const [org, id] of [
      [a, audit.id],
      [a, alertsOnly.id],
      [b, other.id],
    ] as const) {
      expect((await t.call('DELETE', `/v1/webhooks/${id}`, { token: org.admin_key })).status).toBe(204)
    }
  })

  test('500 then 200: retried with backoff, both attempts logged', async () => {
    script.set('/flaky', [{ status: 500 }, { status: 200 }])
    const w = await createHook(a, '/flaky')
    const id = await ping(a, w.id)
    await until(settled(a, w.id, id))
    const x = await delivery(a, w.id, id)
    expect(x).toMatchObject({ status: 'succeeded', attempt_count: 2, last_status: 200, event_type: 'webhook.test' })
    expect(x.attempts.map((e: any) => [e.status, e.error])).toEqual([
      [500, 'HTTP 500'],
      [200, null],
    ])
    const got = at('/flaky')
    expect(got).toHaveLength(2)
    expect(got[0]!.headers.get('webhook-id')).toBe(got[1]!.headers.get('webhook-id'))
    expect(JSON.parse(got[0]!.body)).toMatchObject({ type: 'webhook.test', data: { webhook_id: w.id } })
  })

  test('a network error and a redirect are failed attempts; the last attempt makes it dead', async () => {
    const dead = await createHook(a, '/down')
    await db.owner`update webhooks set url = 'http://127.0.0.1:1/nothing' where id = ${dead.id}`
    const id = await ping(a, dead.id)
    await until(settled(a, dead.id, id))
    const x = await delivery(a, dead.id, id)
    expect(x).toMatchObject({ status: 'dead', attempt_count: 3, last_status: null })
    expect(x.attempts).toHaveLength(3)
    expect(x.last_error).toMatch(/^request failed/)

    const redirect = await createHook(a, '/redirect')
    const rid = await ping(a, redirect.id)
    await until(settled(a, redirect.id, rid))
    expect(await delivery(a, redirect.id, rid)).toMatchObject({
      status: 'dead',
      last_status: 302,
      last_error: 'redirect (HTTP 302) not followed',
    })
    expect(at('/ok')).toHaveLength(0)
  })

  test('429 with Retry-After is honoured', async () => {
    script.set('/busy', [{ status: 429, headers: { 'retry-after': '3600' } }])
    const w = await createHook(a, '/busy')
    const id = await ping(a, w.id)
    await until(async () => (await delivery(a, w.id, id)).attempts.length === 1)
    const x = await delivery(a, w.id, id)
    expect(x.status).toBe('pending')
    expect(Date.parse(x.next_attempt_at) - Date.now()).toBeGreaterThan(3_500_000)
  })

  test('410 Gone disables the endpoint; a disabled endpoint takes no test or redelivery', async () => {
    script.set('/gone', [{ status: 410 }])
    const w = await createHook(a, '/gone')
    const id = await ping(a, w.id)
    await until(settled(a, w.id, id))
    expect(await delivery(a, w.id, id)).toMatchObject({ status: 'failed', last_status: 410, attempt_count: 1 })
    const hook = await t.call('GET', `/v1/webhooks/${w.id}`, { token: a.admin_key })
    expect(hook.body.enabled).toBe(false)
    expect(hook.body.disabled_reason).toMatch(/410/)
    expectProblem(await t.call('POST', `/v1/webhooks/${w.id}/test`, { token: a.admin_key }), 409)
    expectProblem(await t.call('POST', `/v1/webhooks/${w.id}/deliveries/${id}/redeliver`, { token: a.admin_key }), 409)
    const again = await t.call('PATCH', `/v1/webhooks/${w.id}`, { token: a.admin_key, json: { enabled: true } })
    expect(again.body).toMatchObject({ enabled: true, disabled_reason: null })
  })

  test('redeliver on demand sends the same message again as a new round', async () => {
    const w = await createHook(a, '/again')
    const id = await ping(a, w.id)
    await until(settled(a, w.id, id))
    const res = await t.call('POST', `/v1/webhooks/${w.id}/deliveries/${id}/redeliver`, { token: a.admin_key })
    expect(res.status).toBe(202)
    expect(res.body).toMatchObject({ delivery_id: id, status: 'pending' })
    await until(settled(a, w.id, id))
    const got = at('/again')
    expect(got).toHaveLength(2)
    expect(got[1]!.headers.get('webhook-id')).toBe(got[0]!.headers.get('webhook-id'))
    expect(got[1]!.body).toBe(got[0]!.body)
    const x = await delivery(a, w.id, id)
    expect(x).toMatchObject({ status: 'succeeded', attempt_count: 1 })
    expect(x.attempts).toHaveLength(2)
  })

  test('redeliver of a delivery in flight is 409 delivery_in_progress; the attempt records once', async () => {
    const w = await createHook(a, '/hold')
    const id = await ping(a, w.id)
    let release!: () => void
    hold = new Promise<void>((r) => (release = r))
    const round = d.runOnce()
    try {
      for (const end = Date.now() + 5_000; at('/hold').length === 0; await Bun.sleep(5)) {
        if (Date.now() > end) throw new Error('the attempt did not reach the receiver')
      }
      const res = await t.call('POST', `/v1/webhooks/${w.id}/deliveries/${id}/redeliver`, { token: a.admin_key })
      expectProblem(res, 409)
      expect(res.body.code).toBe('delivery_in_progress')
    } finally {
      release()
      hold = null
    }
    expect(await round).toBe(1)
    const x = await delivery(a, w.id, id)
    expect(x).toMatchObject({ status: 'succeeded', attempt_count: 1 })
    expect(x.attempts).toHaveLength(1)
    // Finished: now it can be sent again.
    expect((await t.call('POST', `/v1/webhooks/${w.id}/deliveries/${id}/redeliver`, { token: a.admin_key })).status).toBe(202)
    await until(settled(a, w.id, id))
    expect(at('/hold')).toHaveLength(2)
  })

  test('rotation: old and new secrets both sign during the grace period, only the new one after', async () => {
    const w = await createHook(a, '/rotate')
    const rot = await t.call('POST', `/v1/webhooks/${w.id}/rotate-secret`, { token: a.admin_key, json: {} })
    expect(rot.status).toBe(200)
    expect(rot.body.secret).not.toBe(w.secret)
    expect(Date.parse(rot.body.previous_secret_expires_at) - Date.now()).toBeGreaterThan(86_000_000)
    const id = await ping(a, w.id)
    await until(settled(a, w.id, id))
    const r = at('/rotate').at(-1)!
    expect(r.headers.get('webhook-signature')!.split(' ')).toHaveLength(2)
    expect(
      r.headers
        .get('x-quint-signature')!
        .split(',')
        .filter((p) => p.startsWith('v1=')),
    ).toHaveLength(2)
    for (const s of [w.secret, rot.body.secret]) {
      expect(await verifyStandard(s, r)).toBe(true)
      expect(await verifyQuint(s, r)).toBe(true)
    }
    const now = await t.call('POST', `/v1/webhooks/${w.id}/rotate-secret`, {
      token: a.admin_key,
      json: { grace_period_seconds: 0 },
    })
    expect(now.body.previous_secret_expires_at).toBeNull()
    const id2 = await ping(a, w.id)
    await until(settled(a, w.id, id2))
    const r2 = at('/rotate').at(-1)!
    expect(r2.headers.get('webhook-signature')!.split(' ')).toHaveLength(1)
    expect(await verifyStandard(now.body.secret, r2)).toBe(true)
    expect(await verifyStandard(rot.body.secret, r2)).toBe(false)
  })

  test('two dispatchers on the same queue deliver each message once', async () => {
    const w = await createHook(a, '/race')
    const ids = await Promise.all(Array.from({ length: 12 }, () => ping(a, w.id)))
    const other = dispatcher()
    await Promise.all([d.runOnce(), other.runOnce(), d.runOnce(), other.runOnce()])
    await until(async () => {
      for (const id of ids) if ((await delivery(a, w.id, id)).status !== 'succeeded') return false
      return true
    })
    const got = at('/race').map((r) => r.headers.get('webhook-id'))
    expect(got).toHaveLength(12)
    expect(new Set(got).size).toBe(12)
  })
})

describe('URL rules and SSRF', () => {
  const refused = async (app: ReturnType<typeof testApp>, url: string) => {
    const res = await app.call('POST', '/v1/webhooks', { token: a.admin_key, json: { url } })
    expectProblem(res, 422)
    expect(res.body.errors[0].path).toBe('/url')
    return res.body.errors[0].message as string
  }

  test('http:// and private or loopback targets are refused unless configured', async () => {
    expect(await refused(strict, `${base}/x`)).toMatch(/https/)
    expect(await refused(strict, 'https://127.0.0.1/x')).toMatch(/loopback/)
    expect(await refused(strict, 'https://10.1.2.3/x')).toMatch(/private/)
    expect(await refused(strict, 'https://[::ffff:192.168.0.1]/x')).toMatch(/private/)
    expect(await refused(strict, 'https://localhost:8443/x')).toMatch(/internal/)
    expect(await refused(strict, 'https://metadata/x')).toMatch(/internal/)
    // Metadata stays refused even where private targets are allowed.
    expect(await refused(t, 'http://169.254.169.254/latest/meta-data')).toMatch(/metadata/)
    const ok = await strict.call('POST', '/v1/webhooks', { token: a.admin_key, json: { url: 'https://hooks.example.com/quint' } })
    expect(ok.status).toBe(201)
  })

  test('credentials, fragments and other schemes are refused', async () => {
    expect(await refused(strict, 'https://user:pw@hooks.example.com/x')).toMatch(/credentials/)
    expect(await refused(strict, 'https://hooks.example.com/x#frag')).toMatch(/fragment/)
    expect(await refused(strict, 'ftp://hooks.example.com/x')).toMatch(/scheme/)
    expect(await refused(strict, 'javascript:alert(1)')).toMatch(/scheme/)
    expect(await refused(strict, 'not a url')).toMatch(/URL|whitespace/)
    const spec = await strict.call('POST', '/webhooks/register', {
      token: a.admin_key,
      json: { customer_id: a.org_id, endpoint_url: 'http://hooks.example.com' },
    })
    expectProblem(spec, 422)
    expect(spec.body.errors[0].path).toBe('/endpoint_url')
  })

  test('the address is checked again at delivery: a strict dispatcher never calls a loopback target', async () => {
    const w = await createHook(a, '/ssrf')
    const id = await ping(a, w.id)
    const strictDispatcher = dispatcher({ policy: { allowInsecure: true, allowPrivate: false } })
    await until(settled(a, w.id, id), strictDispatcher)
    const x = await delivery(a, w.id, id)
    expect(x.status).toBe('dead')
    expect(x.last_error).toMatch(/^target refused: .*loopback/)
    expect(at('/ssrf')).toHaveLength(0)
  })

  test('address classification', () => {
    for (const ip of [
      '127.0.0.1',
      '10.0.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '100.64.0.1',
      '169.254.1.1',
      '::1',
      'fd12::1',
      'fe80::1',
      '::ffff:127.0.0.1',
      '64:ff9b::a00:1',
      '2002:c0a8:101::1',
    ])
      expect([ip, addressRefusal(ip, false)]).toEqual([ip, expect.any(String)])
    for (const ip of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111']) expect(addressRefusal(ip, false)).toBeNull()
    for (const ip of ['169.254.169.254', '0.0.0.0', '::', '224.0.0.1', 'fd00:ec2::254'])
      expect(addressRefusal(ip, true)).not.toBeNull()
    expect(addressRefusal('127.0.0.1', true)).toBeNull()
    expect(checkWebhookUrl('https://0x7f.1/x', { allowInsecure: false, allowPrivate: false }, '/url').ok).toBe(false)
  })

  test('IPv6 forms carrying an IPv4 address are judged by that address', () => {
    const internal = [
      '::127.0.0.1', // IPv4-compatible
      '::a00:1',
      '::ffff:0:127.0.0.1', // IPv4-translated
      '::ffff:0:a00:1',
      '64:ff9b::10.0.0.1', // NAT64
      '64:ff9b:1::a00:1', // local-use NAT64: refused as internal, the IPv4 position is the network's choice
      '2002:a00:1::1', // 6to4
      '2001:0:4136:e378:8000:63bf:f5ff:fffe', // Teredo, client 10.0.0.1 (stored inverted)
      '2001:0:a00:1:8000:63bf:f7f7:f7f7', // Teredo, server 10.0.0.1
    ]
    for (const ip of internal) expect([ip, addressRefusal(ip, false)]).toEqual([ip, expect.any(String)])
    const metadata = [
      '::169.254.169.254',
      '::ffff:0:a9fe:a9fe',
      '64:ff9b::a9fe:a9fe',
      '2002:a9fe:a9fe::',
      '2001:0:4136:e378:8000:63bf:5601:5601',
    ]
    for (const ip of metadata) expect([ip, addressRefusal(ip, true)]).toEqual([ip, expect.stringMatching(/metadata/)])
    const publicOnes = [
      '::8.8.8.8',
      '::ffff:0:808:808',
      '64:ff9b::808:808',
      '2002:808:808::1',
      '2001:0:4136:e378:8000:63bf:f7f7:f7f7',
    ]
    for (const ip of publicOnes) expect([ip, addressRefusal(ip, false)]).toEqual([ip, null])
    // :: and ::1 stay IPv6 (unspecified, loopback), not 0.0.0.0 and 0.0.0.1.
    expect(addressRefusal('::1', true)).toBeNull()
    expect(addressRefusal('::', true)).not.toBeNull()
    expect(checkWebhookUrl('https://[::127.0.0.1]/x', { allowInsecure: false, allowPrivate: false }, '/url').ok).toBe(false)
  })

  test("the DNS lookup before an attempt ends with the attempt's signal", async () => {
    const reason = new DOMException('attempt timed out', 'TimeoutError')
    const started = performance.now()
    const err = await resolveTarget(
      'https://hooks.example.com/x',
      { allowInsecure: false, allowPrivate: false },
      AbortSignal.abort(reason),
    ).catch((e: unknown) => e)
    expect(err).toBe(reason)
    expect(performance.now() - started).toBeLessThan(100)
  })
})

describe('backoff', () => {
  test('full jitter under a ceiling growing 4x up to 16 h; Retry-After wins when longer', () => {
    expect(retryDelayMs(1, 60_000, null, () => 0.999)).toBeLessThan(60_000)
    expect(retryDelayMs(3, 60_000, null, () => 0.999)).toBeLessThan(16 * 60_000)
    expect(retryDelayMs(3, 60_000, null, () => 0.999)).toBeGreaterThan(15 * 60_000)
    expect(retryDelayMs(12, 60_000, null, () => 0.999)).toBeLessThan(MAX_BACKOFF_MS)
    expect(retryDelayMs(1, 60_000, 120_000, () => 0)).toBe(120_000)
    expect(parseRetryAfter('30')).toBe(30_000)
    expect(parseRetryAfter(new Date(Date.now() + 60_000).toUTCString())).toBeGreaterThan(50_000)
    expect(parseRetryAfter('soon')).toBeNull()
    // The default schedule: 8 attempts, ceilings summing to about a day and a half (half that on average).
    let sum = 0
    for (let n = 1; n < 8; n++) sum += retryDelayMs(n, 60_000, null, () => 1)
    expect(sum / 3_600_000).toBeGreaterThan(24)
    expect(sum / 3_600_000).toBeLessThan(48)
  })
})

describe('tenant isolation', () => {
  test("org B cannot list, read, change, test, rotate, redeliver or delete org A's webhooks or deliveries", async () => {
    const w = await createHook(a, '/isolated')
    const id = await ping(a, w.id)
    await until(settled(a, w.id, id))
    const mine = await createHook(b, '/b-own')
    const list = await t.call('GET', '/v1/webhooks?limit=200', { token: b.admin_key })
    expect(list.body.webhooks.map((x: any) => x.id)).not.toContain(w.id)
    const tries: [string, string, unknown?][] = [
      ['GET', `/v1/webhooks/${w.id}`],
      ['PATCH', `/v1/webhooks/${w.id}`, { enabled: false }],
      ['POST', `/v1/webhooks/${w.id}/test`],
      ['POST', `/v1/webhooks/${w.id}/rotate-secret`, {}],
      ['GET', `/v1/webhooks/${w.id}/deliveries`],
      ['GET', `/v1/webhooks/${w.id}/deliveries/${id}`],
      ['POST', `/v1/webhooks/${w.id}/deliveries/${id}/redeliver`],
      ['GET', `/v1/webhooks/${mine.id}/deliveries/${id}`],
      ['POST', `/v1/webhooks/${mine.id}/deliveries/${id}/redeliver`],
      ['DELETE', `/v1/webhooks/${w.id}`],
    ]
    for (const [method, path, json] of tries) {
      const res = await t.call(method, path, { token: b.admin_key, json })
      expect([method, path, res.status]).toEqual([method, path, 404])
    }
    const still = await t.call('GET', `/v1/webhooks/${w.id}`, { token: a.admin_key })
    expect(still.body).toMatchObject({ id: w.id, enabled: true })
    expect((await delivery(a, w.id, id)).status).toBe('succeeded')
    // A deploy token (no admin scope) is refused outright.
    expectProblem(await t.call('GET', '/v1/webhooks', { token: a.deploy_token }), 403)
    expectProblem(await t.call('GET', '/v1/webhooks'), 401)
    // Deleting removes the delivery log with it.
    expect((await t.call('DELETE', `/v1/webhooks/${w.id}`, { token: a.admin_key })).status).toBe(204)
    expectProblem(await t.call('GET', `/v1/webhooks/${w.id}/deliveries`, { token: a.admin_key }), 404)
  })
})

describe('bad input never yields a 500', () => {
  test('malformed bodies, ids, cursors and fields', async () => {
    const w = await createHook(a, '/bad')
    const cases: [string, string, Parameters<typeof t.call>[2], number, string?][] = [
      ['POST', '/v1/webhooks', { body: '{', headers: { 'content-type': 'application/json' } }, 400],
      ['POST', '/v1/webhooks', { body: 'url=x', headers: { 'content-type': 'text/plain' } }, 415],
      ['POST', '/v1/webhooks', { json: {} }, 422, '/url'],
      ['POST', '/v1/webhooks', { json: { url: 42 } }, 422, '/url'],
      ['POST', '/v1/webhooks', { json: { url: `${base}/x`, event_types: ['nope'] } }, 422, '/event_types/0'],
      [
        'POST',
        '/v1/webhooks',
        { json: { url: `${base}/x`, event_types: ['alert.created', 'alert.created'] } },
        422,
        '/event_types',
      ],
      ['POST', '/v1/webhooks', { json: { url: `${base}/x`, extra: 1 } }, 422],
      ['POST', '/v1/webhooks', { json: { url: `https://hooks.example.com/${'a'.repeat(3000)}` } }, 422, '/url'],
      ['POST', '/v1/webhooks', { json: { url: `${base}/x`, description: 'd'.repeat(501) } }, 422, '/description'],
      ['PATCH', `/v1/webhooks/${w.id}`, { json: {} }, 422],
      ['PATCH', `/v1/webhooks/${w.id}`, { json: { url: 'ftp://x.example.com' } }, 422, '/url'],
      ['PATCH', `/v1/webhooks/${w.id}`, { json: { enabled: 'yes' } }, 422, '/enabled'],
      ['POST', `/v1/webhooks/${w.id}/rotate-secret`, { json: { grace_period_seconds: -1 } }, 422, '/grace_period_seconds'],
      ['GET', '/v1/webhooks/not-a-uuid', {}, 404],
      ['GET', `/v1/webhooks/${crypto.randomUUID()}`, {}, 404],
      ['GET', `/v1/webhooks/${w.id}/deliveries/nope`, {}, 404],
      ['POST', `/v1/webhooks/${w.id}/deliveries/${crypto.randomUUID()}/redeliver`, {}, 404],
      ['GET', '/v1/webhooks?cursor=garbage', {}, 400],
      ['GET', '/v1/webhooks?limit=0', {}, 400],
      ['GET', `/v1/webhooks/${w.id}/deliveries?status=weird`, {}, 400],
      ['POST', '/webhooks/register', { json: { customer_id: 'x' } }, 422, '/endpoint_url'],
      ['POST', '/webhooks/register', { json: { customer_id: 'not-an-org', endpoint_url: `${base}/x` } }, 404],
    ]
    for (const [method, path, init, status, pointer] of cases) {
      const res = await t.call(method, path, { token: a.admin_key, ...init })
      expect([method, path, res.status]).toEqual([method, path, status])
      expect(res.headers.get('content-type')).toBe('application/problem+json')
      if (pointer) expect(res.body.errors.map((e: any) => e.path)).toContain(pointer)
    }
  })
})
