/**
 * The delegation chain checked at validation, not only at mint (issue 14 item 6). Tokens here are
 * signed with the org's real private key (opened from the database with the test master key), as
 * an attacker holding a leaked key would sign them, or inserted into auth.issued_tokens the way a
 * minting bug would record them: the signature is valid, so only the chain check refuses them.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createPrivateKey, randomUUID, sign, type KeyObject } from 'node:crypto'
import { SigningKeys } from '../../src/auth/jwt/keys.ts'
import { MAX_TOKEN_TTL_MS } from '../../src/auth/jwt/hierarchy.ts'
import { TokenValidator, type ChainViolation } from '../../src/auth/jwt/validator.ts'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { withOrg } from '../../src/infra/db.ts'
import { testApp, testSecrets, twoOrgApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testLog, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let key: { kid: string; priv: KeyObject }
let validator: TokenValidator
let bearer: { token: string; jti: string }
/** An agent minted with a 2 h lifetime, so that a 4 h sub-agent could outlive it. */
let agent: { token: string; jti: string; expires_at: string }
let sub: { token: string; jti: string }

const RBAC = {
  allowed_actions: ['data:read:*'],
  denied_actions: ['data:write:*'],
  allowed_resources: ['repo:*'],
  denied_resources: [],
  max_sensitivity_level: 3,
}
const nowS = () => Math.floor(Date.now() / 1000)
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')

function payloadOf(token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.slice(token.indexOf('_', 3) + 1).split('.')[1]!, 'base64url').toString())
}

