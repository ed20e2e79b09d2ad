/**
 * @module auth/credentials
 * Resolves a presented opaque credential to a principal: SHA-256 of the token, then an in-process
 * cache, then (cluster mode) the shared cache in Redis, then Postgres. The database lookup runs
 * under the `token_lookup` RLS policy, which shows a row only to a transaction that names that
 * row's hash (sql/0001_foundation.sql).
 *
 * Revocation is written to Postgres first (the authority), then `revoked()` drops the tokens from
 * this process's cache and, in cluster mode, tombstones them in Redis and publishes their hashes,
 * on which every instance drops them too. A tombstone beats any concurrent write of a lookup made
 * before the revocation, so Redis never serves a revoked token. Without Redis, or when the
 * publication fails, other instances notice when their cached entry expires (`ttlMs`); an entry
 * taken from Redis is cached no longer than it had left there, so that bound holds as well. A
 * revoked deploy token is retired, not refused (issue 10): Postgres says so, as a tombstone in
 * Redis sends the lookup there.
 *
 * Each token's use (`use_count`, `last_used_at`, `last_used_ip`) is counted apart from the cache
 * and written in batches (`lastUsedEveryMs`, a flush timer, `close`).
 *
 * Longer than ~400 lines on purpose: the front door for every credential family, the opaque
 * cache, its Redis sharing and the usage counter share one lifecycle of an entry (a revocation
 * must reach all of them at once), and split across files that invariant would be harder to see.
 */
import { withOrg, withSettings, type Sql } from '../infra/db.ts'
import type { Logger } from '../infra/log.ts'
import type { Metrics } from '../infra/metrics.ts'
import { hashToken, isOpaqueToken, type TokenKind } from './opaque/format.ts'
import { typeOfToken } from './jwt/hierarchy.ts'
import type { JwtPrincipal, TokenValidator } from './jwt/validator.ts'

/** An opaque credential (qk_, qt_deploy_, qt_dk_, qt_sk_, qt_pk_). */
export interface OpaquePrincipal {
  orgId: string
  tokenId: string
  kind: TokenKind
  scopes: readonly string[]
  /**
   * The machine a service token minted at registration is bound to (`api_tokens.machine_id`,
   * fixed for the token's life, so safe to cache); null for every other credential. Ingest
   * attributes events to it (issue 9).
   */
  machineId: string | null
  /**
   * A revoked deploy token (issue 10, SPEC §3.2): still accepted for the daemon's calls on the
   * machines it registered, refused everything else (src/http/permissions.ts,
   * src/features/machines/service.ts). False for every other credential.
   */
  retired: boolean
}

export type MemberRole = 'owner' | 'admin' | 'analyst' | 'viewer'

/**
 * A person signed in through the org's identity provider (issue 10), as a member of one org.
 * What they may do follows from `role` (src/http/permissions.ts), never from scopes: `scopes` is
 * empty, so a route that checks scopes itself refuses people until it knows about roles.
 */
export interface MemberPrincipal {
  kind: 'member'
  orgId: string
  memberId: string
  /** The member id: audit and logs name every principal by `tokenId`. */
  tokenId: string
  role: MemberRole
  email: string
  scopes: readonly string[]
}

/** Whoever presented an accepted credential: an opaque token, a verified JWT, or a person. */
export type Principal = OpaquePrincipal | JwtPrincipal | MemberPrincipal

/**
 * Outcome of `authenticate`: `expired` only for a genuine, correctly signed token past its `exp`;
 * for people, `unavailable` (their provider's keys cannot be loaded), `not_a_member` (a genuine
 * identity with no membership, or none in the org asked for) and `org_required` (members of
 * several orgs must say which, `orgs` listing theirs).
 */
export type AuthOutcome =
  | { principal: Principal }
  | { principal: null; reason: 'invalid' | 'expired' | 'unavailable' | 'not_a_member' }
  | { principal: null; reason: 'org_required'; orgs: string[] }

/** Where a request came from, for the audit log (src/http/request-context.ts fills it). */
export interface RequestOrigin {
  id: string
  /** The client: the peer address, or the one the outermost trusted proxy saw (TRUST_PROXY_HOPS). */
  sourceIp: string | null
  userAgent: string | null
}

/** What a request says besides the token: the org a person names, where it came from. */
export interface PeopleContext {
  org?: string
  request?: RequestOrigin
}

/** Signs people in: their provider's token, and the org they name (src/features/members). */
export interface PeopleAuthenticator {
  authenticate(raw: string, context: PeopleContext): Promise<AuthOutcome>
  /** The org's members changed (a role, a removal): forget what was remembered of them, everywhere. */
  membersChanged(orgId: string): Promise<void>
}

