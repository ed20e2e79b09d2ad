/**
 * @module auth/jwt/validator
 * The hot path for `qt_app_ … qt_override_` tokens (SPEC §4.4):
 *
 *   validated-token cache (SHA-256 of the whole string) → prefix → strict JWS parse (src/auth/jwt/jws.ts)
 *   → key by (sub, kid) → ES256 verify → claims for the type → chain + revocation → principal.
 *
 * Every refusal is `invalid` except a correctly signed token past `exp` (+ skew), which is
 * `expired`; callers answer both with 401 and the same message, and only the code differs.
 *
 * Revocation is keyed on `jti` (never on token bytes: an ECDSA signature re-encoded as (r, n−s)
 * is a different string for the same jti, PITFALLS §2.4) and covers every ancestor. Ancestry is
 * immutable, so it is loaded once per jti and cached long, with what the chain needs checked
 * again at use (issue 14: narrowing used to be checked only at mint, so a correctly signed token
 * wider than its parent, or outliving it, was accepted): the presented claims must be the ones
 * recorded at mint, and every link of the recorded chain must obey the delegation rules (parent
 * type, exp ≤ parent's, sub-agent depth, RBAC a subset of the parent's, a session's agent_id).
 * This is defence in depth against a leaked signing key or a minting bug; its verdict is cached
 * with the ancestry, so the hot path stays in process. Revocation state per jti comes from
 * the RevocationFilter when there is one (`false` = definitely not revoked), otherwise or on a
 * filter hit / 'unknown' from Postgres, cached for CONFIRM_TTL_MS. A validated token is cached for
 * at most min(exp, VALIDATED_TTL_MS); every revocation, local or reported by the filter's
 * `onAdded` (another instance, via Redis pub/sub), clears the validated cache and the confirmed
 * states of the revoked jtis. Without a filter and without pub/sub, another instance's revocation
 * takes effect here within VALIDATED_TTL_MS (30 s): the documented SLA of single-process mode.
 */
import { createHash, type KeyObject } from 'node:crypto'
import { isUuid, withOrg, type Sql } from '../../infra/db.ts'
import type { Logger } from '../../infra/log.ts'
import { parseJws, verifyEs256, type ParsedJws } from './jws.ts'
import type { SigningKeys } from './keys.ts'
import { checkNarrowing, parseRbac } from '../rbac.ts'
import { PARENT_TYPES, TTL_S, typeOfToken, type TokenType } from './hierarchy.ts'

export const VALIDATED_TTL_MS = 30_000
const CONFIRM_TTL_MS = 5_000
const MAX_VALIDATED = 50_000
const MAX_ANCESTRY = 100_000
/** Longest token accepted at all: prefix + header + 16 KiB payload + signature. */
export const MAX_TOKEN_CHARS = 17 * 1024

/** Structural form of src/auth/jwt/revocation-filter.ts (owned elsewhere), so this module does not depend on its file. */
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

/**
 * Why a correctly signed token's chain was refused (issue 14). `claims_not_recorded`: the claims
 * differ from those recorded when its jti was minted (signed elsewhere with the org's key); the
 * others name the delegation rule a link of the recorded chain breaks.
 */
export type ChainViolation =
  | 'claims_not_recorded'
  | 'wrong_parent_type'
  | 'outlives_parent'
  | 'depth'
  | 'rbac_not_narrower'
  | 'agent_id_mismatch'
  | 'chain_too_long'

export type ValidationResult =
  { ok: true; principal: JwtPrincipal } | { ok: false; reason: 'invalid' | 'expired'; chain?: ChainViolation }

const INVALID: ValidationResult = Object.freeze({ ok: false, reason: 'invalid' }) as ValidationResult
const EXPIRED: ValidationResult = Object.freeze({ ok: false, reason: 'expired' }) as ValidationResult

