/**
 * An identity provider stand-in (issue 10): a real HTTP server serving OIDC discovery and a JWKS
 * of keys generated per run, and a signer for any header and claims, hostile ones included.
 */
import { createHmac, generateKeyPairSync, randomBytes, sign, type JsonWebKey, type KeyObject } from 'node:crypto'

export interface TestKey {
  kid: string
  alg: 'ES256' | 'RS256'
  privateKey: KeyObject
  publicKey: KeyObject
}

export function testKey(alg: 'ES256' | 'RS256', kid = `${alg.toLowerCase()}-${randomBytes(4).toString('hex')}`): TestKey {
  const { privateKey, publicKey } =
    alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { kid, alg, privateKey, publicKey }
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')

/** A compact JWS over any header and claims, signed by `key` (or HMAC with `secret`, or unsigned). */
export function signJwt(
  claims: Record<string, unknown>,
  how:
    | { key: TestKey; header?: Record<string, unknown> }
    | { secret: Buffer | string; header?: Record<string, unknown> }
    | { none: true },
): string {
  const header =
    'none' in how
      ? { alg: 'none', typ: 'JWT' }
      : 'key' in how
        ? { alg: how.key.alg, typ: 'JWT', kid: how.key.kid, ...how.header }
        : { alg: 'HS256', typ: 'JWT', ...how.header }
  const input = `${b64(header)}.${b64(claims)}`
  if ('none' in how) return `${input}.`
  const sig =
    'key' in how
      ? how.key.alg === 'ES256'
        ? sign('sha256', Buffer.from(input), { key: how.key.privateKey, dsaEncoding: 'ieee-p1363' })
        : sign('sha256', Buffer.from(input), how.key.privateKey)
      : createHmac('sha256', how.secret).update(input).digest()
  return `${input}.${sig.toString('base64url')}`
}

export interface TestIdp {
  issuer: string
  jwksUrl: string
  /** What the JWKS serves from now on. */
  setKeys(keys: TestKey[]): void
  /** Discovery answers with this issuer instead of its own (a mismatch). */
  setDiscoveredIssuer(issuer: string): void
  /** Every JWKS answer from now on is this body (an oversized or broken one). */
  setJwksBody(body: string | null): void
  jwksFetches(): number
  /** Standard claims for `sub`, valid for an hour, for `audience`. */
  claims(audience: string, extra?: Record<string, unknown>): Record<string, unknown>
  stop(): void
}

export function publicJwk(key: TestKey): JsonWebKey {
  return { ...key.publicKey.export({ format: 'jwk' }), kid: key.kid, alg: key.alg, use: 'sig' }
}

export function startIdp(keys: TestKey[]): TestIdp {
  let served = keys
  let fetches = 0
  let discovered: string | null = null
  let jwksBody: string | null = null
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch(req): Response {
      const path = new URL(req.url).pathname
      if (path === '/.well-known/openid-configuration') {
        return Response.json({
          issuer: discovered ?? issuer,
          jwks_uri: `${issuer}/jwks`,
          id_token_signing_alg_values_supported: ['ES256', 'RS256'],
        })
      }
      if (path === '/jwks') {
        fetches++
        return new Response(jwksBody ?? JSON.stringify({ keys: served.map(publicJwk) }), {
          headers: { 'content-type': 'application/json' },
        })
      }
      return new Response('not found', { status: 404 })
    },
  })
  const issuer: string = `http://127.0.0.1:${server.port}`
  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    setKeys: (k) => void (served = k),
    setDiscoveredIssuer: (i) => void (discovered = i),
    setJwksBody: (b) => void (jwksBody = b),
    jwksFetches: () => fetches,
    claims: (audience, extra = {}) => {
      const now = Math.floor(Date.now() / 1000)
      return { iss: issuer, aud: audience, sub: `user-${randomBytes(4).toString('hex')}`, iat: now, exp: now + 3600, ...extra }
    },
    stop: () => void server.stop(true),
  }
}
