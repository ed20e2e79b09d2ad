/**
 * @module auth/idp/jwks
 * The identity provider's signing keys (issue 10): its JWKS, found through OIDC discovery
 * (`<issuer>/.well-known/openid-configuration` → `jwks_uri`) or named by `OIDC_JWKS_URL`.
 *
 * - Cached, and fetched again once older than `maxAgeMs` (the request that finds it stale is
 *   answered from the cache while the fetch runs), so a key the provider removed or replaced
 *   stops verifying within that bound, for tokens already verified too, and a rotated-in key
 *   needs no restart.
 * - A token naming a `kid` the cache lacks (a rotation) fetches at once, but at most once every
 *   `minRefreshMs`: a stream of made-up `kid`s cannot make us hammer the provider. Concurrent
 *   fetches are one.
 * - Each key keeps the one algorithm it is for: `EC` P-256 → ES256, `RSA` of 2048–8192 bits → RS256
 *   (a key whose `alg` says otherwise, whose `use` is not `sig`, or of any other type, is skipped).
 * - The JWKS and discovery URLs must be HTTPS, unless the issuer itself is plain HTTP on a
 *   loopback host (tests, sidecars); redirects are refused; answers are bounded in time and size.
 * - Keys not refreshed for `maxStaleMs` (the provider down) are no longer used.
 */
import { createPublicKey, type JsonWebKey } from 'node:crypto'
import type { Logger } from '../../infra/log.ts'
import type { IdpKey } from './jws.ts'

export interface JwksOptions {
  /** Discovery from the issuer, unless `jwksUrl` names the keys directly. */
  issuer: string
  jwksUrl?: string
  maxAgeMs: number
  minRefreshMs: number
  /**
   * Keys not fetched successfully for this long are not used any more (`unavailable`): a provider
   * down for a day must not leave keys it may have revoked meanwhile in force forever.
   */
  maxStaleMs: number
  timeoutMs?: number
  log: Logger
  now?: () => number
}

const MAX_DOCUMENT_BYTES = 512 * 1024

export class JwksUnavailableError extends Error {
  override name = 'JwksUnavailableError'
}

export class JwksKeySet {
  private keys = new Map<string, IdpKey>()
  private fetchedAt = -Infinity
  private attemptedAt = -Infinity
  private inflight: Promise<void> | null = null
  private readonly now: () => number
  private readonly options: JwksOptions
  /** Called after a fetch that dropped or replaced a key: tokens verified with it must not stay cached. */
  onKeysChanged: () => void = () => {}

  constructor(options: JwksOptions) {
    this.options = options
    this.now = options.now ?? Date.now
  }

  /**
   * The key for `kid`, or null when the keys (fetched again if allowed) have none. Throws
   * JwksUnavailableError while no usable keys are held (never fetched, or stale past
   * `maxStaleMs`): not the token's fault. Every fetch, whatever triggered it, waits
   * `minRefreshMs` after the previous attempt, so neither unknown `kid`s nor a provider that is
   * down make us call it on every request.
   */
  async get(kid: string): Promise<IdpKey | null> {
    if (this.refreshIfStale() && !this.usable()) await this.inflight?.catch(() => {})
    else if (!this.usable() && this.inflight) await this.inflight.catch(() => {})
    if (!this.keys.has(kid)) {
      // A kid we lack may be a rotation: look once (or wait for the fetch already running).
      if (this.mayFetch()) await this.refresh().catch(() => {})
      else if (this.inflight) await this.inflight.catch(() => {})
    }
    if (!this.usable()) throw new JwksUnavailableError('the identity provider keys could not be loaded')
    return this.keys.get(kid) ?? null
  }

  /**
   * For a token verified earlier: true while `key` is still the one held for `kid` and the keys
   * are usable. Synchronous (a cache hit stays a Map lookup); a stale set is fetched again in the
   * background, so a removed or replaced key stops working within `maxAgeMs` for cached tokens too.
   */
  current(kid: string, key: IdpKey): boolean {
    this.refreshIfStale()
    return this.usable() && this.keys.get(kid) === key
  }

  /** Fetches the keys now (one fetch at a time); failures keep the previous keys. */
  refresh(): Promise<void> {
    this.inflight ??= this.load().finally(() => {
      this.inflight = null
    })
    return this.inflight
  }

  private usable(): boolean {
    return this.now() - this.fetchedAt < this.options.maxStaleMs
  }

  private mayFetch(): boolean {
    return this.now() - this.attemptedAt >= this.options.minRefreshMs
  }

  /** Starts a fetch when the keys are older than `maxAgeMs` and one is allowed; true if it did. */
  private refreshIfStale(): boolean {
    if (this.now() - this.fetchedAt < this.options.maxAgeMs || !this.mayFetch()) return false
    this.refresh().catch(() => {})
    return true
  }