/** Scopes each type carries (docs/auth.md). App tokens carry their own `scopes` claim. */
export const TYPE_SCOPES: Record<Exclude<TokenType, 'app'>, readonly string[]> = {
  // The data plane's root, held by proxies: ingest only; reading the org's data is for people
  // and read credentials (issue 9).
  bearer: Object.freeze(['ingest']),
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
  /** Where a chain violation is reported (a warning: a leaked signing key or a minting bug). */
  log?: Logger
}

/** What is recorded for an issued jti; immutable, so cached per jti. */
interface ChainRecord {
  /** Ancestors, nearest first. */
  ancestors: readonly string[]
  /** SHA-256 of the canonical JSON of the claims recorded at mint. */
  claimsHash: string
  /**
   * SHA-256 of the last token string whose claims were found equal to the recorded ones: the
   * same string presented again (after the validated cache let it go) skips canonicalising its
   * claims, which would cost ~10 % of the cold path.
   */
  matched: string | null
  /** The first delegation rule the recorded chain breaks, or null. */
  violation: ChainViolation | null
}

/** Longest chain the rules allow: app → bearer → agent → sub-agents → session/override. */
const MAX_CHAIN = 16

export class TokenValidator {
  readonly #validated = new Map<string, Validated>()
  /** org/jti → what was recorded at mint (ancestry, claims, chain verdict). Only issued jtis. */
  readonly #ancestry = new Map<string, ChainRecord>()
  /** org/jti → revoked?, confirmed against Postgres. */
  readonly #confirmed = new Map<string, { revoked: boolean; until: number }>()
  /** Bumped by every revocation: a validation that overlapped one must not cache its result. */
  #generation = 0
  readonly #sql: Sql
  readonly #keys: SigningKeys
  readonly #skew: number
  readonly #maxDepth: number
  readonly #log: Logger | null
  readonly #filter: RevocationFilterLike | null