interface Entry {
  principal: OpaquePrincipal | null
  expiresAt: number
  /** Hard end of validity (token expiry), independent of the cache TTL. */
  validUntil: number
}

/** One token's use since its last write to `api_tokens` (kept apart from the cache's entries, which come and go). */
interface Usage {
  orgId: string
  uses: number
  ip: string | null
  writtenAt: number
}

/** The shared lookup cache and revocation channel of cluster mode (src/infra/redis.ts). */
export interface SharedTokenCache {
  getToken(hashHex: string): Promise<'revoked' | { value: unknown; ttlMs: number } | null>
  putToken(hashHex: string, value: unknown, ttlMs: number): Promise<void>
  revokeTokens(hashHexes: readonly string[]): Promise<void>
  onRevoked(handler: (hashHex: string) => void): void
  /** Called when revocations may have been missed (the subscriber reconnected). */
  onResync(handler: () => void): void
}

/** A token just revoked in Postgres, as returned by `revokeTokens` (src/features/api-tokens/repo.ts). */
export interface RevokedToken {
  id: string
  hash: Buffer
}

/** The principal as stored in Redis: short keys, `u` is the token expiry in ms or null. */
interface SharedEntry {
  o: string
  t: string
  k: TokenKind
  s: string[]
  u: number | null
  /** The bound machine id (absent in entries written before it existed: read Postgres instead). */
  m?: string | null
  /** Retired deploy token (absent in entries written before it existed: read Postgres instead). */
  r?: boolean
}

/** A lookup slower than this is not written to Redis: its Postgres read may predate a revocation. */
const SHARED_WRITE_MAX_LOOKUP_MS = 5_000

export interface CredentialResolverOptions {
  ttlMs?: number
  negativeTtlMs?: number
  maxEntries?: number
  /** Minimum gap between two writes of one token's `last_used_at`, `last_used_ip` and `use_count`. */
  lastUsedEveryMs?: number
  /** Cluster mode: Redis. */
  shared?: SharedTokenCache | null
  metrics?: Metrics
  /**
   * JWT-bearing tokens (`qt_app_` … `qt_override_`) go to this validator (src/auth/jwt/validator.ts).
   * Required, so that no composition can forget it (issue 14); null refuses every JWT.
   */
  jwt: TokenValidator | null
  /** People's tokens from the org's identity provider; absent, they are refused like any unknown token. */
  people?: PeopleAuthenticator | null
}

/** A JWT that is not ours (no `qt_` prefix): three base64url parts, the first a JSON object. */
const FOREIGN_JWT = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

export class CredentialResolver {
  readonly #cache = new Map<string, Entry>()
  readonly #revokedHandlers: ((hashHexes: readonly string[]) => void)[] = []
  readonly #usage = new Map<string, Usage>()
  readonly #flusher: ReturnType<typeof setInterval>
  /** Bumped by every invalidation: a lookup that overlapped one must not cache what it read. */
  #generation = 0
  readonly #ttl: number
  readonly #negativeTtl: number
  readonly #max: number
  readonly #lastUsedEvery: number
  readonly #shared: SharedTokenCache | null
  readonly #metrics: Metrics | undefined
  readonly #jwt: TokenValidator | null
  readonly #people: PeopleAuthenticator | null

  private readonly sql: Sql
  private readonly log: Logger

  constructor(sql: Sql, log: Logger, options: CredentialResolverOptions) {
    this.sql = sql
    this.log = log
    this.#ttl = options.ttlMs ?? 30_000
    this.#negativeTtl = options.negativeTtlMs ?? 5_000
    this.#max = options.maxEntries ?? 10_000
    this.#lastUsedEvery = options.lastUsedEveryMs ?? 60_000
    this.#shared = options.shared ?? null
    this.#metrics = options.metrics
    this.#jwt = options.jwt
    this.#people = options.people ?? null
    this.#shared?.onRevoked((hashHex) => this.#evict(hashHex))
    this.#shared?.onResync(() => this.#clear())
    // Unref'd: a resolver never keeps a process alive (tests, the CLI).
    this.#flusher = setInterval(() => void this.flushUsage(), Math.max(this.#lastUsedEvery, 1_000))
    this.#flusher.unref()
  }

