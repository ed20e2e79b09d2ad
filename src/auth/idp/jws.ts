/**
 * @module auth/idp/jws
 * Compact JWS as identity providers issue them (issue 10): ES256 and RS256 from a JWKS, and HS256
 * for Supabase projects that still sign with a shared secret. The algorithm is pinned by the key,
 * never chosen by the token: a header naming another algorithm than its key's is refused, so
 * `alg: none` and the HS256-with-the-public-key confusion cannot verify (PITFALLS §2.4).
 *
 * Parsing is strict and bounded before any key lookup: three base64url parts within size caps,
 * JSON objects, and a header that names only `alg`, `typ`, `kid` (no `jwk`, `jku`, `x5u`, `x5c`,
 * `crit`: nothing in a token may steer verification).
 */
import { createHmac, timingSafeEqual, verify, type KeyObject } from 'node:crypto'

export type IdpAlgorithm = 'ES256' | 'RS256' | 'HS256'
export const IDP_ALGORITHMS: readonly IdpAlgorithm[] = ['ES256', 'RS256', 'HS256']

/** A verification key with its one algorithm: a KeyObject for ES256/RS256, the secret for HS256. */
export type IdpKey = { alg: 'ES256' | 'RS256'; key: KeyObject } | { alg: 'HS256'; secret: Buffer }

export interface IdpJws {
  alg: IdpAlgorithm
  kid: string | null
  payload: Record<string, unknown>
  signingInput: string
  signature: Buffer
}

/** Provider tokens carry profile claims: larger than ours, still bounded. */
const MAX_HEADER_B64 = 1024
const MAX_PAYLOAD_B64 = 16 * 1024
const MAX_SIGNATURE_B64 = 1024
const B64URL = /^[A-Za-z0-9_-]+$/
const KID = /^[\x21-\x7e]{1,256}$/
const HEADER_MEMBERS = new Set(['alg', 'typ', 'kid'])

/**
 * The parsed token, or null for anything malformed. Never throws. `typ` may be `JWT` or RFC 9068's
 * `at+jwt`: an access token whose audience is this API is what a client should call it with.
 */
export function parseIdpJws(compact: string): IdpJws | null {
  if (typeof compact !== 'string') return null
  const parts = compact.split('.')
  if (parts.length !== 3) return null
  const [h, p, s] = parts as [string, string, string]
  if (h.length > MAX_HEADER_B64 || p.length > MAX_PAYLOAD_B64 || s.length > MAX_SIGNATURE_B64) return null
  if (!B64URL.test(h) || !B64URL.test(p) || !B64URL.test(s)) return null
  const header = decodeObject(h)
  const payload = decodeObject(p)
  if (!header || !payload) return null
  if (Object.keys(header).some((k) => !HEADER_MEMBERS.has(k))) return null
  const { alg, typ, kid } = header
  if (typeof alg !== 'string' || !(IDP_ALGORITHMS as readonly string[]).includes(alg)) return null
  if (typ !== undefined && (typeof typ !== 'string' || !/^(at\+)?jwt$/i.test(typ))) return null
  if (kid !== undefined && (typeof kid !== 'string' || !KID.test(kid))) return null
  if (s.length % 4 === 1) return null
  const signature = Buffer.from(s, 'base64url')
  // One spelling per token: the spare bits of a last character must be zero (decodeObject checks
  // the same), or one token could be presented, and cached, under many spellings.
  if (signature.toString('base64url') !== s) return null
  return { alg: alg as IdpAlgorithm, kid: (kid as string | undefined) ?? null, payload, signingInput: `${h}.${p}`, signature }
}

/** True when `jws` is signed by `key` under the key's own algorithm. */
export function verifyIdpJws(jws: IdpJws, key: IdpKey): boolean {
  if (jws.alg !== key.alg) return false
  const input = Buffer.from(jws.signingInput, 'ascii')
  try {
    switch (key.alg) {
      case 'HS256': {
        const mac = createHmac('sha256', key.secret).update(input).digest()
        return jws.signature.length === mac.length && timingSafeEqual(jws.signature, mac)
      }
      case 'ES256':
        return jws.signature.length === 64 && verify('sha256', input, { key: key.key, dsaEncoding: 'ieee-p1363' }, jws.signature)
      case 'RS256':
        return verify('sha256', input, key.key, jws.signature)
    }
  } catch {
    return false
  }
}

function decodeObject(part: string): Record<string, unknown> | null {
  // length % 4 === 1 is never valid base64; Buffer would silently drop the stray character.
  if (part.length % 4 === 1) return null
  try {
    const bytes = Buffer.from(part, 'base64url')
    if (bytes.toString('base64url') !== part) return null
    const value: unknown = JSON.parse(bytes.toString('utf8'))
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null
  } catch {
    return null
  }
}
