/**
 * X-Action-Signature end to end (docs/action-signatures.md): the action key handed out once at
 * mint, a signed ingest accepted, every kind of tampering and bad header refused with 401 (never
 * a 500), replay refused in one instance and, through Redis, across instances, and the required
 * mode. Real Postgres and Redis.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { gzipSync } from 'node:zlib'
import { actionKeyFor, signAction } from '../../src/auth/action-signature.ts'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { ActionSignatureReplayGuard, requestTarget } from '../../src/http/action-signature.ts'
import type { RedisStateStore } from '../../src/infra/redis.ts'
import { testApp, testSecrets, twoOrgApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testLog, type TestDatabase } from '../helpers/db.ts'
import { testRedis } from '../helpers/redis.ts'
import { v2Event } from '../helpers/events.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg
let bearerJti: string
let agent: Minted
let other: Minted
const redises: RedisStateStore[] = []

interface Minted {
  token: string
  jti: string
  key: Buffer
}

const RBAC = { allowed_actions: ['data:read:*'], denied_actions: [], max_sensitivity_level: 3 }
const enc = new TextEncoder()
const nowS = () => Math.floor(Date.now() / 1000)

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
  const app = await t.call('POST', '/tokens/app', { token: a.admin_key, json: { name: 'root', scopes: ['*'] } })
  const bearer = await t.call('POST', '/tokens/bearer', {
    token: a.admin_key,
    json: { app_token_hash: app.body.token_hash, environment: 'prod' },
  })
  bearerJti = bearer.body.jti
  agent = await mintAgent()
  other = await mintAgent()
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  for (const r of redises) await r.close()
  await db.drop()
}, HOOK_TIMEOUT_MS)

async function mintAgent(): Promise<Minted> {
  const res = await t.call('POST', '/tokens/agent', {
    token: a.admin_key,
    json: { bearer_jti: bearerJti, agent_id: 'agent-1', rbac: RBAC },
  })
  expect(res.status).toBe(201)
  return { token: res.body.token, jti: res.body.jti, key: Buffer.from(res.body.action_key, 'hex') }
}

interface SignOptions {
  method?: string
  path?: string
  body?: Uint8Array
  /** What goes on the wire when it differs from what was signed. */
  send?: { method?: string; path?: string; body?: Uint8Array }
  key?: Buffer
  jti?: string
  t?: number
  header?: string
  headers?: Record<string, string>
}

/** Signs (method, path, body) with `who`'s action key and sends it, possibly altered, with `who`'s token. */
async function signed(who: Minted, o: SignOptions = {}, app = t) {
  const method = o.method ?? 'POST'
  const path = o.path ?? '/v1/ingest'
  const body = o.body ?? (method === 'GET' ? new Uint8Array(0) : enc.encode(JSON.stringify({ events: [v2Event()] })))
  const header =
    o.header ??
    signAction(o.key ?? who.key, { method, path, body, jti: o.jti ?? who.jti, orgId: a.org_id, timestamp: o.t ?? nowS() })
  const sendMethod = o.send?.method ?? method
  const sendBody = o.send?.body ?? body
  return app.call(sendMethod, o.send?.path ?? path, {
    token: who.token,
    body: sendMethod === 'GET' || sendMethod === 'HEAD' ? undefined : sendBody,
    headers: { 'content-type': 'application/json', 'x-action-signature': header, ...o.headers },
  })
}

function expect401(res: { status: number; headers: Headers; body: any }, code: string, reason?: string) {
  expect(res.status).toBe(401)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  expect(res.headers.get('www-authenticate')).toContain('Bearer')
  expect(res.body.code).toBe(code)
  if (reason) expect(res.body.reason).toBe(reason)
}

describe('action keys at mint', () => {
  test('agent, sub-agent and session answers carry action_key = actionKeyFor(derive(action-signature), org, jti); others do not', async () => {
    const secret = testSecrets.derive('action-signature')
    expect(agent.key.equals(actionKeyFor(secret, a.org_id, agent.jti))).toBe(true)
    const sub = await t.call('POST', '/tokens/subagent', { token: agent.token, json: { agent_id: 'child' } })
    const session = await t.call('POST', '/tokens/session', { token: agent.token, json: { session_id: 's-1' } })
    for (const r of [sub, session]) {
      expect(r.status).toBe(201)
      expect(r.body.action_key).toBe(actionKeyFor(secret, a.org_id, r.body.jti).toString('hex'))
    }
    const ov = await t.call('POST', '/tokens/override', { token: agent.token, json: { event_id: 'e' } })
    const app = await t.call('POST', '/tokens/app', { token: a.admin_key, json: { name: 'x' } })
    expect(ov.body.action_key).toBeUndefined()
    expect(app.body.action_key).toBeUndefined()
    // Not stored anywhere.
    const rows = JSON.stringify(await db.owner`select * from auth.issued_tokens where org_id = ${a.org_id}`)
    expect(rows).not.toContain(agent.key.toString('hex'))
  })
})

