/**
 * People's identity-provider tokens (issue 10, src/auth/idp): against a real HTTP stand-in serving
 * discovery and a JWKS of keys generated per run. Every bad token is refused with a reason, never
 * an exception; a provider that cannot be reached is `unavailable`, not the token's fault.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { keyUrlAllowed } from '../../src/auth/idp/jwks.ts'
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
    // An audience array holding ours.
    const c = await v.verify(
      signJwt(idp.claims(AUD, { aud: ['other', AUD], email: 'c@x.io', email_verified: true }), { key: es }),
    )
    expect(c).toMatchObject({ identity: { email: 'c@x.io', emailVerified: true } })
  })

  test('only a top-level email_verified counts; user_metadata (user-writable in Supabase) never does', async () => {
    const v = verifier()
    const claims = idp.claims(AUD, { email: 'ceo@victim.com', email_verified: false, user_metadata: { email_verified: true } })
    expect(await v.verify(signJwt(claims, { key: es }))).toMatchObject({
      identity: { email: 'ceo@victim.com', emailVerified: false },
    })
    const bare = idp.claims(AUD, { email: 'x@victim.com', user_metadata: { email_verified: true } })
    expect(await v.verify(signJwt(bare, { key: es }))).toMatchObject({ identity: { emailVerified: false } })
  })

  test('an email outside printable ASCII is not used: lower-casing would fold look-alikes onto real addresses', async () => {
    const v = verifier()
    // U+212A KELVIN SIGN lower-cases to an ASCII k.
    const kelvin = idp.claims(AUD, { email: 'ceo@ban\u212A.com', email_verified: true })
    expect(await v.verify(signJwt(kelvin, { key: es }))).toMatchObject({ identity: { email: null, emailVerified: false } })
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

  test('a shared secret shorter than 256 bits is refused at construction', () => {
    expect(() => new IdpVerifier({ issuer: idp.issuer, audience: AUD, hs256Secret: 'short', clockSkewS: 30 }, testLog)).toThrow(
      '32 bytes',
    )
  })

  test('the cache is bounded by tokens and by characters; a token over 8 KiB is never held', async () => {
    const v = verifier({ cacheSize: 3, cacheChars: 4_000 })
    const tokens = Array.from({ length: 5 }, (_, i) => signJwt(idp.claims(AUD, { sub: `s${i}` }), { key: es }))
    for (const t of tokens) expect((await v.verify(t)).identity).not.toBeNull()
    expect(v.cacheStats().tokens).toBe(3)
    const fat = signJwt(idp.claims(AUD, { name: 'x'.repeat(1_500) }), { key: es })
    expect((await v.verify(fat)).identity).not.toBeNull()
    expect(v.cacheStats().chars).toBeLessThanOrEqual(4_000)
    const huge = signJwt(idp.claims(AUD, { name: 'x'.repeat(9_000) }), { key: es })
    const before = v.cacheStats()
    expect((await v.verify(huge)).identity).not.toBeNull()
    expect(v.cacheStats()).toEqual(before)
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
    ['a sub with a newline (log injection)', () => signJwt(idp.claims(AUD, { sub: 'a\nb' }), { key: es }), 'invalid'],
    ['exp as a string', () => signJwt(idp.claims(AUD, { exp: String(now() + 60) }), { key: es }), 'invalid'],
    ['exp in milliseconds', () => signJwt(idp.claims(AUD, { exp: Date.now() + 60_000 }), { key: es }), 'invalid'],
    ['iss with a trailing slash', () => signJwt(idp.claims(AUD, { iss: `${idp.issuer}/` }), { key: es }), 'invalid'],
    [
      'the same token under another spelling of its signature',
      () => {
        const t = signJwt(idp.claims(AUD), { key: es })
        // The last character of a 64-byte signature carries 4 spare bits: flip one.
        const last = t.at(-1)!
        const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
        return t.slice(0, -1) + alphabet[alphabet.indexOf(last) ^ 1]
      },
      'invalid',
    ],
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

  test('with a shared secret and a JWKS both configured, the public key as an HMAC secret still fails', async () => {
    const both = verifier({ hs256Secret: 'a-real-shared-secret-of-at-least-32-bytes!!', jwksUrl: idp.jwksUrl })
    expect((await both.verify(signJwt(idp.claims(AUD), { key: es }))).identity).not.toBeNull()
    for (const secret of [es.publicKey.export({ format: 'pem', type: 'spki' }), JSON.stringify(publicJwk(es))]) {
      const forged = signJwt(idp.claims(AUD), { secret, header: { kid: es.kid } })
      expect(await both.verify(forged)).toEqual({ identity: null, reason: 'invalid' })
    }
  })

  test('anything but a string is invalid, not an exception', async () => {
    for (const bad of [undefined, null, 42, {}]) {
      expect(await v.verify(bad as unknown as string)).toEqual({ identity: null, reason: 'invalid' })
    }
  })
})

describe('keys', () => {
  test('a key removed from the JWKS, or replaced under the same kid, stops verifying cached tokens too', async () => {
    let clock = Date.now()
    const settle = () => Bun.sleep(20) // the background fetch a stale hit starts
    for (const change of ['removed', 'replaced'] as const) {
      const old = testKey('RS256')
      idp.setKeys([es, rs, old])
      const v = verifier({ jwksMaxAgeMs: 60_000, jwksMinRefreshMs: 1_000 }, () => clock)
      const token = signJwt(idp.claims(AUD), { key: old })
      try {
        expect((await v.verify(token)).identity).not.toBeNull()
        idp.setKeys(change === 'removed' ? [es, rs] : [es, rs, { ...testKey('RS256'), kid: old.kid }])
        // Within the keys' max age the cached token stands; past it, a hit fetches them again.
        expect((await v.verify(token)).identity).not.toBeNull()
        clock += 60_000
        await v.verify(token)
        await settle()
        expect({ change, outcome: await v.verify(token) }).toEqual({ change, outcome: { identity: null, reason: 'invalid' } })
      } finally {
        idp.setKeys([es, rs])
      }
    }
  })

  test('keys not refreshed for their max staleness are not used, cached tokens included', async () => {
    let clock = Date.now()
    const v = verifier({ jwksMaxAgeMs: 60_000, jwksMinRefreshMs: 1_000, jwksMaxStaleMs: 3_600_000 }, () => clock)
    const token = signJwt(idp.claims(AUD, { exp: now() + 7200 }), { key: es })
    expect((await v.verify(token)).identity).not.toBeNull()
    idp.setJwksBody('down')
    try {
      clock += 1_800_000
      expect((await v.verify(token)).identity).not.toBeNull() // stale, failing fetches: old keys still answer
      await Bun.sleep(20)
      clock += 1_800_000
      expect(await v.verify(token)).toEqual({ identity: null, reason: 'unavailable' })
    } finally {
      idp.setJwksBody(null)
    }
  })

  test('unknown kids fetch the keys at most once per minimum interval', async () => {
    let clock = Date.now()
    const v = verifier({ jwksMinRefreshMs: 60_000 }, () => clock)
    expect((await v.verify(signJwt(idp.claims(AUD), { key: es }))).identity).not.toBeNull()
    const forge = (i: number) => v.verify(signJwt(idp.claims(AUD), { key: testKey('ES256', `made-up-${i}`) }))
    // Inside the interval: none.
    const before = idp.jwksFetches()
    expect((await Promise.all(Array.from({ length: 10 }, (_, i) => forge(i)))).every((o) => o.identity === null)).toBe(true)
    expect(idp.jwksFetches()).toBe(before)
    // Past it: twenty at once make exactly one.
    clock += 60_000
    expect((await Promise.all(Array.from({ length: 20 }, (_, i) => forge(100 + i)))).every((o) => o.identity === null)).toBe(true)
    expect(idp.jwksFetches()).toBe(before + 1)
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

  test('key URLs must be HTTPS, unless the issuer itself is plain HTTP on loopback', () => {
    const local = 'http://127.0.0.1:9999'
    expect(keyUrlAllowed('https://keys.example.com/jwks', 'https://idp.example.com')).toBe(true)
    expect(keyUrlAllowed('http://keys.example.com/jwks', 'https://idp.example.com')).toBe(false)
    expect(keyUrlAllowed('http://127.0.0.1:9999/jwks', 'https://idp.example.com')).toBe(false)
    expect(keyUrlAllowed('http://127.0.0.1:9999/jwks', local)).toBe(true)
    expect(keyUrlAllowed('http://keys.example.com/jwks', local)).toBe(false)
    expect(keyUrlAllowed('file:///etc/passwd', local)).toBe(false)
    expect(keyUrlAllowed('not a url', local)).toBe(false)
  })

  test('a key URL on plain HTTP beside an HTTPS issuer is never fetched', async () => {
    const other = startIdp([es])
    try {
      const v = new IdpVerifier(
        { issuer: 'https://idp.example.invalid', audience: AUD, jwksUrl: other.jwksUrl, clockSkewS: 30 },
        testLog,
      )
      expect(await v.verify(signJwt(other.claims(AUD), { key: es }))).toEqual({ identity: null, reason: 'unavailable' })
      expect(other.jwksFetches()).toBe(0)
    } finally {
      other.stop()
    }
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
