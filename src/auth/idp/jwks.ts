/**
 * @module auth/idp/jwks
 * The identity provider's signing keys (issue 10): its JWKS, found through OIDC discovery
 * (`<issuer>/.well-known/openid-configuration` → `jwks_uri`) or named by `OIDC_JWKS_URL`.
 *
 * - Cached, and fetched again once older than `maxAgeMs` (the request that finds it stale is
 *   answered from the cache while the fetch runs), so a key the provider removed stops verifying
 *   within that bound and a rotated-in key needs no restart.
 * - A token naming a `kid` the cache lacks (a rotation) fetches at once, but at most once every
 *   `minRefreshMs`: a stream of made-up `kid`s cannot make us hammer the provider. Concurrent
 *   fetches are one.
 * - Each key keeps the one algorithm it is for: `EC` P-256 → ES256, `RSA` ≥ 2048 bits → RS256
 *   (a key whose `alg` says otherwise, whose `use` is not `sig`, or of any other type, is skipped).
 * - The JWKS and discovery URLs must be HTTPS, except on a loopback host (tests, sidecars); the
 *   answers are bounded in time and size.
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
  /** Called after a fetch that dropped keys: tokens verified with them must not stay cached. */
  onKeysRemoved: () => void = () => {}

  private readonly options: JwksOptions

  constructor(options: JwksOptions) {
    this.options = options
    this.now = options.now ?? Date.now
  }

  /**
   * The key for `kid`, or null when the keys (fetched again if allowed) have none. Throws
   * JwksUnavailableError while no fetch has ever succeeded: not the token's fault. Every fetch,
   * whatever triggered it, waits `minRefreshMs` after the previous attempt, so neither unknown
   * `kid`s nor a provider that is down make us call it on every request.
   */
  async get(kid: string): Promise<IdpKey | null> {
    const loaded = () => this.fetchedAt !== -Infinity
    const mayFetch = () => this.now() - this.attemptedAt >= this.options.minRefreshMs
    if (this.now() - this.fetchedAt >= this.options.maxAgeMs && mayFetch()) {
      const refreshing = this.refresh().catch(() => {})
      // Stale keys answer while they are fetched again; no keys at all have to wait.
      if (!loaded()) await refreshing
    } else if (!loaded() && this.inflight) {
      await this.inflight.catch(() => {})
    }
    if (!this.keys.has(kid)) {
      // A kid we lack may be a rotation: look once (or wait for the fetch already running).
      if (mayFetch()) await this.refresh().catch(() => {})
      else if (this.inflight) await this.inflight.catch(() => {})
    }
    if (!loaded()) throw new JwksUnavailableError('the identity provider keys could not be loaded')
    return this.keys.get(kid) ?? null
  }

  /** Fetches the keys now (one fetch at a time); failures keep the previous keys. */
  refresh(): Promise<void> {
    this.inflight ??= this.load().finally(() => {
      this.inflight = null
    })
    return this.inflight
  }

  private async load(): Promise<void> {
    this.attemptedAt = this.now()
    try {
      const url = this.options.jwksUrl ?? (await this.discover())
      const doc = await getJson(url, this.options.timeoutMs ?? 5_000)
      const keys = parseJwks(doc, this.options.log)
      const removed = [...this.keys.keys()].some((kid) => !keys.has(kid))
      this.keys = keys
      this.fetchedAt = this.now()
      if (removed) this.onKeysRemoved()
    } catch (err) {
      this.options.log.warn({ err: { message: (err as Error).message } }, 'identity provider keys not refreshed')
      throw err
    }
  }

  private async discover(): Promise<string> {
    const issuer = this.options.issuer.replace(/\/+$/, '')
    const doc = await getJson(`${issuer}/.well-known/openid-configuration`, this.options.timeoutMs ?? 5_000)
    // OIDC Discovery §4.3: the document must name the issuer it was asked for.
    if (doc.issuer !== this.options.issuer) throw new Error('discovery document names another issuer')
    if (typeof doc.jwks_uri !== 'string') throw new Error('discovery document has no jwks_uri')
    return doc.jwks_uri
  }
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
      return bits >= 2048 ? { alg: 'RS256', key } : null
    }
  } catch {
    return null
  }
  return null
}

async function getJson(url: string, timeoutMs: number): Promise<Record<string, unknown>> {
  const u = new URL(url)
  const loopback = u.hostname === '127.0.0.1' || u.hostname === '[::1]' || u.hostname === 'localhost'
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback))
    throw new Error(`refusing a non-HTTPS key URL: ${u.origin}`)
  const res = await fetch(u, {
    signal: AbortSignal.timeout(timeoutMs),
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