  /**
   * Any accepted credential: opaque tokens here, `qt_` JWTs through the validator, people's
   * provider tokens through `people` (with the org a person names, X-Quint-Org).
   */
  async authenticate(raw: string, people: PeopleContext = {}): Promise<AuthOutcome> {
    if (typeOfToken(raw)) {
      if (!this.#jwt) return { principal: null, reason: 'invalid' }
      const r = await this.#jwt.validate(raw)
      return r.ok ? { principal: r.principal } : { principal: null, reason: r.reason }
    }
    if (FOREIGN_JWT.test(raw))
      return this.#people ? this.#people.authenticate(raw, people) : { principal: null, reason: 'invalid' }
    const principal = await this.resolve(raw, people.request?.sourceIp ?? null)
    return principal ? { principal } : { principal: null, reason: 'invalid' }
  }

  /** An org's members changed: people's sign-ins remembered for it are forgotten here. */
  async membersChanged(orgId: string): Promise<void> {
    await this.#people?.membersChanged(orgId)
  }

  /**
   * The principal for a raw opaque token, or null when it is unknown, revoked (a deploy token:
   * retired, see `OpaquePrincipal.retired`) or expired. `ip` is the caller's, for `last_used_ip`.
   */
  async resolve(raw: string, ip: string | null = null, countUse = true): Promise<OpaquePrincipal | null> {
    if (!isOpaqueToken(raw)) return null
    const hash = hashToken(raw)
    const key = hash.toString('hex')
    const now = Date.now()
    let entry = this.#cache.get(key)
    if (!entry || entry.expiresAt <= now) {
      const generation = this.#generation
      const fromShared = await this.#loadShared(key, now)
      entry = fromShared ?? (await this.#load(hash, now))
      if (generation === this.#generation) {
        this.#remember(key, entry)
        if (this.#shared && !fromShared && entry.principal && Date.now() - now < SHARED_WRITE_MAX_LOOKUP_MS) {
          this.#share(this.#shared, key, entry)
        }
      }
    }
    if (!entry.principal || entry.validUntil <= now) return null
    if (countUse) this.#used(entry.principal, ip, now)
    return entry.principal
  }

  /**
   * The one way a revocation takes effect, called after the Postgres commit that revoked the
   * tokens: refused from the next request here, and (cluster mode) on every instance. A Redis
   * failure is logged and counted, not thrown: the revocation is committed, and the other
   * instances' caches expire within `ttlMs`. Revoking again re-publishes.
   */
  async revoked(tokens: readonly RevokedToken[]): Promise<void> {
    if (tokens.length === 0) return
    const hashes = tokens.map((t) => t.hash.toString('hex'))
    for (const h of hashes) this.#evict(h)
    if (!this.#shared) return
    try {
      await this.#shared.revokeTokens(hashes)
    } catch (err) {
      this.#metrics?.redisFallbacks.inc({ op: 'token_revoke' })
      this.log.error(
        { err, token_ids: tokens.map((t) => t.id) },
        'revocation committed but not published to Redis; other instances refuse the token when their cache expires',
      )
    }
  }

  /**
   * Called with the hashes of opaque tokens revoked here or, in cluster mode, on any instance:
   * what holds a connection open on a credential (the fleet stream) ends it at once.
   */
  onRevoked(handler: (hashHexes: readonly string[]) => void): void {
    this.#revokedHandlers.push(handler)
  }

  #evict(hashHex: string): void {
    this.#generation++
    this.#cache.delete(hashHex)
    for (const h of this.#revokedHandlers) h([hashHex])
  }

  #clear(): void {
    this.#generation++
    this.#cache.clear()
  }

  /** The entry from Redis, or null to go to Postgres (a miss, or Redis failing). */
  async #loadShared(key: string, now: number): Promise<Entry | null> {
    if (!this.#shared) return null
    let hit: Awaited<ReturnType<SharedTokenCache['getToken']>>
    try {
      hit = await this.#shared.getToken(key)
    } catch (err) {
      this.#metrics?.redisFallbacks.inc({ op: 'token_lookup' })
      this.log.debug({ err }, 'shared token cache unavailable; reading Postgres')
      return null
    }
    if (hit === null) return null
    // Revoked: Postgres decides, since a revoked deploy token is retired, not refused. The
    // tombstone still keeps Redis from serving what was cached before the revocation.
    if (hit === 'revoked') return null
    const v = hit.value as SharedEntry
    if (typeof v?.o !== 'string' || typeof v.t !== 'string' || !Array.isArray(v.s) || v.m === undefined || v.r === undefined) {
      return null
    }
    return {
      principal: Object.freeze({
        orgId: v.o,
        tokenId: v.t,
        kind: v.k,
        scopes: Object.freeze([...v.s]),
        machineId: v.m,
        retired: v.r,
      }),
      expiresAt: now + Math.min(this.#ttl, hit.ttlMs),
      validUntil: v.u ?? Number.POSITIVE_INFINITY,
    }
  }

  #share(shared: SharedTokenCache, key: string, entry: Entry): void {
    const p = entry.principal!
    const value: SharedEntry = {
      o: p.orgId,
      t: p.tokenId,
      k: p.kind,
      s: [...p.scopes],
      u: Number.isFinite(entry.validUntil) ? entry.validUntil : null,
      m: p.machineId,
      r: p.retired,
    }
    shared.putToken(key, value, this.#ttl).catch((err) => {
      this.#metrics?.redisFallbacks.inc({ op: 'token_cache_write' })
      this.log.debug({ err }, 'shared token cache write failed')
    })
  }

  async #load(hash: Buffer, now: number): Promise<Entry> {
    const rows = await withSettings(
      this.sql,
      { 'app.lookup_token_hash': hash.toString('hex') },
      (tx) =>
        tx<
          {
            org_id: string
            id: string
            kind: TokenKind
            scopes: string[]
            expires_at: Date | null
            revoked_at: Date | null
            machine_id: string | null
          }[]
        >`
        select org_id, id, kind, scopes, expires_at, revoked_at, machine_id
          from api_tokens where token_hash = ${hash}`,
    )
    const row = rows[0]
    // A revoked deploy token is retired, not refused: its machines keep working (SPEC §3.2).
    const retired = row?.revoked_at != null && row.kind === 'install'
    const usable = row && (!row.revoked_at || retired) && (!row.expires_at || row.expires_at.getTime() > now)
    return usable
      ? {
          principal: Object.freeze({
            orgId: row.org_id,
            tokenId: row.id,
            kind: row.kind,
            scopes: Object.freeze([...row.scopes]),
            machineId: row.machine_id,
            retired,
          }),
          expiresAt: now + this.#ttl,
          validUntil: row.expires_at?.getTime() ?? Number.POSITIVE_INFINITY,
        }
      : this.#refused(now)
  }