describe('verification', () => {
  test('a signed ingest is accepted; a signed GET without body too; unsigned is allowed by default', async () => {
    const res = await signed(agent)
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ accepted: 1 })
    expect((await signed(agent, { method: 'GET', path: '/v1/auth/whoami' })).status).toBe(200)
    expect((await t.call('GET', '/v1/auth/whoami', { token: agent.token })).status).toBe(200)
  })

  test('the signature covers the bytes on the wire: a gzip body is signed compressed', async () => {
    const body = gzipSync(enc.encode(JSON.stringify({ events: [v2Event()] })))
    const res = await signed(agent, { body, headers: { 'content-encoding': 'gzip' } })
    expect(res.status).toBe(200)
  })

  test('body, path, query, method tampering → 401 mismatch', async () => {
    const body = enc.encode(JSON.stringify({ events: [v2Event()] }))
    const altered = enc.encode(JSON.stringify({ events: [v2Event()] }))
    expect401(await signed(agent, { body, send: { body: altered } }), 'invalid_action_signature', 'mismatch')
    expect401(await signed(agent, { body, send: { path: '/v1/events/ingest' } }), 'invalid_action_signature', 'mismatch')
    expect401(await signed(agent, { body, send: { path: '/v1/ingest?x=1' } }), 'invalid_action_signature', 'mismatch')
    expect401(
      await signed(agent, {
        method: 'GET',
        path: '/v1/auth/whoami',
        send: { method: 'POST', path: '/v1/auth/check', body: enc.encode('{"action":"data:read:x"}') },
      }),
      'invalid_action_signature',
      'mismatch',
    )
    expect401(await signed(agent, { method: 'PUT', body, send: { method: 'POST' } }), 'invalid_action_signature', 'mismatch')
  })

  test('a signature made for another token or another org → 401 mismatch', async () => {
    expect401(await signed(agent, { key: other.key, jti: other.jti }), 'invalid_action_signature', 'mismatch')
    expect401(await signed(agent, { key: other.key }), 'invalid_action_signature', 'mismatch')
    expect401(await signed(agent, { jti: other.jti }), 'invalid_action_signature', 'mismatch')
    const foreign = actionKeyFor(testSecrets.derive('action-signature'), b.org_id, agent.jti)
    expect401(await signed(agent, { key: foreign }), 'invalid_action_signature', 'mismatch')
  })

  test('outside the ±300 s window, past and future → 401 timestamp_outside_tolerance', async () => {
    expect401(await signed(agent, { t: nowS() - 301 }), 'invalid_action_signature', 'timestamp_outside_tolerance')
    expect401(await signed(agent, { t: nowS() + 301 }), 'invalid_action_signature', 'timestamp_outside_tolerance')
    expect401(await signed(agent, { t: 0 }), 'invalid_action_signature', 'timestamp_outside_tolerance')
    expect((await signed(agent, { t: nowS() - 250 })).status).toBe(200)
    expect((await signed(agent, { t: nowS() + 250 })).status).toBe(200)
  })

  test('wrong length, non-hex, garbage and hostile headers → 401 malformed, never a 500', async () => {
    const t0 = nowS()
    const hex = 'a'.repeat(64)
    const headers = [
      `t=${t0},v1=${'a'.repeat(63)}`,
      `t=${t0},v1=${'a'.repeat(65)}`,
      `t=${t0},v1=${'g'.repeat(64)}`,
      `t=${t0},v1=${'é'.repeat(32)}`,
      `t=${t0}`,
      `v1=${hex}`,
      `t=${t0},t=${t0},v1=${hex}`,
      `t=-1,v1=${hex}`,
      `t=1e9,v1=${hex}`,
      `t=${t0},v1=${hex},v1=${hex}`,
      'garbage',
      ',,,,',
      '=',
      ' ',
      `t=${t0},v1=${hex},${'x=1,'.repeat(20)}`,
      `t=${t0},v1=${hex};${'x'.repeat(600)}`,
      'Bearer qt_agent_x',
    ]
    for (const header of headers) {
      const res = await signed(agent, { header })
      expect({ header, status: res.status }).toEqual({ header, status: 401 })
      expect(res.body.code).toBe('invalid_action_signature')
      expect(['malformed', 'mismatch']).toContain(res.body.reason)
    }
    // A well-formed header with a wrong MAC of the right length.
    expect401(await signed(agent, { header: `t=${t0},v1=${hex}` }), 'invalid_action_signature', 'mismatch')
  })

  test('a bad signature is refused before the route: no event accepted, no session budget taken', async () => {
    const session = await t.call('POST', '/tokens/session', { token: agent.token, json: { session_id: 's-b', max_events: 5 } })
    const who = { token: session.body.token, jti: session.body.jti, key: Buffer.from(session.body.action_key, 'hex') }
    expect401(await signed(who, { header: `t=${nowS()},v1=${'0'.repeat(64)}` }), 'invalid_action_signature', 'mismatch')
    const [row] = await db.owner`select events_used from auth.issued_tokens where jti = ${who.jti}`
    expect(row!.events_used).toBe(0)
    expect((await signed(who)).status).toBe(200)
    const [after] = await db.owner`select events_used from auth.issued_tokens where jti = ${who.jti}`
    expect(after!.events_used).toBe(1)
  })

  test('the request target is the normalised one the router acts on; percent-encoding is kept', async () => {
    // Distinct timestamps: the same GET signed twice in one second would be a replay.
    const t0 = nowS() - 10
    // A client that signs a dot-segment spelling signs bytes the server never sees: refused.
    expect401(await signed(agent, { method: 'GET', path: '/v1/x/../auth/whoami', t: t0 }), 'invalid_action_signature', 'mismatch')
    // Signed as routed, sent with dot segments: the same request, accepted.
    expect(
      (await signed(agent, { method: 'GET', path: '/v1/auth/whoami', send: { path: '/v1/x/../auth/whoami' }, t: t0 - 1 })).status,
    ).toBe(200)
    // Accepted: the route itself then refuses the parameter it does not take (400, not a 401).
    const withQuery = await signed(agent, { method: 'GET', path: '/v1/auth/whoami?q=a%2Fb', t: t0 - 2 })
    expect([withQuery.status, withQuery.body.errors?.[0]?.path]).toEqual([400, '/q'])
    expect401(
      await signed(agent, { method: 'GET', path: '/v1/auth/whoami?q=a/b', send: { path: '/v1/auth/whoami?q=a%2Fb' }, t: t0 - 3 }),
      'invalid_action_signature',
      'mismatch',
    )
    expect(requestTarget('http://h:1/a/b?c=d#frag')).toBe('/a/b?c=d')
    expect(requestTarget('http://h/')).toBe('/')
    expect(requestTarget('http://h')).toBe('/')
  })

  test('opaque credentials and non-agent JWTs ignore the header', async () => {
    const res = await t.call('GET', '/v1/auth/whoami', { token: a.admin_key, headers: { 'x-action-signature': 'garbage' } })
    expect(res.status).toBe(200)
  })
})

