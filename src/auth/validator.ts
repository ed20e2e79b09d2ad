/**
 * @module auth/validator
 * The hot path for `qt_app_ … qt_override_` tokens (SPEC §4.4):
 *
 *   validated-token cache (SHA-256 of the whole string) → prefix → strict JWS parse (src/auth/jwt.ts)
 *   → key by (sub, kid) → ES256 verify → claims for the type → chain + revocation → principal.
 *
 * Every refusal is `invalid` except a correctly signed token past `exp` (+ skew), which is
 * `expired`; callers answer both with 401 and the same message, and only the code differs.
 *
 * Revocation is keyed on `jti` (never on token bytes: an ECDSA signature re-encoded as (r, n−s)
 * is a different string for the same jti, PITFALLS §2.4) and covers every ancestor. Ancestry is
 * immutable, so it is loaded once per jti and cached long. Revocation state per jti comes from
 * the RevocationFilter when there is one (`false` = definitely not revoked), otherwise or on a
 * filter hit / 'unknown' from Postgres, cached for CONFIRM_TTL_MS. A validated token is cached for
 * at most min(exp, VALIDATED_TTL_MS); every revocation, local or reported by the filter's
 * `onAdded` (another instance, via Redis pub/sub), clears the validated cache and the confirmed
 * states of the revoked jtis. Without a filter and without pub/sub, another instance's revocation
 * takes effect here within VALIDATED_TTL_MS (30 s): the documented SLA of single-process mode.
 */
import { createHash, type KeyObject } from 'node:crypto'
import { isUuid, withOrg, type Sql } from '../infra/db.ts'
import { parseJws, verifyEs256, type ParsedJws } from './jwt.ts'
import type { SigningKeys } from './keys.ts'
import { TTL_S, typeOfToken, type TokenType } from './tokens.ts'

export const VALIDATED_TTL_MS = 30_000
const CONFIRM_TTL_MS = 5_000
const MAX_VALIDATED = 50_000
const MAX_ANCESTRY = 100_000
/** Longest token accepted at all: prefix + header + 16 KiB payload + signature. */
export const MAX_TOKEN_CHARS = 17 * 1024

/** Structural form of src/auth/revocation-filter.ts (owned elsewhere), so this module does not depend on its file. */
export interface RevocationFilterLike {
  check(orgId: string, jti: string): boolean | 'unknown'
  add(entries: readonly { orgId: string; jti: string }[]): Promise<void>
  onAdded(handler: (orgId: string, jti: string) => void): void
  onGeneration?(handler: (generation: string) => void): void
}

export interface JwtPrincipal {
  kind: 'jwt'
  type: TokenType
  orgId: string
  /** The jti; named like the opaque principal's id so audit and logs treat both alike. */
  tokenId: string
  jti: string
  scopes: readonly string[]
  /** Unix seconds. */
  exp: number
  parentJti?: string
  agentId?: string
  sessionId?: string
  rbac?: Record<string, unknown>
  depth?: number
  maxEvents?: number
  eventId?: string
  allowedDecisions?: readonly string[]
  env?: string
}

export type ValidationResult = { ok: true; principal: JwtPrincipal } | { ok: false; reason: 'invalid' | 'expired' }

const INVALID: ValidationResult = Object.freeze({ ok: false, reason: 'invalid' }) as ValidationResult
const EXPIRED: ValidationResult = Object.freeze({ ok: false, reason: 'expired' }) as ValidationResult

/** Scopes each type carries (docs/auth.md). App tokens carry their own `scopes` claim. */
export const TYPE_SCOPES: Record<Exclude<TokenType, 'app'>, readonly string[]> = {
  bearer: Object.freeze(['ingest', 'read']),
  agent: Object.freeze(['ingest']),
  subagent: Object.freeze(['ingest']),
  session: Object.freeze(['ingest']),
  override: Object.freeze(['override']),
}

interface Validated {
  principal: JwtPrincipal
  until: number
}

export interface TokenValidatorOptions {
  clockSkewS: number
  maxDepth: number
  filter?: RevocationFilterLike | null
}

export class TokenValidator {
  readonly #validated = new Map<string, Validated>()
  /** org/jti → ancestors (nearest first), or null when the jti was never issued. */
  readonly #ancestry = new Map<string, readonly string[] | null>()
  /** org/jti → revoked?, confirmed against Postgres. */
  readonly #confirmed = new Map<string, { revoked: boolean; until: number }>()
  /** Bumped by every revocation: a validation that overlapped one must not cache its result. */
  #generation = 0
  readonly #sql: Sql
  readonly #keys: SigningKeys
  readonly #skew: number
  readonly #maxDepth: number
  #filter: RevocationFilterLike | null

