/**
 * The JWT token hierarchy end to end on a real Postgres: keys, minting every type in both request
 * shapes, refusals (TTL, depth, narrowing, cross-org), revocation single and cascade on both path
 * styles, introspection, and legacy X-API-Key with its deprecation header.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createHash, createPublicKey, verify } from 'node:crypto'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { SigningKeys } from '../../src/auth/jwt/keys.ts'
import { MAX_TOKEN_TTL_MS } from '../../src/auth/jwt/hierarchy.ts'
import { createOrg } from '../../src/features/orgs/service.ts'
import { createRevocationFilter, type RevocationFilter } from '../../src/auth/jwt/revocation-filter.ts'
import { revokedForFilter } from '../../src/features/jwt-tokens/repo.ts'
import type { RedisStateStore } from '../../src/infra/redis.ts'
import { testApp, testSecrets, twoOrgApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testLog, type TestDatabase } from '../helpers/db.ts'
import { testRedis } from '../helpers/redis.ts'
import { RevocationPoll } from '../../src/features/jwt-tokens/revocation-poll.ts'
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

const RBAC = {
  allowed_actions: ['data:read:*', 'code:review:*'],
  denied_actions: ['data:write:*'],
  allowed_resources: ['repo:*'],
  denied_resources: [],
  max_sensitivity_level: 3,
}

function expectProblem(res: { status: number; headers: Headers; body: any }, status: number, code?: string) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  if (code) expect(res.body.code).toBe(code)
}

function decode(token: string) {
  const jws = token.slice(token.indexOf('_', 3) + 1)
  const [h, p] = jws.split('.')
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString()),
    payload: JSON.parse(Buffer.from(p!, 'base64url').toString()),
  }
}

/** app → bearer → agent for org `o`, minted with its admin key (documented shapes). */
async function chain(o: CreatedOrg, rbac: unknown = RBAC) {
  const app = await t.call('POST', '/tokens/app', {
    token: o.admin_key,
    json: { customer_id: o.org_id, name: 'root', scopes: ['*'] },
  })
  expect(app.status).toBe(201)
  const hash = createHash('sha256').update(app.body.token).digest('hex')
  expect(app.body.token_hash).toBe(hash)
  const bearer = await t.call('POST', '/tokens/bearer', {
    token: o.admin_key,
    json: { customer_id: o.org_id, app_token_hash: hash, environment: 'production' },
  })
  expect(bearer.status).toBe(201)
  const agent = await t.call('POST', '/tokens/agent', {
    token: o.admin_key,
    json: { customer_id: o.org_id, bearer_jti: bearer.body.jti, agent_id: 'agent-1', agent_name: 'Agent', rbac },
  })
  expect(agent.status).toBe(201)
  return { app: app.body, bearer: bearer.body, agent: agent.body }
}