  private async load(): Promise<void> {
    this.attemptedAt = this.now()
    try {
      const url = this.options.jwksUrl ?? (await this.discover())
      const doc = await getJson(url, this.options)
      const keys = parseJwks(doc, this.options.log)
      // A kid gone, or the same kid with other key material (a rotation after a compromise).
      const changed = [...this.keys].some(([kid, old]) => !sameKey(old, keys.get(kid)))
      // Keep the objects of unchanged keys: cached tokens compare keys by identity.
      for (const [kid, key] of keys) if (sameKey(this.keys.get(kid), key)) keys.set(kid, this.keys.get(kid)!)
      this.keys = keys
      this.fetchedAt = this.now()
      if (changed) this.onKeysChanged()
    } catch (err) {
      this.options.log.warn({ err: { message: (err as Error).message } }, 'identity provider keys not refreshed')
      throw err
    }
  }

  private async discover(): Promise<string> {
    const issuer = this.options.issuer.replace(/\/+$/, '')
    const doc = await getJson(`${issuer}/.well-known/openid-configuration`, this.options)
    // OIDC Discovery §4.3: the document must name the issuer it was asked for.
    if (doc.issuer !== this.options.issuer) throw new Error('discovery document names another issuer')
    if (typeof doc.jwks_uri !== 'string') throw new Error('discovery document has no jwks_uri')
    return doc.jwks_uri
  }
}

function sameKey(a: IdpKey | undefined, b: IdpKey | undefined): boolean {
  if (!a || !b || a.alg !== b.alg || a.alg === 'HS256' || b.alg === 'HS256') return false
  return a.key.equals(b.key)
}

/** Keys by kid; every unusable key is skipped (and logged), never fatal for the others. */
export function parseJwks(doc: Record<string, unknown>, log: Logger): Map<string, IdpKey> {
  const out = new Map<string, IdpKey>()
  if (!Array.isArray(doc.keys)) throw new Error('JWKS has no keys array')
  for (const jwk of doc.keys as unknown[]) {
    if (jwk === null || typeof jwk !== 'object') continue
    const k = jwk as Record<string, unknown>
    const kid = typeof k.kid === 'string' && k.kid.length > 0 && k.kid.length <= 256 ? k.kid : null
    const key = kid ? keyOf(k) : null
    if (!kid || !key) {
      log.warn({ kid, kty: typeof k.kty === 'string' ? k.kty : null }, 'identity provider key skipped')
      continue
    }
    out.set(kid, key)
  }
  return out
}

function keyOf(k: Record<string, unknown>): IdpKey | null {
  if (k.use !== undefined && k.use !== 'sig') return null
  // The public members only: a JWK that also carries private ones is still just a public key here.
  const publicOnly = Object.fromEntries(
    ['kty', 'crv', 'x', 'y', 'n', 'e'].filter((m) => typeof k[m] === 'string').map((m) => [m, k[m] as string]),
  ) as JsonWebKey
  try {
    if (k.kty === 'EC' && k.crv === 'P-256' && (k.alg === undefined || k.alg === 'ES256')) {
      return { alg: 'ES256', key: createPublicKey({ key: publicOnly, format: 'jwk' }) }
    }
    if (k.kty === 'RSA' && (k.alg === undefined || k.alg === 'RS256')) {
      const key = createPublicKey({ key: publicOnly, format: 'jwk' })
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
      return bits >= 2048 && bits <= 8192 ? { alg: 'RS256', key } : null
    }
  } catch {
    return null
  }
  return null
}

/**
 * Plain HTTP only when the configured issuer is itself plain HTTP on a loopback address (a test
 * stand-in or a sidecar the operator chose); every other key or discovery URL must be HTTPS.
 */
export function keyUrlAllowed(url: string, issuer: string): boolean {
  let u: URL
  let i: URL
  try {
    u = new URL(url)
    i = new URL(issuer)
  } catch {
    return false
  }
  if (u.protocol === 'https:') return true
  const loopback = (x: URL) => x.hostname === '127.0.0.1' || x.hostname === '[::1]' || x.hostname === 'localhost'
  return u.protocol === 'http:' && loopback(u) && i.protocol === 'http:' && loopback(i)
}

async function getJson(url: string, options: Pick<JwksOptions, 'issuer' | 'timeoutMs'>): Promise<Record<string, unknown>> {
  if (!keyUrlAllowed(url, options.issuer)) throw new Error('refusing a key URL that is not HTTPS')
  const u = new URL(url)
  const res = await fetch(u, {
    signal: AbortSignal.timeout(options.timeoutMs ?? 5_000),
    redirect: 'error',
    headers: { accept: 'application/json' },
  })
  if (!res.ok) throw new Error(`${u.origin}${u.pathname} answered ${res.status}`)
  // Read up to the cap, never the whole of an endless answer.
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of res.body ?? []) {
    size += chunk.byteLength
    if (size > MAX_DOCUMENT_BYTES) {
      await res.body?.cancel().catch(() => {})
      throw new Error(`${u.origin}${u.pathname} answered more than ${MAX_DOCUMENT_BYTES} bytes`)
    }
    chunks.push(chunk)
  }
  const value: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object')
  return value as Record<string, unknown>
}