  #refused(now: number): Entry {
    return { principal: null, expiresAt: now + this.#negativeTtl, validUntil: 0 }
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

  /**
   * Counts a use; at most every `lastUsedEveryMs` per token, adds the uses counted since to the
   * row (the first use at once, so `last_used_at` is fresh). The rest is written by the flush
   * timer every `lastUsedEveryMs` and by `close` at shutdown; a process that dies loses at most
   * that much (a usage figure, not a record).
   */
  #used(p: OpaquePrincipal, ip: string | null, now: number): void {
    let u = this.#usage.get(p.tokenId)
    if (!u) {
      if (this.#usage.size >= this.#max) this.#flushOldest()
      this.#usage.set(p.tokenId, (u = { orgId: p.orgId, uses: 0, ip: null, writtenAt: 0 }))
    }
    u.uses++
    if (ip !== null) u.ip = ip
    if (now - u.writtenAt >= this.#lastUsedEvery) {
      u.writtenAt = now
      void this.#touch(p.tokenId, u)
      u.uses = 0
    }
  }

  #flushOldest(): void {
    const [id, u] = this.#usage.entries().next().value!
    this.#usage.delete(id)
    if (u.uses > 0) void this.#touch(id, u)
  }

  /** Writes every count not yet written; forgets tokens idle since their last write. */
  async flushUsage(): Promise<void> {
    const now = Date.now()
    const writes: Promise<void>[] = []
    for (const [id, u] of this.#usage) {
      if (u.uses > 0) {
        writes.push(this.#touch(id, u))
        u.uses = 0
        u.writtenAt = now
      } else if (now - u.writtenAt >= this.#lastUsedEvery) {
        this.#usage.delete(id)
      }
    }
    await Promise.all(writes)
  }

  /** Stops the flush timer and writes what was counted (shutdown, before the pools close). */
  async close(): Promise<void> {
    clearInterval(this.#flusher)
    await this.flushUsage()
  }

  /** Adds `uses` to the token's row. Never throws: a failed write is logged at debug and lost. */
  #touch(tokenId: string, u: Usage): Promise<void> {
    const { uses, ip } = u
    return withOrg(
      this.sql,
      u.orgId,
      (tx) => tx`
        update api_tokens set last_used_at = now(), use_count = use_count + ${uses},
               last_used_ip = coalesce(${ip}::inet, last_used_ip)
         where id = ${tokenId}`,
    ).then(
      () => {},
      (err) => this.log.debug({ err }, 'token usage update failed'),
    )
  }
}

/** Scope check: `*` and `admin` grant everything; otherwise the scope must be listed. */
export function hasScope(principal: Principal, scope: string): boolean {
  return principal.scopes.some((s) => s === '*' || s === 'admin' || s === scope)
}
