/**
 * Hostile JWTs against the real app and database (PITFALLS §2.4, issue 4 "How it is checked").
 * Forgeries that need a real signature are signed with the org's real private key, opened from
 * the database with the test master key: they show that the checks after the signature hold on
 * their own. Every refusal is a 401 problem (or 400/403/404 where the request itself is refused),
 * and nothing here may produce a 500.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createHmac, createPrivateKey, randomBytes, sign, type KeyObject } from 'node:crypto'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { testApp, testSecrets, twoOrgApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg
let agentA: { token: string; jti: string; claims: Record<string, any> }
let appA: { token: string; jti: string }
let bearerA: { jti: string }
let keyA: { kid: string; priv: KeyObject; pem: string; jwk: Record<string, unknown> }

const RBAC = {
  allowed_actions: ['data:read:*'],
  denied_actions: ['data:write:*'],
  allowed_resources: ['repo:*'],
  denied_resources: [],
  max_sensitivity_level: 3,
}
const N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551')

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')

function parts(token: string) {
  const i = token.indexOf('_', 3) + 1
  const [h, p, s] = token.slice(i).split('.')
  return {
    prefix: token.slice(0, i),
    h: h!,
    p: p!,
    s: s!,
    header: JSON.parse(Buffer.from(h!, 'base64url').toString()),
    payload: JSON.parse(Buffer.from(p!, 'base64url').toString()),
  }
}

function es256(input: string, key: KeyObject, der = false): string {
  return sign('sha256', Buffer.from(input), der ? key : { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')
}

/** A token with any header and payload, validly signed with org A's real key. */
function forge(prefix: string, header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const input = `${b64(header)}.${b64(payload)}`
  return `${prefix}${input}.${es256(input, keyA.priv)}`
}

async function who(token: string, headers: Record<string, string> = {}) {
  return t.call('GET', '/v1/auth/whoami', { token, headers })
}

function refused(res: { status: number; headers: Headers; body: any }, code = 'unauthorized') {
  expect(res.status).toBe(401)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  expect(res.body.code).toBe(code)
}

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
  const app = await t.call('POST', '/tokens/app', { token: a.admin_key, json: { scopes: ['*'] } })
  appA = app.body
  const bearer = await t.call('POST', '/tokens/bearer', { token: app.body.token, json: { environment: 'prod' } })
  bearerA = bearer.body
  const agent = await t.call('POST', '/tokens/agent', {
    token: a.admin_key,
    json: { bearer_jti: bearer.body.jti, agent_id: 'ag', rbac: RBAC },
  })
  agentA = agent.body
  const [row] = await db.owner<
    { kid: string; private_key_ciphertext: Buffer; public_pem: string; public_jwk: Record<string, unknown> }[]
  >`
    select kid, private_key_ciphertext, public_pem, public_jwk from auth.signing_keys where org_id = ${a.org_id} and status = 'active'`
  const der = testSecrets.open(row!.private_key_ciphertext, `signing-key:${a.org_id}:${row!.kid}`)
  keyA = {
    kid: row!.kid,
    priv: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }),
    pem: row!.public_pem,
    jwk: row!.public_jwk,
  }
  // Org B gets a key too.
  await t.call('POST', '/keys/signing', { token: b.admin_key, json: {} })
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

describe('baseline', () => {
  test('the genuine token and a re-signed copy of its claims are accepted', async () => {
    expect((await who(agentA.token)).status).toBe(200)
    const { payload, header } = parts(agentA.token)
    expect((await who(forge('qt_agent_', header, payload))).status).toBe(200)
  })
})

describe('algorithm attacks', () => {
  test.each(['none', 'None', 'NONE', 'nOnE', '', 'es256', 'Es256', 'ES384', 'ES512', 'RS256', 'PS256', 'EdDSA'])(
    'alg %p is refused',
    async (alg) => {
      const { payload } = parts(agentA.token)
      const header = { alg, typ: 'JWT', kid: keyA.kid }
      const input = `${b64(header)}.${b64(payload)}`
      refused(await who(`qt_agent_${input}.`))
      refused(await who(`qt_agent_${input}.${es256(input, keyA.priv)}`))
    },
  )

  test('HS256 signed with the public key (PEM and JWK forms) is refused', async () => {
    const { payload } = parts(agentA.token)
    for (const alg of ['HS256', 'ES256']) {
      const header = { alg, typ: 'JWT', kid: keyA.kid }
      const input = `${b64(header)}.${b64(payload)}`
      for (const secret of [keyA.pem, JSON.stringify(keyA.jwk), keyA.jwk.x as string]) {
        const mac = createHmac('sha256', secret).update(input).digest('base64url')
        refused(await who(`qt_agent_${input}.${mac}`))
      }
    }
  })
})

