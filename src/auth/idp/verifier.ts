/**
 * @module auth/idp/verifier
 * People's tokens (issue 10): a JWT issued by the org's identity provider (any OIDC issuer: ES256
 * or RS256 keys from its JWKS), or by a Supabase project that still signs with its shared secret
 * (HS256, `SUPABASE_JWT_SECRET`). What comes out is who the provider says signed in: issuer,
 * subject and email (verified or not); mapping that to a member of an org is the members' work.
 *
 * Checks, in this order, so that only a genuine token is ever told it expired: strict parse
 * (jws.ts) → the key its header names, under that key's one algorithm → signature → `iss` exactly
 * → `aud` (a string, or an array holding ours) → `exp` (required) and `nbf`/`iat` with the
 * configured skew → `sub` present.
 *
 * A verified token is cached until it expires (a cache hit is a Map lookup and a clock read:
 * issue 10's ≤ 5 µs). The cache is emptied when a fetch of the keys drops one, so a key the
 * provider removed stops working for the tokens already seen too.
 */
import type { Logger } from '../../infra/log.ts'
import { parseIdpJws, verifyIdpJws, type IdpJws, type IdpKey } from './jws.ts'
import { JwksKeySet, JwksUnavailableError } from './jwks.ts'

export interface IdpSettings {
  issuer: string
  audience: string
  /** The JWKS itself; unset: found through discovery from the issuer. */
  jwksUrl?: string
  /** Supabase's legacy shared secret: HS256 tokens are accepted only when it is set. */
  hs256Secret?: string
  clockSkewS: number
  jwksMaxAgeMs?: number
  jwksMinRefreshMs?: number
  cacheSize?: number
}

export interface IdpIdentity {
  issuer: string
  subject: string
  /** Lower-cased; null when the token has none. */
  email: string | null
  /** `email_verified: true`, or Supabase's `user_metadata.email_verified: true`. */
  emailVerified: boolean
  /** `exp`, in ms. */
  expiresAt: number
}

export type IdpOutcome =
  | { identity: IdpIdentity }
  | { identity: null; reason: 'invalid' | 'expired' }
  /** The provider's keys could not be loaded at all: not the token's fault (503, not 401). */
  | { identity: null; reason: 'unavailable' }

const MAX_SUBJECT = 255
const MAX_EMAIL = 320

export class IdpVerifier {
  private readonly keys: JwksKeySet | null
  private readonly secret: IdpKey | null
  private readonly cache = new Map<string, IdpIdentity>()
  private readonly cacheSize: number
  private readonly now: () => number
  private readonly settings: IdpSettings

  constructor(settings: IdpSettings, log: Logger, now: () => number = Date.now) {
    this.settings = settings
    this.now = now
    this.cacheSize = settings.cacheSize ?? 10_000
    this.secret = settings.hs256Secret ? { alg: 'HS256', secret: Buffer.from(settings.hs256Secret, 'utf8') } : null
    // A Supabase project on its shared secret alone has no JWKS to fetch.
    this.keys =
      settings.jwksUrl || !settings.hs256Secret
        ? new JwksKeySet({
            issuer: settings.issuer,
            jwksUrl: settings.jwksUrl,
            maxAgeMs: settings.jwksMaxAgeMs ?? 10 * 60_000,
            minRefreshMs: settings.jwksMinRefreshMs ?? 30_000,
            log,
            now,
          })
        : null
    if (this.keys) this.keys.onKeysRemoved = () => this.cache.clear()
  }

  async verify(raw: string): Promise<IdpOutcome> {
    const hit = this.cache.get(raw)
    if (hit) {
      if (this.now() < hit.expiresAt + this.settings.clockSkewS * 1000) return { identity: hit }
      this.cache.delete(raw)
      return { identity: null, reason: 'expired' }
    }
    const jws = parseIdpJws(raw)
    if (!jws) return { identity: null, reason: 'invalid' }
    let key: IdpKey | null
    try {
      key = await this.keyFor(jws)
    } catch (err) {
      if (err instanceof JwksUnavailableError) return { identity: null, reason: 'unavailable' }
      throw err
    }
    if (!key || !verifyIdpJws(jws, key)) return { identity: null, reason: 'invalid' }
    const outcome = this.claims(jws.payload)
    if (outcome.identity) this.remember(raw, outcome.identity)
    return outcome
  }

  private keyFor(jws: IdpJws): Promise<IdpKey | null> | IdpKey | null {
    if (jws.alg === 'HS256') return this.secret
    if (!this.keys || jws.kid === null) return null
    return this.keys.get(jws.kid)
  }

  private claims(c: Record<string, unknown>): IdpOutcome {
    const now = this.now()
    const skew = this.settings.clockSkewS * 1000
    const invalid = { identity: null, reason: 'invalid' } as const
    if (c.iss !== this.settings.issuer) return invalid
    const aud = c.aud
    if (!(aud === this.settings.audience || (Array.isArray(aud) && aud.includes(this.settings.audience)))) return invalid
    if (!isTime(c.exp)) return invalid
    if (c.nbf !== undefined && (!isTime(c.nbf) || c.nbf * 1000 > now + skew)) return invalid
    if (c.iat !== undefined && (!isTime(c.iat) || c.iat * 1000 > now + skew)) return invalid
    if (typeof c.sub !== 'string' || c.sub.length === 0 || c.sub.length > MAX_SUBJECT) return invalid
    if (c.exp * 1000 + skew <= now) return { identity: null, reason: 'expired' }
    const email =
      typeof c.email === 'string' && c.email.length <= MAX_EMAIL && c.email.includes('@') ? c.email.toLowerCase() : null
    const meta =
      c.user_metadata !== null && typeof c.user_metadata === 'object' ? (c.user_metadata as Record<string, unknown>) : {}
    return {
      identity: {
        issuer: c.iss,
        subject: c.sub,
        email,
        emailVerified: email !== null && (c.email_verified === true || meta.email_verified === true),
        expiresAt: c.exp * 1000,
      },
    }
  }

  private remember(raw: string, identity: IdpIdentity): void {
    // Oldest first out: a Map iterates in insertion order.
    if (this.cache.size >= this.cacheSize) this.cache.delete(this.cache.keys().next().value!)
    this.cache.set(raw, identity)
  }
}

const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0 && v < 1e11