  constructor(sql: Sql, keys: SigningKeys, options: TokenValidatorOptions) {
    this.#sql = sql
    this.#keys = keys
    this.#skew = options.clockSkewS
    this.#maxDepth = options.maxDepth
    this.#filter = null
    if (options.filter) this.useFilter(options.filter)
  }

  /** Attaches the revocation filter (cluster-wide bloom); its additions evict our caches. */
  useFilter(filter: RevocationFilterLike): void {
    this.#filter = filter
    filter.onAdded((orgId, jti) => this.evict([{ orgId, jti }]))
    // A new generation may know revocations the old one missed (a rebuild on any instance).
    filter.onGeneration?.(() => this.evict([], { confirmed: true }))
  }

  get filter(): RevocationFilterLike | null {
    return this.#filter
  }

  /** Never throws for any input; a database failure rejects (the caller answers 503). */
  async validate(raw: string): Promise<ValidationResult> {
    if (raw.length > MAX_TOKEN_CHARS) return INVALID
    const type = typeOfToken(raw)
    if (!type) return INVALID
    const cacheKey = createHash('sha256').update(raw).digest('base64')
    const now = Date.now()
    const hit = this.#validated.get(cacheKey)
    if (hit) {
      if (hit.until > now) return { ok: true, principal: hit.principal }
      this.#validated.delete(cacheKey)
    }
    const generation = this.#generation
    const result = await this.#validateCold(raw, type, now)
    if (result.ok && generation === this.#generation) {
      const until = Math.min(now + VALIDATED_TTL_MS, (result.principal.exp + this.#skew) * 1000)
      if (this.#validated.size >= MAX_VALIDATED) {
        const oldest = this.#validated.keys().next().value
        if (oldest !== undefined) this.#validated.delete(oldest)
      }
      this.#validated.set(cacheKey, { principal: result.principal, until })
    }
    return result
  }

  /** Drops cached state for revoked jtis (called after the Postgres commit and by the filter). */
  evict(entries: readonly { orgId: string; jti: string }[], options: { confirmed?: boolean } = {}): void {
    this.#generation++
    // Any cached token may descend from a revoked jti: start over (revocations are rare).
    this.#validated.clear()
    if (options.confirmed) this.#confirmed.clear()
    for (const e of entries) this.#confirmed.delete(`${e.orgId}/${e.jti}`)
  }

  async #validateCold(raw: string, type: TokenType, now: number): Promise<ValidationResult> {
    const jws = parseJws(raw.slice(type.length + 4))
    if (!jws) return INVALID
    const sub = jws.payload.sub
    if (typeof sub !== 'string' || !isUuid(sub)) return INVALID
    let key: KeyObject | null
    const k = this.#keys.publicKey(sub, jws.header.kid)
    key = k instanceof Promise ? await k : k
    if (!key) return INVALID
    if (!verifyJws(jws, key)) return INVALID
    const claims = this.#checkClaims(jws.payload, type, sub, now)
    if (claims !== 'ok') return claims
    const principal = toPrincipal(jws.payload, type, sub)
    if (!(await this.#chainValid(sub, principal))) return INVALID
    return { ok: true, principal }
  }

  #checkClaims(c: Record<string, unknown>, type: TokenType, sub: string, now: number): 'ok' | ValidationResult {
    const nowS = now / 1000
    if (c.typ !== type || c.sub !== sub) return INVALID
    if (typeof c.jti !== 'string' || !isUuid(c.jti)) return INVALID
    if (!isInt(c.iat) || !isInt(c.exp) || c.exp <= c.iat) return INVALID
    if (c.exp - c.iat > TTL_S[type].max) return INVALID
    if (c.iat > nowS + this.#skew) return INVALID
    if (c.nbf !== undefined && (!isInt(c.nbf) || c.nbf > nowS + this.#skew)) return INVALID
    const needsParent = type !== 'app' && type !== 'override'
    if (needsParent ? typeof c.parent_jti !== 'string' || !isUuid(c.parent_jti) : c.parent_jti !== undefined) return INVALID
    switch (type) {
      case 'app':
        if (!Array.isArray(c.scopes) || !c.scopes.every((s) => typeof s === 'string')) return INVALID
        break
      case 'bearer':
        if (!isText(c.env)) return INVALID
        break
      case 'agent':
        if (!isText(c.agent_id) || !isObject(c.rbac)) return INVALID
        break
      case 'subagent':
        if (!isText(c.agent_id) || !isObject(c.rbac) || !isInt(c.depth) || c.depth < 1 || c.depth > this.#maxDepth) return INVALID
        break
      case 'session':
        if (!isText(c.session_id)) return INVALID
        if (c.max_events !== undefined && (!isInt(c.max_events) || c.max_events < 1)) return INVALID
        break
      case 'override':
        if (!isText(c.event_id) || !Array.isArray(c.allowed_decisions) || !c.allowed_decisions.every(isText)) return INVALID
        break
    }
    // Checked last: only a token that is ours in every other respect learns it merely expired.
    if (nowS >= c.exp + this.#skew) return EXPIRED
    return 'ok'
  }

  /** The token and every ancestor exist and none is revoked. */
  async #chainValid(orgId: string, p: JwtPrincipal): Promise<boolean> {
    const ancestors = await this.#ancestorsOf(orgId, p.jti)
    if (ancestors === null) return false
    // Overrides link to the token that minted them in the table only (SPEC §4.2 gives them no parent_jti).
    if (p.type !== 'override' && ancestors[0] !== p.parentJti) return false
    const chain = [p.jti, ...ancestors]
    const unsure: string[] = []
    const now = Date.now()
    for (const jti of chain) {
      const seen = this.#confirmed.get(`${orgId}/${jti}`)
      if (seen && seen.until > now) {
        if (seen.revoked) return false
        continue
      }
      const f = this.#filter?.check(orgId, jti) ?? 'unknown'
      if (f !== false) unsure.push(jti)
    }
    if (unsure.length === 0) return true
    const generation = this.#generation
    const rows = await withOrg(this.#sql, orgId, (tx) => tx<{ jti: string; revoked: boolean }[]>`
      select jti::text as jti, revoked_at is not null as revoked
        from auth.issued_tokens where jti = any(${unsure}::uuid[])`)
    const revoked = new Set(rows.filter((r) => r.revoked).map((r) => r.jti))
    if (generation === this.#generation) {
      const until = Date.now() + CONFIRM_TTL_MS
      for (const jti of unsure) this.#confirmed.set(`${orgId}/${jti}`, { revoked: revoked.has(jti), until })
      if (this.#confirmed.size > MAX_VALIDATED) this.#confirmed.clear()
    }
    return revoked.size === 0 && rows.length === unsure.length
  }

  /** Ancestors of an issued jti, nearest first; null when the jti was never issued in that org. */
  async #ancestorsOf(orgId: string, jti: string): Promise<readonly string[] | null> {
    const key = `${orgId}/${jti}`
    const cached = this.#ancestry.get(key)
    if (cached !== undefined) return cached
    const rows = await withOrg(this.#sql, orgId, (tx) => tx<{ jti: string; depth: number }[]>`
      with recursive chain(jti, parent_jti, n) as (
        select jti, parent_jti, 0 from auth.issued_tokens where jti = ${jti}
        union all
        select t.jti, t.parent_jti, c.n + 1
          from auth.issued_tokens t join chain c on t.jti = c.parent_jti
         where c.n < 16
      )
      select jti::text as jti, n as depth from chain order by n`)
    const value = rows.length === 0 ? null : Object.freeze(rows.slice(1).map((r) => r.jti))
    // Unknown jtis are not cached: a signed token whose jti is missing is not ours anyway, and
    // caching would let garbage fill the map. Known ancestry never changes.
    if (value) {
      if (this.#ancestry.size >= MAX_ANCESTRY) this.#ancestry.clear()
      this.#ancestry.set(key, value)
    }
    return value
  }
}

function verifyJws(jws: ParsedJws, key: KeyObject): boolean {
  return verifyEs256(jws.signingInput, jws.signature, key)
}

function toPrincipal(c: Record<string, unknown>, type: TokenType, orgId: string): JwtPrincipal {
  const p: JwtPrincipal = {
    kind: 'jwt',
    type,
    orgId,
    tokenId: c.jti as string,
    jti: c.jti as string,
    scopes: type === 'app' ? Object.freeze([...(c.scopes as string[])]) : TYPE_SCOPES[type],
    exp: c.exp as number,
  }
  if (typeof c.parent_jti === 'string') p.parentJti = c.parent_jti
  if (typeof c.agent_id === 'string') p.agentId = c.agent_id
  if (typeof c.session_id === 'string') p.sessionId = c.session_id
  if (isObject(c.rbac)) p.rbac = c.rbac
  if (isInt(c.depth)) p.depth = c.depth
  if (isInt(c.max_events)) p.maxEvents = c.max_events
  if (typeof c.event_id === 'string') p.eventId = c.event_id
  if (Array.isArray(c.allowed_decisions)) p.allowedDecisions = Object.freeze([...(c.allowed_decisions as string[])])
  if (typeof c.env === 'string') p.env = c.env
  return Object.freeze(p)
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v)
}

function isText(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= 256
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}