describe('header attacks', () => {
  test.each([
    ['unknown kid', 'A'.repeat(22)],
    ['path-like kid', '../../etc/passwd'],
    ['SQL-ish kid', "x' OR '1'='1"],
    ['NUL kid', 'abcdefgh\u0000'],
    ['numeric kid', 12345678],
    ['missing kid', undefined],
    ['huge kid', 'k'.repeat(5000)],
  ])('%s is refused', async (_name, kid) => {
    const { payload } = parts(agentA.token)
    refused(await who(forge('qt_agent_', { alg: 'ES256', typ: 'JWT', ...(kid === undefined ? {} : { kid }) }, payload)))
  })

  test("another org's kid is not a key of this org", async () => {
    const [kb] = await db.owner<{ kid: string }[]>`select kid from auth.signing_keys where org_id = ${b.org_id}`
    const { payload } = parts(agentA.token)
    refused(await who(forge('qt_agent_', { alg: 'ES256', typ: 'JWT', kid: kb!.kid }, payload)))
  })

  test.each([
    ['jwk', { jwk: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' } }],
    ['jku', { jku: 'https://attacker.example/jwks.json' }],
    ['x5u', { x5u: 'https://attacker.example/cert.pem' }],
    ['x5c', { x5c: ['MIIB'] }],
    ['crit', { crit: ['exp'] }],
    ['b64', { b64: false }],
    ['cty', { cty: 'JWT' }],
  ])('embedded %s header is refused even when validly signed', async (_n, extra) => {
    const { payload } = parts(agentA.token)
    refused(await who(forge('qt_agent_', { alg: 'ES256', typ: 'JWT', kid: keyA.kid, ...extra }, payload)))
  })

  test.each(['jwt', 'at+jwt', 'JOSE', '', null])('header typ %p is refused', async (typ) => {
    const { payload } = parts(agentA.token)
    refused(await who(forge('qt_agent_', { alg: 'ES256', typ, kid: keyA.kid }, payload)))
  })
})

describe('claim attacks', () => {
  const now = () => Math.floor(Date.now() / 1000)
  const base = () => parts(agentA.token)

  test('prefix/type mismatch: a real token under another prefix, or a forged typ', async () => {
    const { h, p, s, header, payload } = base()
    for (const prefix of ['qt_subagent_', 'qt_app_', 'qt_bearer_', 'qt_session_', 'qt_override_']) {
      refused(await who(`${prefix}${h}.${p}.${s}`))
    }
    for (const typ of ['subagent', 'app', 'AGENT', undefined]) {
      refused(await who(forge('qt_agent_', header, { ...payload, typ })))
    }
    refused(await who(forge('qt_app_', header, { ...payload, typ: 'app', scopes: ['*'] })))
    refused(await who(`qt_unknown_${h}.${p}.${s}`))
    refused(await who(`${h}.${p}.${s}`))
  })

  test('expired → 401 token_expired; not-yet-valid iat/nbf → 401 unauthorized', async () => {
    const { header, payload } = base()
    refused(await who(forge('qt_agent_', header, { ...payload, iat: now() - 7200, exp: now() - 3600 })), 'token_expired')
    refused(await who(forge('qt_agent_', header, { ...payload, iat: now() + 3600, exp: now() + 7200 })))
    refused(await who(forge('qt_agent_', header, { ...payload, nbf: now() + 3600 })))
    for (const exp of ['9999999999', 1e308, 1.5, null]) refused(await who(forge('qt_agent_', header, { ...payload, exp })))
    // Lifetime beyond the type's maximum (a forged 10-year agent token).
    refused(await who(forge('qt_agent_', header, { ...payload, exp: now() + 10 * 365 * 86400 })))
  })

  test('missing required claims per type are refused', async () => {
    const { header, payload } = base()
    for (const drop of ['jti', 'sub', 'iat', 'exp', 'parent_jti', 'agent_id', 'rbac']) {
      const p2 = { ...payload }
      delete p2[drop]
      refused(await who(forge('qt_agent_', header, p2)))
    }
    refused(await who(forge('qt_agent_', header, { ...payload, rbac: 'all' })))
    refused(await who(forge('qt_agent_', header, { ...payload, jti: 'not-a-uuid' })))
  })

  test('chain: unissued jti, or a parent_jti that is not the recorded parent, is refused', async () => {
    const { header, payload } = base()
    refused(await who(forge('qt_agent_', header, { ...payload, jti: crypto.randomUUID() })))
    refused(await who(forge('qt_agent_', header, { ...payload, parent_jti: appA.jti })))
  })

  test("another org's sub: org A's key claiming org B; org A's token against org B", async () => {
    const { header, payload } = base()
    refused(await who(forge('qt_agent_', header, { ...payload, sub: b.org_id })))
    refused(await who(forge('qt_agent_', header, { ...payload, sub: crypto.randomUUID() })))
    refused(await who(forge('qt_agent_', header, { ...payload, sub: 'not-a-uuid' })))
    // A genuine org A management token cannot act on org B.
    const bApp = await t.call('POST', '/tokens/app', { token: b.admin_key, json: {} })
    expect((await t.call('DELETE', `/revocation/${bApp.body.jti}`, { token: appA.token })).status).toBe(404)
    expect((await t.call('POST', `/revoke/cascade/${bApp.body.jti}`, { token: appA.token })).status).toBe(404)
    expect(
      (await t.call('POST', '/tokens/bearer', { token: appA.token, json: { customer_id: b.org_id, environment: 'x' } })).status,
    ).toBe(404)
    expect((await who(bApp.body.token)).body.org_id).toBe(b.org_id)
  })
})

describe('signature attacks', () => {
  test('DER, wrong-length, zero and garbage signatures are refused', async () => {
    const { prefix, h, p } = parts(agentA.token)
    const input = `${h}.${p}`
    refused(await who(`${prefix}${input}.${es256(input, keyA.priv, true)}`))
    const raw = Buffer.from(parts(agentA.token).s, 'base64url')
    for (const sig of [
      raw.subarray(0, 63),
      Buffer.concat([raw, Buffer.of(0)]),
      Buffer.alloc(64),
      Buffer.alloc(0),
      randomBytes(64),
    ]) {
      refused(await who(`${prefix}${input}.${sig.toString('base64url')}`))
    }
    // r = s = 0 and r = s = n ("psychic signatures").
    const n = Buffer.from(N.toString(16).padStart(64, '0'), 'hex')
    refused(await who(`${prefix}${input}.${Buffer.concat([n, n]).toString('base64url')}`))
    // Padded base64 or a standard-alphabet signature is not our encoding.
    refused(await who(`${prefix}${input}.${parts(agentA.token).s}==`))
  })

  test('a malleated signature (r, n−s) of a revoked token is still refused', async () => {
    const agent = await t.call('POST', '/tokens/agent', {
      token: a.admin_key,
      json: { bearer_jti: bearerA.jti, agent_id: 'm', rbac: RBAC },
    })
    const { prefix, h, p, s } = parts(agent.body.token)
    const sig = Buffer.from(s, 'base64url')
    const sVal = BigInt('0x' + sig.subarray(32).toString('hex'))
    const s2 = Buffer.from((N - sVal).toString(16).padStart(64, '0'), 'hex')
    const malleated = `${prefix}${h}.${p}.${Buffer.concat([sig.subarray(0, 32), s2]).toString('base64url')}`
    expect(malleated).not.toBe(agent.body.token)
    // Byte-different, same jti: accepted while the token is valid (ECDSA allows it)…
    expect((await who(malleated)).status).toBe(200)
    await t.call('DELETE', `/tokens/${agent.body.jti}`, { token: a.admin_key })
    // …and refused with it once revoked, whichever form is presented first.
    refused(await who(malleated))
    refused(await who(agent.body.token))
  })
})

describe('delegation escalation', () => {
  test('superset patterns, wildcard widening, longer TTL, deeper than the limit → 400', async () => {
    for (const rbac of [
      { ...RBAC, allowed_actions: ['data:*'] },
      { ...RBAC, allowed_actions: ['*'] },
      { ...RBAC, allowed_actions: ['data:read:*', 'admin:*'] },
      { ...RBAC, allowed_resources: ['**'] },
      { ...RBAC, denied_actions: [] },
      { ...RBAC, max_sensitivity_level: 0 },
      { ...RBAC, allowed_actions: ['DATA:READ:*'] },
    ]) {
      const r = await t.call('POST', '/tokens/subagent', { token: agentA.token, json: { agent_id: 'e', rbac } })
      expect(r.status).toBe(400)
    }
    expect(
      (await t.call('POST', '/tokens/subagent', { token: agentA.token, json: { agent_id: 'e', ttl_hours: 5 } })).status,
    ).toBe(400)
    let parent = agentA.token
    for (let i = 0; i < 3; i++)
      parent = (await t.call('POST', '/tokens/subagent', { token: parent, json: { agent_id: `d${i}` } })).body.token
    expect((await t.call('POST', '/tokens/subagent', { token: parent, json: { agent_id: 'too-deep' } })).status).toBe(400)
    // A forged depth beyond the limit is refused at validation too.
    const { header, payload } = parts(parent)
    refused(await who(forge('qt_subagent_', header, { ...payload, depth: 4 })))
  })

  test('parent revoked after mint → child refused', async () => {
    const agent = await t.call('POST', '/tokens/agent', {
      token: a.admin_key,
      json: { bearer_jti: bearerA.jti, agent_id: 'p', rbac: RBAC },
    })
    const child = await t.call('POST', '/tokens/subagent', { token: agent.body.token, json: { agent_id: 'c' } })
    const session = await t.call('POST', '/tokens/session', { token: child.body.token, json: { session_id: 's' } })
    expect((await who(session.body.token)).status).toBe(200)
    await t.call('DELETE', `/revocation/${agent.body.jti}`, { token: a.admin_key })
    refused(await who(child.body.token))
    refused(await who(session.body.token))
    expect((await t.call('POST', '/tokens/session', { token: child.body.token, json: { session_id: 's2' } })).status).toBe(401)
  })
})

describe('garbage', () => {
  test('truncated, garbage and huge tokens are refused, never a 500', async () => {
    const tok = agentA.token
    const samples = [
      'qt_agent_',
      'qt_agent_..',
      'qt_agent_a.b.c',
      'qt_agent_...',
      'qt_',
      'qt_agent',
      tok.slice(0, -1),
      tok.slice(0, 40),
      tok + '.',
      tok + 'A',
      tok.replace('.', '..'),
      'qt_agent_' + 'A'.repeat(100_000),
      'qt_agent_' + b64('[]') + '.' + b64('[]') + '.' + 'A'.repeat(86),
      'qt_agent_' + b64('null') + '.' + b64('{}') + '.' + 'A'.repeat(86),
      'qt_agent_' + b64({ alg: 'ES256', typ: 'JWT', kid: keyA.kid }) + '.' + b64('not json') + '.' + 'A'.repeat(86),
      'qt_agent_%00',
      'qt_agent_\u00e9\u00e9.\u00e9.\u00e9',
    ]
    for (const s of samples) {
      const r = await who(s)
      expect(r.status).toBe(401)
    }
    const rnd = () => Math.floor(Math.random() * tok.length)
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.'
    for (let i = 0; i < 300; i++) {
      const at = rnd()
      const mutated = tok.slice(0, at) + alphabet[Math.floor(Math.random() * alphabet.length)] + tok.slice(at + 1)
      const r = await who(mutated)
      // A mutation that decodes to the same bytes (base64 slack in the last character) is the same token.
      expect(r.status === 401 || (r.status === 200 && r.body.jti === agentA.jti)).toBe(true)
    }
  })

  test('a JWT in X-API-Key is validated the same way', async () => {
    expect((await who('', { 'x-api-key': agentA.token })).status).toBe(200)
    const r = await t.call('GET', '/v1/auth/whoami', { headers: { 'x-api-key': agentA.token.slice(0, -2) } })
    refused(r)
    expect(r.headers.get('x-quint-deprecation')).toContain('deprecated')
  })
})