describe('signing keys', () => {
  test('public keys: JWKs and PEM, unauthenticated; unknown org 404', async () => {
    const { agent } = await chain(a)
    const res = await t.call('GET', `/keys/public/${a.org_id}`)
    expect(res.status).toBe(200)
    expect(res.body.org_id).toBe(a.org_id)
    expect(res.body.customer_id).toBe(a.org_id)
    expect(res.body.public_key).toContain('BEGIN PUBLIC KEY')
    const kid = decode(agent.token).header.kid
    const jwk = res.body.keys.find((k: any) => k.kid === kid)
    expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' })
    // The proxy verifies with the JWK: do the same.
    const jws = agent.token.slice('qt_agent_'.length)
    const [h, p, s] = jws.split('.')
    const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }, format: 'jwk' })
    expect(verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'))).toBe(true)
    for (const id of [crypto.randomUUID(), 'not-a-uuid', '..%2F..%2Fetc']) {
      expectProblem(await t.call('GET', `/keys/public/${id}`), 404)
    }
  })

  test('rotation: old tokens keep verifying, new tokens use the new kid, both keys published', async () => {
    const { agent } = await chain(b)
    const oldKid = decode(agent.token).header.kid
    const rot = await t.call('POST', `/keys/${oldKid}/rotate`, { token: b.admin_key, json: { customer_id: b.org_id } })
    expect(rot.status).toBe(201)
    expect(rot.body.kid).not.toBe(oldKid)
    expect(rot.body.key_type).toBe('ES256')
    const pub = await t.call('GET', `/keys/public/${b.org_id}`)
    expect(pub.body.keys.map((k: any) => k.kid).sort()).toEqual([oldKid, rot.body.kid].sort())
    expect((await t.call('GET', '/v1/auth/whoami', { token: agent.token })).status).toBe(200)
    const next = await chain(b)
    expect(decode(next.agent.token).header.kid).toBe(rot.body.kid)
    // Rotating a retired or unknown kid, or another org's: 404.
    expectProblem(await t.call('POST', `/keys/${oldKid}/rotate`, { token: b.admin_key, json: {} }), 404)
    expectProblem(await t.call('POST', `/keys/${rot.body.kid}/rotate`, { token: a.admin_key, json: {} }), 404)
    // Non-management credentials cannot touch keys.
    expectProblem(await t.call('POST', '/keys/signing', { token: b.deploy_token, json: {} }), 403)
    const ensure = await t.call('POST', '/keys/signing', { token: b.admin_key, json: { customer_id: b.org_id } })
    expect(ensure.status).toBe(200)
    expect(ensure.body.kid).toBe(rot.body.kid)
  })

  test('lazy creation is race-safe: concurrent instances end with one active key', async () => {
    const c = await createOrg(db.app, 'org C', 'cli')
    const instances = Array.from(
      { length: 6 },
      () => new SigningKeys(db.app, testSecrets, testLog, { maxTokenTtlMs: MAX_TOKEN_TTL_MS }),
    )
    const signers = await Promise.all(instances.map((k) => k.signer(c.org_id)))
    expect(new Set(signers.map((s) => s.kid)).size).toBe(1)
    const rows = await db.owner`select kid from auth.signing_keys where org_id = ${c.org_id}`
    expect(rows.length).toBe(1)
  })

  test('private keys are stored sealed, bound to org and kid', async () => {
    const rows = await db.owner<{ org_id: string; kid: string; private_key_ciphertext: Buffer }[]>`
      select org_id, kid, private_key_ciphertext from auth.signing_keys`
    expect(rows.length).toBeGreaterThan(0)
    for (const r of rows) expect(r.private_key_ciphertext.toString('latin1')).not.toContain('PRIVATE KEY')
  })
})