  constructor(sql: Sql, keys: SigningKeys, options: TokenValidatorOptions) {
    this.#sql = sql
    this.#keys = keys
    this.#skew = options.clockSkewS
    this.#maxDepth = options.maxDepth
    this.#log = options.log ?? null
    // The revocation filter (cluster-wide bloom), given at construction: its additions evict our
    // caches, and a new generation may know revocations the old one missed (a rebuild anywhere).
    this.#filter = options.filter ?? null
    this.#filter?.onAdded((orgId, jti) => this.evict([{ orgId, jti }]))
    this.#filter?.onGeneration?.(() => this.evict([], { confirmed: true }))
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
    const result = await this.#validateCold(raw, type, now, cacheKey)
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

  async #validateCold(raw: string, type: TokenType, now: number, tokenHash: string): Promise<ValidationResult> {
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
    const record = await this.#recordOf(sub, principal.jti)
    if (record === null) return INVALID
    const recorded = record.matched === tokenHash || record.claimsHash === claimsHash(jws.payload)
    if (recorded) record.matched = tokenHash
    const violation = recorded ? record.violation : 'claims_not_recorded'
    if (violation) {
      this.#log?.warn(
        { org_id: sub, jti: principal.jti, token_type: type, rule: violation },
        'correctly signed token refused: its chain breaks the delegation rules (leaked signing key or minting bug?)',
      )
      return { ok: false, reason: 'invalid', chain: violation }
    }
    if (!(await this.#chainValid(sub, principal, record.ancestors))) return INVALID
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

  /** The recorded parent is the claimed one and neither the token nor any ancestor is revoked. */
  async #chainValid(orgId: string, p: JwtPrincipal, ancestors: readonly string[]): Promise<boolean> {
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
    const rows = await withOrg(
      this.#sql,
      orgId,
      (tx) => tx<{ jti: string; revoked: boolean }[]>`
      select jti::text as jti, revoked_at is not null as revoked
        from auth.issued_tokens where jti = any(${unsure}::uuid[])`,
    )
    const revoked = new Set(rows.filter((r) => r.revoked).map((r) => r.jti))
    if (generation === this.#generation) {
      const until = Date.now() + CONFIRM_TTL_MS
      for (const jti of unsure) this.#confirmed.set(`${orgId}/${jti}`, { revoked: revoked.has(jti), until })
      if (this.#confirmed.size > MAX_VALIDATED) this.#confirmed.clear()
    }
    return revoked.size === 0 && rows.length === unsure.length
  }

  /** What was recorded for an issued jti; null when the jti was never issued in that org. */
  async #recordOf(orgId: string, jti: string): Promise<ChainRecord | null> {
    const key = `${orgId}/${jti}`
    const cached = this.#ancestry.get(key)
    if (cached !== undefined) return cached
    const rows = await withOrg(
      this.#sql,
      orgId,
      (tx) => tx<RecordedRow[]>`
      with recursive chain(jti, parent_jti, token_type, depth, claims, expires_at, n) as (
        select jti, parent_jti, token_type, depth, claims, expires_at, 0 from auth.issued_tokens where jti = ${jti}
        union all
        select t.jti, t.parent_jti, t.token_type, t.depth, t.claims, t.expires_at, c.n + 1
          from auth.issued_tokens t join chain c on t.jti = c.parent_jti
         where c.n < ${MAX_CHAIN}
      )
      select jti::text as jti, parent_jti::text as parent_jti, token_type, depth, claims, expires_at
        from chain order by n`,
    )
    // Unknown jtis are not cached: a signed token whose jti is missing is not ours anyway, and
    // caching would let garbage fill the map. What was recorded never changes.
    if (rows.length === 0) return null
    const record: ChainRecord = {
      ancestors: Object.freeze(rows.slice(1).map((r) => r.jti)),
      claimsHash: claimsHash(rows[0]!.claims),
      matched: null,
      violation: chainViolation(rows, this.#maxDepth),
    }
    if (this.#ancestry.size >= MAX_ANCESTRY) this.#ancestry.clear()
    this.#ancestry.set(key, record)
    return record
  }
}

interface RecordedRow {
  jti: string
  parent_jti: string | null
  token_type: TokenType
  depth: number
  claims: Record<string, unknown>
  expires_at: Date
}

/**
 * The first delegation rule the recorded chain (the token first, then its ancestors) breaks, or
 * null. The rules are those minting enforces (src/features/jwt-tokens/service.ts, routes.ts),
 * checked again with the parents' recorded claims.
 */
function chainViolation(rows: readonly RecordedRow[], maxDepth: number): ChainViolation | null {
  if (rows.length > MAX_CHAIN || rows.at(-1)!.parent_jti !== null) return 'chain_too_long'
  for (let i = 0; i < rows.length; i++) {
    const child = rows[i]!
    const parent = rows[i + 1]
    if (!parent) {
      // Only app tokens, and overrides minted by a management credential, have no parent.
      if (child.token_type !== 'app' && child.token_type !== 'override') return 'wrong_parent_type'
      continue
    }
    if (!PARENT_TYPES[child.token_type].includes(parent.token_type)) return 'wrong_parent_type'
    if (child.expires_at.getTime() > parent.expires_at.getTime()) return 'outlives_parent'
    if (child.token_type === 'subagent') {
      const depth = parent.token_type === 'agent' ? 1 : parent.depth + 1
      if (child.depth !== depth || child.claims.depth !== depth || depth > maxDepth) return 'depth'
      const p = parseRbac(parent.claims.rbac)
      const c = parseRbac(child.claims.rbac)
      if (!p.ok || !c.ok || !checkNarrowing(p.policy, c.policy).ok) return 'rbac_not_narrower'
    }
    if (child.token_type === 'session' && child.claims.agent_id !== parent.claims.agent_id) return 'agent_id_mismatch'
  }
  return null
}

/** SHA-256 of the canonical JSON (object keys sorted) of a claims object. */
function claimsHash(claims: unknown): string {
  return createHash('sha256').update(canonicalJson(claims)).digest('base64')
}

/** JSON with object keys sorted, so that jsonb's reordering of the recorded claims does not matter. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`
  }
  return JSON.stringify(v) ?? 'null'
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