describe('replay', () => {
  test('the same signature twice → 401 action_signature_replayed; a new timestamp signs anew', async () => {
    const body = enc.encode(JSON.stringify({ events: [v2Event()] }))
    const t0 = nowS()
    expect((await signed(agent, { body, t: t0 })).status).toBe(200)
    expect401(await signed(agent, { body, t: t0 }), 'action_signature_replayed')
    // Upper-case hex of the same MAC is the same signature.
    const header = signAction(agent.key, {
      method: 'POST',
      path: '/v1/ingest',
      body,
      jti: agent.jti,
      orgId: a.org_id,
      timestamp: t0,
    })
    expect401(
      await signed(agent, { body, header: header.replace(/v1=([0-9a-f]+)/, (_, h: string) => `v1=${h.toUpperCase()}`) }),
      'action_signature_replayed',
    )
    expect((await signed(agent, { body, t: t0 - 1 })).status).toBe(200)
  })

  test('concurrent replays on one instance: exactly one passes', async () => {
    const body = enc.encode(JSON.stringify({ events: [v2Event()] }))
    const header = signAction(agent.key, {
      method: 'POST',
      path: '/v1/ingest',
      body,
      jti: agent.jti,
      orgId: a.org_id,
      timestamp: nowS(),
    })
    const results = await Promise.all(Array.from({ length: 8 }, () => signed(agent, { body, header })))
    expect(results.filter((r) => r.status === 200)).toHaveLength(1)
    for (const r of results.filter((r) => r.status !== 200)) expect401(r, 'action_signature_replayed')
  })

  test('with Redis, a signature used on one instance is refused on another; without, only locally', async () => {
    const r1 = await testRedis()
    const r2 = await testRedis()
    redises.push(r1, r2)
    const one = testApp(db, {}, undefined, { redis: r1 })
    const two = testApp(db, {}, undefined, { redis: r2 })
    const body = enc.encode(JSON.stringify({ events: [v2Event()] }))
    const header = signAction(agent.key, {
      method: 'POST',
      path: '/v1/ingest',
      body,
      jti: agent.jti,
      orgId: a.org_id,
      timestamp: nowS(),
    })
    expect((await signed(agent, { body, header }, one)).status).toBe(200)
    expect401(await signed(agent, { body, header }, two), 'action_signature_replayed')
    expect401(await signed(agent, { body, header }, one), 'action_signature_replayed')
    // Two memory-only instances do not share what they saw: the reason Redis is used.
    const three = testApp(db)
    const four = testApp(db)
    const header2 = signAction(agent.key, {
      method: 'POST',
      path: '/v1/ingest',
      body,
      jti: agent.jti,
      orgId: a.org_id,
      timestamp: nowS() - 3,
    })
    expect((await signed(agent, { body, header: header2 }, three)).status).toBe(200)
    expect((await signed(agent, { body, header: header2 }, four)).status).toBe(200)
  })
})