/** A token validly signed with the org's real key: what a leaked key lets anyone make. */
function signed(prefix: string, payload: Record<string, unknown>): string {
  const input = `${b64({ alg: 'ES256', typ: 'JWT', kid: key.kid })}.${b64(payload)}`
  return `${prefix}${input}.${sign('sha256', Buffer.from(input), { key: key.priv, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
}

/** Records a token as a buggy mint would (claims and row as given), then signs it. */
async function recordAndSign(
  type: string,
  parentJti: string,
  claims: Record<string, unknown>,
  row: { depth?: number; expiresAt?: number } = {},
): Promise<string> {
  const jti = randomUUID()
  const iat = nowS()
  const payload = { jti, sub: a.org_id, typ: type, iat, exp: row.expiresAt ?? iat + 3600, parent_jti: parentJti, ...claims }
  await withOrg(
    db.app,
    a.org_id,
    (tx) => tx`
    insert into auth.issued_tokens (org_id, jti, token_type, parent_jti, depth, kid, claims, expires_at)
    values (${a.org_id}, ${jti}, ${type}, ${parentJti}, ${row.depth ?? 0}, ${key.kid}, ${tx.json(payload as never)},
            ${new Date((payload.exp as number) * 1000)})`,
  )
  return signed(`qt_${type}_`, payload)
}

async function who(token: string) {
  return t.call('GET', '/v1/auth/whoami', { token })
}

function refused(res: { status: number; headers: Headers; body: any }) {
  expect(res.status).toBe(401)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  expect(res.body.code).toBe('unauthorized')
}

beforeAll(async () => {
  ;({ db, t, a } = await twoOrgApp())
  const app = await t.call('POST', '/tokens/app', { token: a.admin_key, json: { scopes: ['*'] } })
  bearer = (await t.call('POST', '/tokens/bearer', { token: app.body.token, json: { environment: 'prod' } })).body
  agent = (
    await t.call('POST', '/tokens/agent', {
      token: a.admin_key,
      json: { bearer_jti: bearer.jti, agent_id: 'ag', rbac: RBAC, ttl_hours: 2 },
    })
  ).body
  sub = (await t.call('POST', '/tokens/subagent', { token: agent.token, json: { agent_id: 'sub' } })).body
  expect(sub.jti).toBeString()
  const [row] = await db.owner<{ kid: string; private_key_ciphertext: Buffer }[]>`
    select kid, private_key_ciphertext from auth.signing_keys where org_id = ${a.org_id} and status = 'active'`
  const der = testSecrets.open(row!.private_key_ciphertext, `signing-key:${a.org_id}:${row!.kid}`)
  key = { kid: row!.kid, priv: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }) }
  // The same validator the app builds, so its refusal reason can be read directly.
  const keys = new SigningKeys(db.app, testSecrets, testLog, { maxTokenTtlMs: MAX_TOKEN_TTL_MS })
  validator = new TokenValidator(db.app, keys, { clockSkewS: 30, maxDepth: 3 })
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

describe('genuine chains still validate', () => {
  test('app → bearer → agent → sub-agent ×3 → session and override, and a re-signed copy of recorded claims', async () => {
    let parent = agent.token
    for (let i = 0; i < 3; i++) {
      const r = await t.call('POST', '/tokens/subagent', {
        token: parent,
        json: { agent_id: `d${i}`, rbac: { ...RBAC, allowed_actions: ['data:read:x*'] } },
      })
      expect(r.status).toBe(201)
      parent = r.body.token
      expect((await who(parent)).status).toBe(200)
    }
    const session = await t.call('POST', '/tokens/session', { token: parent, json: { session_id: 's1' } })
    expect((await who(session.body.token)).status).toBe(200)
    const override = await t.call('POST', '/tokens/override', { token: agent.token, json: { event_id: 'evt-1' } })
    expect(override.status).toBe(201)
    expect((await validator.validate(override.body.token)).ok).toBe(true)
    // Signing exactly the recorded claims again is the same token (ECDSA signatures vary).
    expect((await who(signed('qt_subagent_', payloadOf(sub.token)))).status).toBe(200)
  })
})

describe('a token signed with the org key but not as minted (leaked key)', () => {
  test('a sub-agent re-signed with RBAC wider than its parent is refused', async () => {
    for (const rbac of [
      { ...payloadOf(sub.token).rbac, allowed_actions: ['*'] },
      { ...payloadOf(sub.token).rbac, denied_actions: [] },
      { ...payloadOf(sub.token).rbac, sensitivity_level: 0, max_sensitivity_level: 0 },
    ]) {
      const forged = signed('qt_subagent_', { ...payloadOf(sub.token), rbac })
      refused(await who(forged))
      expect(await validator.validate(forged)).toEqual({ ok: false, reason: 'invalid', chain: 'claims_not_recorded' })
    }
  })

  test('a sub-agent re-signed to outlive its parent (within the 4 h type maximum) is refused', async () => {
    const p = payloadOf(sub.token)
    const parentExp = Math.floor(Date.parse(agent.expires_at) / 1000)
    expect(p.exp).toBeLessThanOrEqual(parentExp)
    const forged = signed('qt_subagent_', { ...p, exp: parentExp + 3600 })
    refused(await who(forged))
    expect(await validator.validate(forged)).toEqual({ ok: false, reason: 'invalid', chain: 'claims_not_recorded' })
  })

  test('an app token re-signed with wider scopes, or a bearer for another environment, is refused', async () => {
    const narrow = (await t.call('POST', '/tokens/app', { token: a.admin_key, json: { scopes: ['read'] } })).body
    expect((await t.call('POST', '/tokens/app', { token: narrow.token, json: { scopes: ['*'] } })).status).toBe(403)
    const forged = signed('qt_app_', { ...payloadOf(narrow.token), scopes: ['*'] })
    refused(await who(forged))
    expect((await t.call('POST', '/tokens/app', { token: forged, json: { scopes: ['*'] } })).status).toBe(401)
    refused(await who(signed('qt_bearer_', { ...payloadOf(bearer.token), env: 'other' })))
  })

  test('a session re-signed for another agent or a larger budget is refused', async () => {
    const session = (await t.call('POST', '/tokens/session', { token: sub.token, json: { session_id: 's2', max_events: 10 } }))
      .body
    expect((await who(session.token)).status).toBe(200)
    refused(await who(signed('qt_session_', { ...payloadOf(session.token), agent_id: 'someone-else' })))
    refused(await who(signed('qt_session_', { ...payloadOf(session.token), max_events: 1_000_000 })))
  })
})

describe('a chain recorded wrong (minting bug)', () => {
  const subRbac = () => ({ ...RBAC, sensitivity_level: 3, max_risk_score: 0, max_sensitivity_level: 3 })

  test('a sub-agent recorded with RBAC wider than its parent is refused', async () => {
    for (const rbac of [
      { ...subRbac(), allowed_actions: ['data:*'] },
      { ...subRbac(), allowed_resources: [] },
      { ...subRbac(), denied_actions: [] },
      { ...subRbac(), max_sensitivity_level: 5, sensitivity_level: 5 },
    ]) {
      const token = await recordAndSign('subagent', agent.jti, { agent_id: 'bug', rbac, depth: 1 }, { depth: 1 })
      refused(await who(token))
      expect(await validator.validate(token)).toEqual({ ok: false, reason: 'invalid', chain: 'rbac_not_narrower' })
    }
    // The same recording with a subset policy is accepted: the check is about the policy.
    const ok = await recordAndSign(
      'subagent',
      agent.jti,
      { agent_id: 'fine', rbac: { ...subRbac(), allowed_actions: ['data:read:a*'] }, depth: 1 },
      { depth: 1 },
    )
    expect((await who(ok)).status).toBe(200)
  })

  test('a sub-agent recorded to outlive its parent is refused', async () => {
    const parentExp = Math.floor(Date.parse(agent.expires_at) / 1000)
    const token = await recordAndSign(
      'subagent',
      agent.jti,
      { agent_id: 'late', rbac: subRbac(), depth: 1 },
      { depth: 1, expiresAt: parentExp + 600 },
    )
    refused(await who(token))
    expect(await validator.validate(token)).toEqual({ ok: false, reason: 'invalid', chain: 'outlives_parent' })
  })

  test('wrong depth, wrong parent type, or a session of another agent is refused', async () => {
    const cases: [ChainViolation, Promise<string>][] = [
      ['depth', recordAndSign('subagent', agent.jti, { agent_id: 'deep', rbac: subRbac(), depth: 2 }, { depth: 2 })],
      ['depth', recordAndSign('subagent', sub.jti, { agent_id: 'flat', rbac: subRbac(), depth: 1 }, { depth: 1 })],
      ['wrong_parent_type', recordAndSign('subagent', bearer.jti, { agent_id: 'x', rbac: subRbac(), depth: 1 }, { depth: 1 })],
      ['wrong_parent_type', recordAndSign('session', bearer.jti, { session_id: 's', max_events: 10 })],
      ['agent_id_mismatch', recordAndSign('session', agent.jti, { session_id: 's', max_events: 10, agent_id: 'not-ag' })],
    ]
    for (const [rule, pending] of cases) {
      const token = await pending
      refused(await who(token))
      expect(await validator.validate(token)).toEqual({ ok: false, reason: 'invalid', chain: rule })
    }
  })

  test('a token under a broken link is refused too, however narrow itself', async () => {
    const wide = await recordAndSign(
      'subagent',
      agent.jti,
      { agent_id: 'wide', rbac: { ...subRbac(), allowed_actions: ['*'] }, depth: 1 },
      { depth: 1 },
    )
    const child = await t.call('POST', '/tokens/session', {
      token: a.admin_key,
      json: { parent_jti: payloadOf(wide).jti, session_id: 's3' },
    })
    expect(child.status).toBe(201)
    refused(await who(child.body.token))
    expect(await validator.validate(child.body.token)).toEqual({ ok: false, reason: 'invalid', chain: 'rbac_not_narrower' })
  })
})