describe('minting', () => {
  test('documented shapes: every type, with the SPEC claims', async () => {
    const { app, bearer, agent } = await chain(a)
    expect(app.token).toMatch(/^qt_app_[\w-]+\.[\w-]+\.[\w-]{86}$/)
    expect(bearer.token.startsWith('qt_bearer_')).toBe(true)
    expect(agent.token.startsWith('qt_agent_')).toBe(true)
    const h = decode(agent.token).header
    expect(h).toEqual({ alg: 'ES256', typ: 'JWT', kid: expect.stringMatching(/^[A-Za-z0-9_-]{8,64}$/) })
    const c = decode(agent.token).payload
    expect(c).toMatchObject({ sub: a.org_id, typ: 'agent', parent_jti: bearer.jti, agent_id: 'agent-1' })
    expect(c.rbac).toMatchObject({ sensitivity_level: 3, max_sensitivity_level: 3, allowed_actions: RBAC.allowed_actions })
    expect(c.exp - c.iat).toBe(24 * 3600)
    expect(decode(bearer.token).payload).toMatchObject({ typ: 'bearer', env: 'production', parent_jti: app.jti })
    expect(decode(app.token).payload.exp - decode(app.token).payload.iat).toBe(365 * 86400)

    const sub = await t.call('POST', '/tokens/subagent', {
      token: a.admin_key,
      json: {
        customer_id: a.org_id,
        parent_agent_jti: agent.jti,
        agent_id: 'sub-1',
        rbac: { ...RBAC, allowed_actions: ['data:read:*'] },
        ttl_hours: 2,
      },
    })
    expect(sub.status).toBe(201)
    expect(sub.body).toMatchObject({ agent_id: 'sub-1', delegation_depth: 1 })
    expect(sub.body.claims).toMatchObject({ typ: 'subagent', depth: 1, parent_jti: agent.jti })

    const session = await t.call('POST', '/tokens/session', {
      token: a.admin_key,
      json: { customer_id: a.org_id, parent_jti: sub.body.jti, parent_type: 'subagent', session_id: 's-1', max_events: 5 },
    })
    expect(session.status).toBe(201)
    expect(session.body).toMatchObject({ session_id: 's-1', max_events: 5 })
    expect(session.body.claims.exp).toBeLessThanOrEqual(sub.body.claims.exp)

    const override = await t.call('POST', '/tokens/override', {
      token: a.admin_key,
      json: { customer_id: a.org_id, event_id: 'evt-1', reason: 'flagged' },
    })
    expect(override.status).toBe(201)
    expect(override.body.claims).toMatchObject({ typ: 'override', event_id: 'evt-1', allowed_decisions: ['approve', 'reject'] })
    expect(override.body.claims.exp - override.body.claims.iat).toBe(300)

    const rows = await db.owner`select token_type, parent_jti from auth.issued_tokens where jti = ${session.body.jti}`
    expect(rows[0]).toMatchObject({ token_type: 'session', parent_jti: sub.body.jti })
    const audit = await db.owner`select action from audit_log where target_id = ${sub.body.jti}`
    expect(audit.map((r) => r.action)).toEqual(['jwt.mint.subagent'])
  })

  test('client shapes: the parent token is the bearer', async () => {
    const { app, agent } = await chain(a)
    // app → bearer, bearer → agent with the parent as bearer.
    const bearer = await t.call('POST', '/auth/tokens/bearer', { token: app.token, json: { environment: 'staging' } })
    expect(bearer.status).toBe(201)
    expect(bearer.body.claims.parent_jti).toBe(app.jti)
    const agent2 = await t.call('POST', '/tokens/agent', { token: bearer.body.token, json: { agent_id: 'a2', rbac: RBAC } })
    expect(agent2.status).toBe(201)
    const sub = await t.call('POST', '/tokens/subagent', { token: agent.token, json: { agent_id: 'child' } })
    expect(sub.status).toBe(201)
    expect(sub.body.claims.rbac).toEqual(agent.claims.rbac)
    expect(sub.body.claims.depth).toBe(1)
    const subsub = await t.call('POST', '/tokens/subagent', {
      token: sub.body.token,
      json: { agent_id: 'grandchild', rbac: { ...RBAC, allowed_actions: ['data:read:x'] } },
    })
    expect(subsub.status).toBe(201)
    expect(subsub.body.delegation_depth).toBe(2)
    const session = await t.call('POST', '/tokens/session', {
      token: subsub.body.token,
      json: { session_id: 'sess', max_events: 10 },
    })
    expect(session.status).toBe(201)
    expect(session.body.claims).toMatchObject({ parent_jti: subsub.body.jti, session_id: 'sess', max_events: 10 })
    const ov = await t.call('POST', '/tokens/override', {
      token: agent.token,
      json: { event_id: 'e9', allowed_decisions: ['approve'] },
    })
    expect(ov.status).toBe(201)
    expect(ov.body).toMatchObject({ event_id: 'e9', allowed_decisions: ['approve'] })
    expect(ov.body.claims.parent_jti).toBeUndefined()
    // Every minted token is accepted as a credential.
    for (const tok of [bearer.body.token, agent2.body.token, sub.body.token, session.body.token, ov.body.token]) {
      expect((await t.call('GET', '/v1/auth/whoami', { token: tok })).status).toBe(200)
    }
  })

  test('TTL: longer than the type allows or than the parent lives → 400', async () => {
    const { agent } = await chain(a)
    const tooLong = await t.call('POST', '/tokens/agent', {
      token: a.admin_key,
      json: { bearer_jti: agent.claims.parent_jti, agent_id: 'x', rbac: RBAC, ttl_hours: 25 },
    })
    expectProblem(tooLong, 400)
    expect(tooLong.body.errors).toEqual([{ path: '/ttl_hours', message: expect.any(String) }])
    // A session may live 1 h, but not past a sub-agent that lives 10 minutes.
    const sub = await t.call('POST', '/tokens/subagent', { token: agent.token, json: { agent_id: 's', ttl_hours: 1 / 6 } })
    expect(sub.status).toBe(201)
    const outlive = await t.call('POST', '/tokens/session', { token: sub.body.token, json: { session_id: 'x' } })
    // No lifetime asked: the default is cut to the parent's.
    expect(outlive.status).toBe(201)
    expect(outlive.body.claims.exp).toBe(sub.body.claims.exp)
    const asked = await t.call('POST', '/tokens/session', {
      token: a.admin_key,
      json: { parent_jti: sub.body.jti, session_id: 'x', ttl_minutes: 30 },
    })
    expectProblem(asked, 400)
    expect(asked.body.errors[0].path).toBe('/ttl_minutes')
  })

  test('depth limit (AUTH_MAX_DELEGATION_DEPTH) → 400', async () => {
    const { agent } = await chain(a)
    let parent = agent.token
    for (let d = 1; d <= 3; d++) {
      const r = await t.call('POST', '/tokens/subagent', { token: parent, json: { agent_id: `d${d}` } })
      expect(r.status).toBe(201)
      expect(r.body.delegation_depth).toBe(d)
      parent = r.body.token
    }
    const deep = await t.call('POST', '/tokens/subagent', { token: parent, json: { agent_id: 'd4' } })
    expectProblem(deep, 400)
    expect(deep.body.errors[0].message).toContain('exceeds the limit of 3')
  })

  test('narrowing: superset or wildcard widening → 400 with pointers; bad RBAC → 422', async () => {
    const { agent } = await chain(a)
    for (const rbac of [
      { ...RBAC, allowed_actions: ['data:*'] },
      { ...RBAC, allowed_actions: ['**'] },
      { ...RBAC, denied_actions: [] },
      { ...RBAC, max_sensitivity_level: 5 },
      { ...RBAC, allowed_resources: [] },
    ]) {
      const r = await t.call('POST', '/tokens/subagent', { token: agent.token, json: { agent_id: 'esc', rbac } })
      expectProblem(r, 400)
      expect(r.body.errors.length).toBeGreaterThan(0)
      for (const e of r.body.errors) expect(e.path).toMatch(/^\/rbac\//)
    }
    const bad = await t.call('POST', '/tokens/agent', {
      token: a.admin_key,
      json: { bearer_jti: agent.claims.parent_jti, agent_id: 'x', rbac: { denied_action: ['x'] } },
    })
    expectProblem(bad, 422, 'validation_failed')
    expect(bad.body.errors[0].path).toBe('/rbac/denied_action')
  })

  test('who may mint: deploy tokens, sessions and other orgs are refused', async () => {
    const { app, bearer, agent } = await chain(a)
    expectProblem(await t.call('POST', '/tokens/app', { token: a.deploy_token, json: {} }), 403)
    expectProblem(await t.call('POST', '/tokens/agent', { token: agent.token, json: { agent_id: 'x', rbac: RBAC } }), 403)
    const sess = await t.call('POST', '/tokens/session', { token: agent.token, json: { session_id: 's' } })
    expectProblem(await t.call('POST', '/tokens/subagent', { token: sess.body.token, json: { agent_id: 'x' } }), 403)
    // customer_id of another org: 404, whoever asks.
    expectProblem(await t.call('POST', '/tokens/app', { token: a.admin_key, json: { customer_id: b.org_id } }), 404)
    expectProblem(
      await t.call('POST', '/tokens/subagent', { token: agent.token, json: { customer_id: b.org_id, agent_id: 'x' } }),
      404,
    )
    // Org B naming org A's parents: not found.
    const hash = createHash('sha256').update(app.token).digest('hex')
    expectProblem(
      await t.call('POST', '/tokens/bearer', { token: b.admin_key, json: { app_token_hash: hash, environment: 'x' } }),
      404,
    )
    expectProblem(
      await t.call('POST', '/tokens/agent', { token: b.admin_key, json: { bearer_jti: bearer.jti, agent_id: 'x', rbac: RBAC } }),
      404,
    )
    // A token naming a parent other than itself.
    const other = await chain(a)
    expectProblem(
      await t.call('POST', '/tokens/subagent', {
        token: agent.token,
        json: { parent_agent_jti: other.agent.jti, agent_id: 'x' },
      }),
      403,
    )
    // Management without a parent for a child type: 422 naming the field.
    const missing = await t.call('POST', '/tokens/bearer', { token: a.admin_key, json: { environment: 'x' } })
    expectProblem(missing, 422)
    expect(missing.body.errors[0].path).toBe('/app_token_hash')
    // Wrong parent type.
    const wrong = await t.call('POST', '/tokens/session', {
      token: a.admin_key,
      json: { parent_jti: bearer.jti, session_id: 's' },
    })
    expectProblem(wrong, 400)
    expect(wrong.body.errors[0].path).toBe('/parent_jti')
    // An app token limited to tokens:write cannot mint an app token with `*`.
    const limited = await t.call('POST', '/tokens/app', { token: a.admin_key, json: { scopes: ['tokens:write'] } })
    expect(limited.status).toBe(201)
    expectProblem(await t.call('POST', '/tokens/app', { token: limited.body.token, json: { scopes: ['*'] } }), 403)
    expect((await t.call('POST', '/tokens/app', { token: limited.body.token, json: { scopes: ['tokens:write'] } })).status).toBe(
      201,
    )
    // An app token without a management scope hands on only what it holds: a read-only one
    // cannot mint a bearer (ingest + read) nor any override; one holding both can mint a bearer.
    const readOnly = await t.call('POST', '/tokens/app', { token: a.admin_key, json: { scopes: ['read'] } })
    expect(readOnly.status).toBe(201)
    expectProblem(await t.call('POST', '/tokens/bearer', { token: readOnly.body.token, json: { environment: 'x' } }), 403)
    expectProblem(await t.call('POST', '/tokens/override', { token: readOnly.body.token, json: { event_id: 'evt-x' } }), 403)
    const both = await t.call('POST', '/tokens/app', { token: a.admin_key, json: { scopes: ['ingest', 'read'] } })
    expect((await t.call('POST', '/tokens/bearer', { token: both.body.token, json: { environment: 'x' } })).status).toBe(201)
    expectProblem(await t.call('POST', '/tokens/override', { token: both.body.token, json: { event_id: 'evt-x' } }), 403)
  })
})

describe('revocation', () => {
  test('single (documented path) refused on the next request; idempotent; other org 404', async () => {
    const { agent } = await chain(a)
    expect((await t.call('GET', '/v1/auth/whoami', { token: agent.token })).status).toBe(200)
    expectProblem(await t.call('DELETE', `/revocation/${agent.jti}`, { token: b.admin_key, json: { token_type: 'agent' } }), 404)
    expectProblem(await t.call('DELETE', `/revocation/${agent.jti}`, { token: a.admin_key, json: { token_type: 'bearer' } }), 404)
    const r = await t.call('DELETE', `/revocation/${agent.jti}`, {
      token: a.admin_key,
      json: { token_type: 'agent', customer_id: a.org_id, reason: 'compromised' },
    })
    expect(r.status).toBe(200)
    expect(r.body).toEqual({ revoked: true, jti: agent.jti })
    expectProblem(await t.call('GET', '/v1/auth/whoami', { token: agent.token }), 401, 'unauthorized')
    const again = await t.call('DELETE', `/revocation/${agent.jti}`, { token: a.admin_key, json: { token_type: 'agent' } })
    expect(again.body).toEqual({ revoked: true, jti: agent.jti })
    const log = await db.owner`select reason from auth.revocation_log where jti = ${agent.jti}`
    expect(log.map((x) => x.reason)).toEqual(['compromised'])
    expectProblem(await t.call('DELETE', '/revocation/not-a-uuid', { token: a.admin_key }), 404)
    expectProblem(await t.call('DELETE', `/revocation/${crypto.randomUUID()}`, { token: a.admin_key }), 404)
  })

  test('client path DELETE /tokens/{jti}; children of a revoked parent are refused too', async () => {
    const { agent } = await chain(a)
    const sub = await t.call('POST', '/tokens/subagent', { token: agent.token, json: { agent_id: 'c' } })
    expect((await t.call('GET', '/v1/auth/whoami', { token: sub.body.token })).status).toBe(200)
    expectProblem(await t.call('DELETE', `/tokens/${agent.jti}`, { token: agent.token }), 403)
    const r = await t.call('DELETE', `/tokens/${agent.jti}`, { token: a.admin_key })
    expect(r.status).toBe(200)
    // Only the agent was revoked, yet its child is refused: the chain is checked.
    expectProblem(await t.call('GET', '/v1/auth/whoami', { token: sub.body.token }), 401)
    expectProblem(
      await t.call('POST', '/tokens/session', { token: a.admin_key, json: { parent_jti: sub.body.jti, session_id: 'x' } }),
      400,
    )
  })

  test('cascade on both paths: root and every descendant', async () => {
    for (const path of ['/revocation/cascade/', '/revoke/cascade/']) {
      const { app, bearer, agent } = await chain(a)
      const sub = await t.call('POST', '/tokens/subagent', { token: agent.token, json: { agent_id: 'c' } })
      const sess = await t.call('POST', '/tokens/session', { token: sub.body.token, json: { session_id: 's' } })
      const ov = await t.call('POST', '/tokens/override', {
        token: agent.token,
        json: { event_id: 'e', allowed_decisions: ['approve'] },
      })
      const tokens = [bearer.token, agent.token, sub.body.token, sess.body.token, ov.body.token]
      for (const tok of tokens) expect((await t.call('GET', '/v1/auth/whoami', { token: tok })).status).toBe(200)
      const r = await t.call('POST', `${path}${bearer.jti}`, {
        token: a.admin_key,
        ...(path.startsWith('/revocation') ? { json: { token_type: 'bearer', reason: 'x' } } : {}),
      })
      expect(r.status).toBe(200)
      expect(r.body.revoked_count).toBe(5)
      expect(r.body.revoked_jtis.sort()).toEqual([bearer.jti, agent.jti, sub.body.jti, sess.body.jti, ov.body.jti].sort())
      for (const tok of tokens) expectProblem(await t.call('GET', '/v1/auth/whoami', { token: tok }), 401)
      expect((await t.call('GET', '/v1/auth/whoami', { token: app.token })).status).toBe(200)
      const again = await t.call('POST', `${path}${bearer.jti}`, { token: a.admin_key })
      expect(again.body.revoked_count).toBe(5)
    }
  })

  test('a revocation on one instance reaches another instance (no filter: within the cache bound)', async () => {
    const other = testApp(db)
    const { agent } = await chain(a)
    expect((await other.call('GET', '/v1/auth/whoami', { token: agent.token })).status).toBe(200)
    await t.call('DELETE', `/tokens/${agent.jti}`, { token: a.admin_key })
    // An instance that never validated it refuses it at once (authoritative check); one that had
    // it cached and shares no filter refuses it within the 30 s cache bound (docs/auth.md).
    const fresh = testApp(db)
    expectProblem(await fresh.call('GET', '/v1/auth/whoami', { token: agent.token }), 401)
  })
})

describe('introspection and wiring', () => {
  test('whoami for JWT and opaque credentials', async () => {
    const { agent } = await chain(a)
    const w = await t.call('GET', '/v1/auth/whoami', { token: agent.token })
    expect(w.body).toMatchObject({
      kind: 'jwt',
      type: 'agent',
      org_id: a.org_id,
      jti: agent.jti,
      agent_id: 'agent-1',
      scopes: ['ingest'],
    })
    expect(w.body.rbac.allowed_actions).toEqual(RBAC.allowed_actions)
    expect(Date.parse(w.body.expires_at)).toBe(agent.claims.exp * 1000)
    const o = await t.call('GET', '/v1/auth/whoami', { token: a.admin_key })
    expect(o.body).toMatchObject({ kind: 'opaque', type: 'api_key', org_id: a.org_id, scopes: ['admin'] })
  })

  test("check: deny-first steps with the caller's RBAC; no RBAC → allowed at step 6", async () => {
    const { agent, app } = await chain(a)
    const deny = await t.call('POST', '/v1/auth/check', { token: agent.token, json: { action: 'data:write:users' } })
    expect(deny.body).toMatchObject({ allowed: false, step: 1, step_name: 'denied_actions' })
    const notAllowed = await t.call('POST', '/v1/auth/check', { token: agent.token, json: { action: 'deploy:prod' } })
    expect(notAllowed.body).toMatchObject({ allowed: false, step: 2 })
    const sens = await t.call('POST', '/v1/auth/check', {
      token: agent.token,
      json: { action: 'data:read:x', resource: 'repo:a', sensitivity: 4 },
    })
    expect(sens.body).toMatchObject({ allowed: false, step: 5 })
    const ok = await t.call('POST', '/v1/auth/check', {
      token: agent.token,
      json: { action: 'data:read:x', resource: 'repo:a', sensitivity: 2 },
    })
    expect(ok.body).toMatchObject({ allowed: true, step: 6, step_name: 'ALLOWED' })
    const none = await t.call('POST', '/v1/auth/check', { token: app.token, json: { action: 'anything' } })
    expect(none.body).toMatchObject({ allowed: true, step: 6 })
    expectProblem(await t.call('POST', '/v1/auth/check', { token: agent.token, json: {} }), 422)
  })

  test('JWT scopes on existing endpoints: app * is admin, bearer and agent ingest but neither reads nor manages', async () => {
    const { app, bearer, agent } = await chain(a)
    expect((await t.call('GET', '/v1/deploy-tokens', { token: app.token })).status).toBe(200)
    expect((await t.call('GET', '/v1/alerts', { token: app.token })).status).toBe(200)
    expectProblem(await t.call('GET', '/v1/deploy-tokens', { token: agent.token }), 403)
    expectProblem(await t.call('GET', '/v1/deploy-tokens', { token: bearer.token }), 403)
    // A proxy's bearer token is a data-plane credential: it reads nothing of the org (issue 9).
    expectProblem(await t.call('GET', '/v1/alerts', { token: bearer.token }), 403)
    expectProblem(await t.call('GET', '/v1/alerts', { token: agent.token }), 403)
  })

  test('legacy X-API-Key: accepted, every answer carries the deprecation header', async () => {
    const ok = await t.call('GET', '/v1/auth/whoami', { headers: { 'x-api-key': a.admin_key } })
    expect(ok.status).toBe(200)
    expect(ok.headers.get('x-quint-deprecation')).toBe('X-API-Key auth is deprecated; migrate to Bearer token auth')
    const list = await t.call('GET', '/v1/deploy-tokens', { headers: { 'x-api-key': a.admin_key } })
    expect(list.status).toBe(200)
    expect(list.headers.get('x-quint-deprecation')).toContain('deprecated')
    const bad = await t.call('GET', '/v1/deploy-tokens', { headers: { 'x-api-key': 'qk_' + '0'.repeat(64) } })
    expectProblem(bad, 401)
    expect(bad.headers.get('x-quint-deprecation')).toContain('deprecated')
    const forbidden = await t.call('GET', '/v1/deploy-tokens', { headers: { 'x-api-key': a.deploy_token } })
    expectProblem(forbidden, 403)
    expect(forbidden.headers.get('x-quint-deprecation')).toContain('deprecated')
    const bearer = await t.call('GET', '/v1/auth/whoami', { token: a.admin_key })
    expect(bearer.headers.get('x-quint-deprecation')).toBeNull()
  })
})

describe('session tokens: max_events', () => {
  test('ingest under a session token stops at max_events with 429; shared by instances', async () => {
    const { agent } = await chain(a)
    const s = await t.call('POST', '/tokens/session', { token: agent.token, json: { session_id: 'budget', max_events: 5 } })
    const first = await t.call('POST', '/v1/ingest', { token: s.body.token, json: { events: [v2Event(), v2Event(), v2Event()] } })
    expect(first.status).toBeLessThan(300)
    // A second instance draws on the same budget: 3 used, 3 more would pass 5.
    const other = testApp(db)
    const over = await other.call('POST', '/v1/ingest', {
      token: s.body.token,
      json: { events: [v2Event(), v2Event(), v2Event()] },
    })
    expectProblem(over, 429, 'rate_limited')
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0)
    const fits = await other.call('POST', '/v1/ingest', { token: s.body.token, json: { events: [v2Event(), v2Event()] } })
    expect(fits.status).toBeLessThan(300)
    expectProblem(await t.call('POST', '/v1/ingest', { token: s.body.token, json: { events: [v2Event()] } }), 429)
    // The agent itself is not limited.
    expect((await t.call('POST', '/v1/ingest', { token: agent.token, json: { events: [v2Event()] } })).status).toBeLessThan(300)
  })

  test('a gzip batch is counted by the events it carries, not as one request', async () => {
    const { agent } = await chain(a)
    const s = await t.call('POST', '/tokens/session', { token: agent.token, json: { session_id: 'gz', max_events: 2 } })
    const body = Bun.gzipSync(JSON.stringify({ events: Array.from({ length: 20 }, () => v2Event()) }))
    const res = await t.call('POST', '/v1/ingest', {
      token: s.body.token,
      body,
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    })
    expectProblem(res, 429, 'rate_limited')
  })
})

