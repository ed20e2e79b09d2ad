/**
 * People's identity-provider tokens (issue 10, src/auth/idp): against a real HTTP stand-in serving
 * discovery and a JWKS of keys generated per run. Every bad token is refused with a reason, never
 * an exception; a provider that cannot be reached is `unavailable`, not the token's fault.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { IdpVerifier, type IdpSettings } from '../../src/auth/idp/verifier.ts'
import { testLog } from '../helpers/db.ts'
import { publicJwk, signJwt, startIdp, testKey } from '../helpers/idp.ts'

const AUD = 'quint-dashboard'
const es = testKey('ES256')
const rs = testKey('RS256')
const idp = startIdp([es, rs])
afterAll(() => idp.stop())

const verifier = (extra: Partial<IdpSettings> = {}, now?: () => number) =>
  new IdpVerifier({ issuer: idp.issuer, audience: AUD, clockSkewS: 30, jwksMinRefreshMs: 0, ...extra }, testLog, now)
const now = () => Math.floor(Date.now() / 1000)

describe('accepted', () => {
  test('ES256 and RS256 tokens through discovery: subject, lower-cased email, verified or not', async () => {
    const v = verifier()
    const a = await v.verify(
      signJwt(idp.claims(AUD, { sub: 'alice', email: 'Alice@Example.COM', email_verified: true }), { key: es }),
    )
    expect(a).toEqual({
      identity: {
        issuer: idp.issuer,
        subject: 'alice',
        email: 'alice@example.com',
        emailVerified: true,
        expiresAt: expect.any(Number),
      },
    })
    const b = await v.verify(signJwt(idp.claims(AUD, { sub: 'bob', email: 'bob@example.com' }), { key: rs }))
    expect(b).toMatchObject({ identity: { subject: 'bob', emailVerified: false } })
    // An audience array holding ours, a Supabase-style verified flag.
    const c = await v.verify(
      signJwt(idp.claims(AUD, { aud: ['other', AUD], email: 'c@x.io', user_metadata: { email_verified: true } }), { key: es }),
    )
    expect(c).toMatchObject({ identity: { email: 'c@x.io', emailVerified: true } })
  })

  test('a verified token is served from the cache until it expires, without fetching keys again', async () => {
    let clock = Date.now()
    const v = verifier({}, () => clock)
    const token = signJwt(idp.claims(AUD, { exp: now() + 60 }), { key: es })
    expect((await v.verify(token)).identity).not.toBeNull()
    const fetches = idp.jwksFetches()
    expect((await v.verify(token)).identity).not.toBeNull()
    expect(idp.jwksFetches()).toBe(fetches)
    clock += 91_000 // past exp and the 30 s skew
    expect(await v.verify(token)).toEqual({ identity: null, reason: 'expired' })
  })

  test('Supabase on its shared secret: HS256 with the secret is accepted, without any JWKS', async () => {
    const secret = 'super-secret-jwt-token-with-at-least-32-characters-long'
    const v = new IdpVerifier({ issuer: idp.issuer, audience: AUD, hs256Secret: secret, clockSkewS: 30 }, testLog)
    const fetches = idp.jwksFetches()
    expect(await v.verify(signJwt(idp.claims(AUD, { sub: 'sb' }), { secret }))).toMatchObject({ identity: { subject: 'sb' } })
    expect(await v.verify(signJwt(idp.claims(AUD), { secret: 'another-secret' }))).toEqual({ identity: null, reason: 'invalid' })
    expect(idp.jwksFetches()).toBe(fetches)
  })

  test('a key rotated in is used without a restart', async () => {
    const v = verifier()
    expect((await v.verify(signJwt(idp.claims(AUD), { key: es }))).identity).not.toBeNull()
    const fresh = testKey('ES256')
    idp.setKeys([es, rs, fresh])
    try {
      expect((await v.verify(signJwt(idp.claims(AUD), { key: fresh }))).identity).not.toBeNull()
    } finally {
      idp.setKeys([es, rs])
    }
  })
})

describe('refused, never thrown', () => {
  const v = verifier()
  const cases: [string, () => string, 'invalid' | 'expired'][] = [
    ['expired', () => signJwt(idp.claims(AUD, { exp: now() - 120 }), { key: es }), 'expired'],
    ['not yet valid', () => signJwt(idp.claims(AUD, { nbf: now() + 600 }), { key: es }), 'invalid'],
    ['issued in the future', () => signJwt(idp.claims(AUD, { iat: now() + 600 }), { key: es }), 'invalid'],
    ['wrong audience', () => signJwt(idp.claims('someone-else'), { key: es }), 'invalid'],
    ['no audience', () => signJwt(idp.claims(AUD, { aud: undefined }), { key: es }), 'invalid'],
    ['wrong issuer', () => signJwt(idp.claims(AUD, { iss: 'https://evil.example' }), { key: es }), 'invalid'],
    ['no exp', () => signJwt(idp.claims(AUD, { exp: undefined }), { key: es }), 'invalid'],
    ['no sub', () => signJwt(idp.claims(AUD, { sub: undefined }), { key: es }), 'invalid'],
    ['alg none', () => signJwt(idp.claims(AUD), { none: true }), 'invalid'],
    // The classic confusion: the public key's bytes used as an HMAC secret, under its kid.
    [
      'HS256 signed with the public key (PEM)',
      () => signJwt(idp.claims(AUD), { secret: es.publicKey.export({ format: 'pem', type: 'spki' }), header: { kid: es.kid } }),
      'invalid',
    ],
    [
      'HS256 signed with the public JWK',
      () => signJwt(idp.claims(AUD), { secret: JSON.stringify(publicJwk(rs)), header: { kid: rs.kid } }),
      'invalid',
    ],
    ['RS256 header on the EC key', () => signJwt(idp.claims(AUD), { key: rs, header: { kid: es.kid } }), 'invalid'],
    [
      'ES256 signed by a key not in the JWKS under a known kid',
      () => signJwt(idp.claims(AUD), { key: { ...testKey('ES256'), kid: es.kid } }),
      'invalid',
    ],
    ['unknown kid', () => signJwt(idp.claims(AUD), { key: testKey('ES256', 'never-published') }), 'invalid'],
    ['no kid', () => signJwt(idp.claims(AUD), { key: es, header: { kid: undefined } }), 'invalid'],
    ['a jwk in the header', () => signJwt(idp.claims(AUD), { key: es, header: { jwk: publicJwk(es) } }), 'invalid'],
    ['a jku in the header', () => signJwt(idp.claims(AUD), { key: es, header: { jku: `${idp.issuer}/jwks` } }), 'invalid'],
    ['garbage', () => 'eyJhbGciOiJFUzI1NiJ9.garbage.!!', 'invalid'],
    ['huge', () => `${'a'.repeat(100_000)}.b.c`, 'invalid'],
    ['two parts', () => 'eyJhbGciOiJFUzI1NiJ9.e30', 'invalid'],
  ]
  for (const [name, token, reason] of cases) {
    test(name, async () => {
      expect(await v.verify(token())).toEqual({ identity: null, reason })
    })
  }

  test('HS256 is refused outright when no shared secret is configured', async () => {
    expect(await v.verify(signJwt(idp.claims(AUD), { secret: 'anything' }))).toEqual({ identity: null, reason: 'invalid' })
  })
})

describe('keys', () => {
  test('a key removed from the JWKS stops verifying, for tokens already seen too', async () => {
    const gone = testKey('RS256')
    idp.setKeys([es, rs, gone])
    const v = verifier({ jwksMaxAgeMs: 0 })
    const token = signJwt(idp.claims(AUD), { key: gone })
    try {
      expect((await v.verify(token)).identity).not.toBeNull()
      idp.setKeys([es, rs])
      // Any verification past the keys' max age fetches them again; the drop empties the cache.
      await v.verify(signJwt(idp.claims(AUD), { key: es }))
      await Bun.sleep(50)
      expect(await v.verify(token)).toEqual({ identity: null, reason: 'invalid' })
    } finally {
      idp.setKeys([es, rs])
    }
  })

  test('unknown kids fetch the keys at most once per minimum interval', async () => {
    const v = verifier({ jwksMinRefreshMs: 60_000 })
    expect((await v.verify(signJwt(idp.claims(AUD), { key: es }))).identity).not.toBeNull()
    const before = idp.jwksFetches()
    const forged = await Promise.all(
      Array.from({ length: 20 }, (_, i) => v.verify(signJwt(idp.claims(AUD), { key: testKey('ES256', `made-up-${i}`) }))),
    )
    expect(forged.every((o) => o.identity === null)).toBe(true)
    expect(idp.jwksFetches() - before).toBeLessThanOrEqual(1)
  })

  test('a provider that cannot be reached, or names another issuer, or answers too much: unavailable', async () => {
    const down = new IdpVerifier({ issuer: 'http://127.0.0.1:1', audience: AUD, clockSkewS: 30 }, testLog)
    expect(await down.verify(signJwt(idp.claims(AUD), { key: es }))).toEqual({ identity: null, reason: 'unavailable' })

    idp.setDiscoveredIssuer('https://not-this-one.example')
    try {
      expect(await verifier().verify(signJwt(idp.claims(AUD), { key: es }))).toEqual({ identity: null, reason: 'unavailable' })
    } finally {
      idp.setDiscoveredIssuer(idp.issuer)
    }

    idp.setJwksBody(JSON.stringify({ keys: [], pad: 'x'.repeat(600 * 1024) }))
    try {
      expect(await verifier().verify(signJwt(idp.claims(AUD), { key: es }))).toEqual({ identity: null, reason: 'unavailable' })
    } finally {
      idp.setJwksBody(null)
    }
  })

  test('a provider that is down is asked again only after the minimum interval', async () => {
    let clock = Date.now()
    const downIdp = startIdp([es])
    downIdp.setJwksBody('not json')
    try {
      const v = verifier({ issuer: downIdp.issuer, jwksMinRefreshMs: 30_000 }, () => clock)
      const token = signJwt(downIdp.claims(AUD), { key: es })
      for (let i = 0; i < 5; i++) expect(await v.verify(token)).toEqual({ identity: null, reason: 'unavailable' })
      expect(downIdp.jwksFetches()).toBe(1)
      downIdp.setJwksBody(null)
      clock += 30_000
      expect((await v.verify(token)).identity).not.toBeNull()
      expect(downIdp.jwksFetches()).toBe(2)
    } finally {
      downIdp.stop()
    }
  })

  test('key URLs must be HTTPS unless on a loopback host', async () => {
    const v = new IdpVerifier(
      { issuer: idp.issuer, audience: AUD, jwksUrl: 'http://keys.example.com/jwks', clockSkewS: 30 },
      testLog,
    )
    expect(await v.verify(signJwt(idp.claims(AUD), { key: es }))).toEqual({ identity: null, reason: 'unavailable' })
  })

  test('an explicit JWKS URL needs no discovery; small RSA keys and encryption keys are skipped', async () => {
    const weak = { ...testKey('RS256'), kid: 'weak-rsa' }
    const { generateKeyPairSync } = await import('node:crypto')
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 })
    weak.privateKey = small.privateKey
    weak.publicKey = small.publicKey
    idp.setJwksBody(JSON.stringify({ keys: [publicJwk(es), publicJwk(weak), { ...publicJwk(rs), use: 'enc' }] }))
    try {
      const v = verifier({ jwksUrl: idp.jwksUrl })
      expect((await v.verify(signJwt(idp.claims(AUD), { key: es }))).identity).not.toBeNull()
      expect(await v.verify(signJwt(idp.claims(AUD), { key: weak }))).toEqual({ identity: null, reason: 'invalid' })
      expect(await v.verify(signJwt(idp.claims(AUD), { key: rs }))).toEqual({ identity: null, reason: 'invalid' })
    } finally {
      idp.setJwksBody(null)
    }
  })
})
