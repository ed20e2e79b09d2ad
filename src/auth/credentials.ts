/**
 * @module auth/credentials
 * Resolves a presented opaque credential to a principal: SHA-256 of the token, then an in-process
 * cache, then Postgres. The database lookup runs under the `token_lookup` RLS policy, which shows
 * a row only to a transaction that names that row's hash (sql/0001_foundation.sql).
 *
 * Revocation through this process takes effect on the next request (the entry is dropped at
 * once); a revocation made elsewhere is picked up when the cached entry expires (`ttlMs`).
 */
import { withOrg, withSettings, type Sql } from '../infra/db.ts'
import type { Logger } from '../infra/log.ts'
import { hashToken, isOpaqueToken, type TokenKind } from './opaque-tokens.ts'

export interface Principal {
  orgId: string
  tokenId: string
  kind: TokenKind
  scopes: readonly string[]
}

interface Entry {
  principal: Principal | null
  expiresAt: number
  /** Hard end of validity (token expiry), independent of the cache TTL. */
  validUntil: number
  lastUsedWrite: number
}

export interface CredentialResolverOptions {
  ttlMs?: number
  negativeTtlMs?: number
  maxEntries?: number
  /** Minimum gap between two `last_used_at` writes for one token. */
  lastUsedEveryMs?: number
}

export class CredentialResolver {
  readonly #cache = new Map<string, Entry>()
  /** Bumped by every invalidation: a lookup that overlapped one must not cache what it read. */
  #generation = 0
  readonly #ttl: number
  readonly #negativeTtl: number
  readonly #max: number
  readonly #lastUsedEvery: number

  private readonly sql: Sql
  private readonly log: Logger

  constructor(sql: Sql, log: Logger, options: CredentialResolverOptions = {}) {
    this.sql = sql
    this.log = log
    this.#ttl = options.ttlMs ?? 30_000
    this.#negativeTtl = options.negativeTtlMs ?? 5_000
    this.#max = options.maxEntries ?? 10_000
    this.#lastUsedEvery = options.lastUsedEveryMs ?? 60_000
  }

  /** The principal for a raw token, or null when it is unknown, revoked or expired. */
  async resolve(raw: string): Promise<Principal | null> {
    if (!isOpaqueToken(raw)) return null
    const hash = hashToken(raw)
    const key = hash.toString('hex')
    const now = Date.now()
    let entry = this.#cache.get(key)
    if (!entry || entry.expiresAt <= now) {
      const generation = this.#generation
      entry = await this.#load(hash, now)
      if (generation === this.#generation) this.#remember(key, entry)
    }
    if (!entry.principal || entry.validUntil <= now) return null
    if (now - entry.lastUsedWrite >= this.#lastUsedEvery) {
      entry.lastUsedWrite = now
      this.#touch(entry.principal)
    }
    return entry.principal
  }

  /** Drops every cached entry of a token, so its revocation applies to the next request. */
  invalidate(tokenId: string): void {
    this.#generation++
    for (const [key, entry] of this.#cache) {
      if (entry.principal?.tokenId === tokenId) this.#cache.delete(key)
    }
  }

  async #load(hash: Buffer, now: number): Promise<Entry> {
    const rows = await withSettings(this.sql, { 'app.lookup_token_hash': hash.toString('hex') }, (tx) =>
      tx<{ org_id: string; id: string; kind: TokenKind; scopes: string[]; expires_at: Date | null; revoked_at: Date | null }[]>`
        select org_id, id, kind, scopes, expires_at, revoked_at
          from api_tokens where token_hash = ${hash}`,
    )
    const row = rows[0]
    const usable = row && !row.revoked_at && (!row.expires_at || row.expires_at.getTime() > now)
    return usable
      ? {
          principal: Object.freeze({ orgId: row.org_id, tokenId: row.id, kind: row.kind, scopes: Object.freeze([...row.scopes]) }),
          expiresAt: now + this.#ttl,
          validUntil: row.expires_at?.getTime() ?? Number.POSITIVE_INFINITY,
          lastUsedWrite: 0,
        }
      : { principal: null, expiresAt: now + this.#negativeTtl, validUntil: 0, lastUsedWrite: 0 }
  }

  #remember(key: string, entry: Entry): void {
    this.#cache.delete(key)
    if (this.#cache.size >= this.#max) {
      // Map iteration order is insertion order: drop the oldest entry.
      const oldest = this.#cache.keys().next().value
      if (oldest !== undefined) this.#cache.delete(oldest)
    }
    this.#cache.set(key, entry)
  }

  #touch(p: Principal): void {
    withOrg(this.sql, p.orgId, (tx) =>
      tx`update api_tokens set last_used_at = now() where id = ${p.tokenId}`,
    ).catch((err) => this.log.debug({ err }, 'last_used_at update failed'))
  }
}

/** Scope check: `*` and `admin` grant everything; otherwise the scope must be listed. */
export function hasScope(principal: Principal, scope: string): boolean {
  return principal.scopes.some((s) => s === '*' || s === 'admin' || s === scope)
}