describe('revocation filter', () => {
  /** An instance as serve.ts builds it: its own filter, optionally sharing Redis. */
  function instance(redis: RedisStateStore | null, namespace: string) {
    const source = () =>
      (async function* () {
        yield* await revokedForFilter(db.app, 30)
      })()
    const filter = createRevocationFilter({ redis, log: testLog, namespace, source, verifyIntervalMs: 200 })
    const { app } = testApp(db, {}, undefined, { redis: redis ?? undefined, revocationFilter: filter, start: false })
    const call = async (method: string, path: string, token: string) => {
      const res = await app.fetch(new Request(`http://test${path}`, { method, headers: { authorization: `Bearer ${token}` } }))
      return { status: res.status, body: await res.json().catch(() => null) }
    }
    return { filter, call }
  }

  async function loaded(filter: RevocationFilter) {
    for (let i = 0; i < 200 && !filter.stats().loaded; i++) await Bun.sleep(25)
    expect(filter.stats().loaded).toBe(true)
  }

  test('memory mode: rebuilt from Postgres, revocations added after the commit', async () => {
    const { agent } = await chain(a)
    await t.call('DELETE', `/tokens/${agent.jti}`, { token: a.admin_key })
    const one = instance(null, `test:rev:${crypto.randomUUID()}`)
    await one.filter.rebuild(
      (async function* () {
        yield* await revokedForFilter(db.app, 30)
      })(),
    )
    expect(one.filter.check(a.org_id, agent.jti)).toBe(true)
    expect((await one.call('GET', '/v1/auth/whoami', agent.token)).status).toBe(401)
    const fresh = await chain(a)
    expect(one.filter.check(a.org_id, fresh.agent.jti)).toBe(false)
    expect((await one.call('GET', '/v1/auth/whoami', fresh.agent.token)).status).toBe(200)
    expect((await one.call('DELETE', `/tokens/${fresh.agent.jti}`, a.admin_key)).status).toBe(200)
    expect(one.filter.check(a.org_id, fresh.agent.jti)).toBe(true)
    expect((await one.call('GET', '/v1/auth/whoami', fresh.agent.token)).status).toBe(401)
    await one.filter.close()
  })

  test('memory mode, two instances: the poll carries a revocation to the other instance, cached token included', async () => {
    const one = instance(null, `test:rev:${crypto.randomUUID()}`)
    const two = instance(null, `test:rev:${crypto.randomUUID()}`)
    const polls = [one, two].map((i) => new RevocationPoll({ sql: db.app, filter: i.filter, log: testLog, everyMs: 50 }))
    try {
      for (const [i, inst] of [one, two].entries()) {
        await polls[i]!.start()
        await inst.filter.rebuild(
          (async function* () {
            yield* await revokedForFilter(db.app, 30)
          })(),
        )
      }
      const { agent } = await chain(a)
      expect((await one.call('GET', '/v1/auth/whoami', agent.token)).status).toBe(200)
      expect((await two.call('GET', '/v1/auth/whoami', agent.token)).status).toBe(200)
      // Two's filter has never heard of this revocation: without the poll it would answer
      // "definitely not revoked" until a restart.
      expect((await one.call('DELETE', `/tokens/${agent.jti}`, a.admin_key)).status).toBe(200)
      const started = performance.now()
      let status = 200
      while (status === 200 && performance.now() - started < 3000) {
        status = (await two.call('GET', '/v1/auth/whoami', agent.token)).status
        if (status === 200) await Bun.sleep(10)
      }
      expect(status).toBe(401)
      expect(two.filter.check(a.org_id, agent.jti)).toBe(true)
      // Each revocation is added once, however many polls overlap it.
      expect(await polls[1]!.pollOnce()).toBe(0)
    } finally {
      for (const p of polls) await p.stop()
      await one.filter.close()
      await two.filter.close()
    }
  })

  test('cluster mode: a revocation on one instance is refused by another within 100 ms', async () => {
    const ns = `test:rev:${crypto.randomUUID()}`
    const r1 = await testRedis()
    const r2 = await testRedis()
    const one = instance(r1, ns)
    const two = instance(r2, ns)
    try {
      await loaded(one.filter)
      await loaded(two.filter)
      const { agent } = await chain(a)
      // Both instances have validated (and cached) the token.
      expect((await one.call('GET', '/v1/auth/whoami', agent.token)).status).toBe(200)
      expect((await two.call('GET', '/v1/auth/whoami', agent.token)).status).toBe(200)
      expect((await one.call('DELETE', `/tokens/${agent.jti}`, a.admin_key)).status).toBe(200)
      const started = performance.now()
      let status = 200
      while (status === 200 && performance.now() - started < 1000) {
        status = (await two.call('GET', '/v1/auth/whoami', agent.token)).status
        if (status === 200) await Bun.sleep(5)
      }
      const elapsed = performance.now() - started
      expect(status).toBe(401)
      expect(elapsed).toBeLessThan(100)
    } finally {
      await one.filter.close()
      await two.filter.close()
      await r1.close()
      await r2.close()
    }
  })
})