describe('replay memory bound', () => {
  test('full without Redis: 503, never an unchecked pass; expired entries make room; with Redis it takes over', async () => {
    const guard = new ActionSignatureReplayGuard({ log: testLog, maxRemembered: 2, maxRememberedPerOrg: 2 })
    const now = Date.now()
    const t0 = Math.floor(now / 1000)
    expect(await guard.claim('o', 'j', t0, 'a', now)).toBe(true)
    expect(await guard.claim('o', 'j', t0, 'b', now)).toBe(true)
    expect(await guard.claim('o', 'j', t0, 'a', now)).toBe(false)
    await expect(guard.claim('o', 'j', t0, 'c', now)).rejects.toMatchObject({ status: 503 })
    // Once t0 is out of the window its entries go, and there is room again.
    const later = (t0 + 302) * 1000
    expect(await guard.claim('o', 'j', t0 + 300, 'c', later)).toBe(true)
    expect(guard.size).toBe(1)
    const redis = await testRedis()
    redises.push(redis)
    const shared = new ActionSignatureReplayGuard({ log: testLog, maxRemembered: 1, shared: redis })
    const id = crypto.randomUUID()
    expect(await shared.claim(id, 'j', t0, 'a', now)).toBe(true)
    expect(await shared.claim(id, 'j', t0, 'b', now)).toBe(true)
    expect(await shared.claim(id, 'j', t0, 'b', now)).toBe(false)
  })
})

describe('replay memory shares', () => {
  test('one org flooding its share gets 503; the other orgs keep their signed requests', async () => {
    const guard = new ActionSignatureReplayGuard({ log: testLog, maxRemembered: 8 })
    const now = Date.now()
    // Future-dated signatures live longest in the memory: the flood an attacker would send.
    const t = Math.floor(now / 1000) + 300
    expect(await guard.claim('x', 'j', t, 'a', now)).toBe(true)
    expect(await guard.claim('x', 'j', t, 'b', now)).toBe(true)
    await expect(guard.claim('x', 'j', t, 'c', now)).rejects.toMatchObject({ status: 503 })
    expect(await guard.claim('y', 'j', t, 'a', now + 1)).toBe(true)
    expect(await guard.claim('z', 'j', t, 'a', now + 2)).toBe(true)
  })
})

describe('AUTH_REQUIRE_ACTION_SIGNATURE=true', () => {
  test('agent, sub-agent and session tokens must sign; other credentials need not', async () => {
    const strict = testApp(db, { AUTH_REQUIRE_ACTION_SIGNATURE: 'true' })
    expect401(await strict.call('GET', '/v1/auth/whoami', { token: agent.token }), 'invalid_action_signature', 'missing')
    expect401(
      await strict.call('POST', '/v1/ingest', { token: agent.token, json: { events: [v2Event()] } }),
      'invalid_action_signature',
      'missing',
    )
    const sub = await t.call('POST', '/tokens/subagent', { token: agent.token, json: { agent_id: 'child' } })
    expect401(await strict.call('GET', '/v1/auth/whoami', { token: sub.body.token }), 'invalid_action_signature', 'missing')
    expect((await signed(agent, {}, strict)).status).toBe(200)
    expect((await signed(agent, { method: 'GET', path: '/v1/auth/whoami' }, strict)).status).toBe(200)
    expect((await strict.call('GET', '/v1/auth/whoami', { token: a.admin_key })).status).toBe(200)
    expect((await strict.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events: [v2Event()] } })).status).toBe(200)
    // Legacy X-API-Key with an agent token: the same rule, and the deprecation header on the 401.
    const legacy = await strict.call('GET', '/v1/auth/whoami', { headers: { 'x-api-key': agent.token } })
    expect401(legacy, 'invalid_action_signature', 'missing')
    expect(legacy.headers.get('x-quint-deprecation')).toContain('deprecated')
  })
})
