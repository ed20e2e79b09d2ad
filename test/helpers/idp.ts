/**
 * An identity provider stand-in (issue 10): a real HTTP server serving OIDC discovery and a JWKS
 * of keys generated per run, and a signer for any header and claims, hostile ones included.
 */
import { createHash, createHmac, generateKeyPairSync, randomBytes, sign, type JsonWebKey, type KeyObject } from 'node:crypto'

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
  /**
   * Authorization Code + PKCE (the console's sign-in): `/authorize` sends whoever `signedIn` names
   * straight back to the client with a code, as a provider does for a person already signed in;
   * `/token` exchanges it only with the matching S256 verifier, client and redirect URI, for an
   * access token signed by the first key (for `audience`), and renews it with a refresh token.
   */
  signIn(o: { clientId: string; audience: string; claims: Record<string, unknown> }): void
  /** The form bodies `/token` received. */
  tokenRequests(): URLSearchParams[]
  stop(): void
}

export function publicJwk(key: TestKey): JsonWebKey {
  return { ...key.publicKey.export({ format: 'jwk' }), kid: key.kid, alg: key.alg, use: 'sig' }
}

const CORS = { 'access-control-allow-origin': '*' }

export function startIdp(keys: TestKey[]): TestIdp {
  let served = keys
  let login: { clientId: string; audience: string; claims: Record<string, unknown> } | null = null
  const codes = new Map<string, { challenge: string; redirect: string; clientId: string }>()
  const refreshTokens = new Set<string>()
  const requests: URLSearchParams[] = []
  const oauthError = (error: string) => Response.json({ error }, { status: 400, headers: CORS })
  const accessToken = () => {
    const now = Math.floor(Date.now() / 1000)
    const refresh = randomBytes(16).toString('hex')
    refreshTokens.add(refresh)
    return Response.json(
      {
        token_type: 'Bearer',
        expires_in: 3600,
        refresh_token: refresh,
        access_token: signJwt(
          { iss: issuer, aud: login!.audience, iat: now, exp: now + 3600, ...login!.claims },
          { key: served[0]! },
        ),
      },
      { headers: CORS },
    )
  }
  const authorize = (q: URLSearchParams): Response => {
    if (!login || q.get('client_id') !== login.clientId || q.get('response_type') !== 'code') {
      return new Response('unknown client', { status: 400 })
    }
    if (q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge'))
      return new Response('PKCE required', { status: 400 })
    const code = randomBytes(16).toString('hex')
    codes.set(code, { challenge: q.get('code_challenge')!, redirect: q.get('redirect_uri')!, clientId: q.get('client_id')! })
    const back = new URL(q.get('redirect_uri')!)
    back.searchParams.set('code', code)
    back.searchParams.set('state', q.get('state') ?? '')
    return Response.redirect(back.toString(), 302)
  }
  const token = (form: URLSearchParams): Response => {
    requests.push(form)
    if (form.get('grant_type') === 'refresh_token') {
      return refreshTokens.delete(form.get('refresh_token') ?? '') ? accessToken() : oauthError('invalid_grant')
    }
    const grant = codes.get(form.get('code') ?? '')
    codes.delete(form.get('code') ?? '')
    const verifier = form.get('code_verifier') ?? ''
    const challenge = createHash('sha256').update(verifier).digest('base64url')
    if (!grant || form.get('grant_type') !== 'authorization_code') return oauthError('invalid_grant')
    if (grant.clientId !== form.get('client_id') || grant.redirect !== form.get('redirect_uri'))
      return oauthError('invalid_grant')
    if (challenge !== grant.challenge) return oauthError('invalid_grant')
    return accessToken()
  }
  let fetches = 0
  let discovered: string | null = null
  let jwksBody: string | null = null
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch(req): Response | Promise<Response> {
      const path = new URL(req.url).pathname
      if (path === '/.well-known/openid-configuration') {
        return Response.json(
          {
            issuer: discovered ?? issuer,
            jwks_uri: `${issuer}/jwks`,
            authorization_endpoint: `${issuer}/authorize`,
            token_endpoint: `${issuer}/token`,
            id_token_signing_alg_values_supported: ['ES256', 'RS256'],
            code_challenge_methods_supported: ['S256'],
          },
          { headers: CORS },
        )
      }
      if (path === '/authorize') return authorize(new URL(req.url).searchParams)
      if (path === '/token' && req.method === 'POST') return req.text().then((t) => token(new URLSearchParams(t)))
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
    signIn: (o) => void (login = o),
    tokenRequests: () => [...requests],
    stop: () => void server.stop(true),
  }
}
