/**
 * @module auth/jwt/hierarchy
 * The six JWT-bearing token types of SPEC §4: prefixes, lifetimes, derivation tree, claims, and
 * minting (sign + record in `auth.issued_tokens` inside the caller's tenant transaction).
 *
 * Lifetime rule: a child never outlives its parent. A request asking for a lifetime past the
 * parent's expiry is refused with 400 (`ttl_exceeds_parent`), never silently clamped; a request
 * that gives no lifetime gets the type's default, cut to the parent's remaining life (the
 * response's `expires_at` says so). Decision documented in docs/auth.md.
 */
import { createHash, randomUUID } from 'node:crypto'
import type { Tx } from '../../infra/db.ts'
import { signEs256 } from './jws.ts'
import type { Signer } from './keys.ts'

export const TOKEN_TYPES = ['app', 'bearer', 'agent', 'subagent', 'session', 'override'] as const
export type TokenType = (typeof TOKEN_TYPES)[number]

export const PREFIXES: Record<TokenType, string> = {
  app: 'qt_app_',
  bearer: 'qt_bearer_',
  agent: 'qt_agent_',
  subagent: 'qt_subagent_',
  session: 'qt_session_',
  override: 'qt_override_',
}

const H = 3600
/** Default and maximum lifetime per type, in seconds (SPEC §4.1). */
export const TTL_S: Record<TokenType, { def: number; max: number }> = {
  app: { def: 365 * 24 * H, max: 365 * 24 * H },
  bearer: { def: 90 * 24 * H, max: 90 * 24 * H },
  agent: { def: 24 * H, max: 24 * H },
  subagent: { def: 4 * H, max: 4 * H },
  session: { def: H, max: H },
  override: { def: 5 * 60, max: 5 * 60 },
}
export const MAX_TOKEN_TTL_MS = TTL_S.app.max * 1000

/** Which types a token of each type may be minted under (SPEC §4.1, §4.3). */
export const PARENT_TYPES: Record<TokenType, readonly TokenType[]> = {
  app: [],
  bearer: ['app'],
  agent: ['bearer'],
  subagent: ['agent', 'subagent'],
  session: ['agent', 'subagent'],
  // Bound to the minting token's lifetime and revocation, not part of the claim chain.
  override: ['app', 'agent', 'subagent'],
}

/** `qt_xxx_<jws>` → type, or null for a string that is not one of ours. */
export function typeOfToken(raw: string): TokenType | null {
  if (!raw.startsWith('qt_')) return null
  const end = raw.indexOf('_', 3)
  if (end < 0) return null
  const name = raw.slice(3, end)
  return (TOKEN_TYPES as readonly string[]).includes(name) ? (name as TokenType) : null
}

export interface ParentToken {
  jti: string
  type: TokenType
  /** Unix seconds. */
  exp: number
  depth: number
  claims: Record<string, unknown>
}

export interface MintRequest {
  orgId: string
  type: TokenType
  /**
   * For an override, the token that minted it: recorded as its parent in the table (so revoking
   * or cascading that token reaches it) but not put in the claims (SPEC §4.2 gives overrides no
   * parent_jti).
   */
  parent: ParentToken | null
  /** Requested lifetime in seconds; undefined = type default (cut to the parent's remaining life). */
  ttlS?: number
  /** Type-specific claims (env, agent_id, rbac, session_id, max_events, event_id, allowed_decisions, scopes, name). */
  claims: Record<string, unknown>
  name?: string | null
  depth?: number
  /** The opaque credential (api_tokens.id) that minted it, when not a JWT minting for itself. */
  mintedBy?: string | null
  /** An override's reason for asking (kept with the token, shown to whoever decides). */
  requestReason?: string | null
}

export interface MintedJwt {
  token: string
  jti: string
  type: TokenType
  claims: Record<string, unknown>
  expiresAt: Date
}

export class MintError extends Error {
  readonly pointer: string
  readonly code: string
  constructor(code: string, pointer: string, message: string) {
    super(message)
    this.code = code
    this.pointer = pointer
  }
}

/** The expiry for a new token, or a MintError (ttl too long for the type or the parent). */
export function expiryFor(
  type: TokenType,
  parent: ParentToken | null,
  ttlS: number | undefined,
  nowS: number,
  pointer: string,
): number {
  const { def, max } = TTL_S[type]
  if (ttlS !== undefined) {
    if (!Number.isInteger(ttlS) || ttlS < 1 || ttlS > max) {
      throw new MintError('ttl_out_of_range', pointer, `must be a whole lifetime between 1 s and ${max} s for a ${type} token`)
    }
    if (parent && nowS + ttlS > parent.exp) {
      throw new MintError(
        'ttl_exceeds_parent',
        pointer,
        `a ${type} token cannot outlive its parent (parent expires ${new Date(parent.exp * 1000).toISOString()})`,
      )
    }
    return nowS + ttlS
  }
  const exp = nowS + def
  return parent ? Math.min(exp, parent.exp) : exp
}

/** Signs the token and records it in auth.issued_tokens (inside the caller's withOrg transaction). */
export async function mintJwt(tx: Tx, signer: Signer, req: MintRequest, ttlPointer = '/ttl'): Promise<MintedJwt> {
  const nowS = Math.floor(Date.now() / 1000)
  if (req.parent && !PARENT_TYPES[req.type].includes(req.parent.type)) {
    throw new MintError('wrong_parent_type', '/parent', `a ${req.type} token cannot be derived from a ${req.parent.type} token`)
  }
  if (req.parent && req.parent.exp <= nowS) throw new MintError('parent_expired', '/parent', 'the parent token has expired')
  const exp = expiryFor(req.type, req.parent, req.ttlS, nowS, ttlPointer)
  const jti = randomUUID()
  const claims: Record<string, unknown> = {
    jti,
    sub: req.orgId,
    typ: req.type,
    iat: nowS,
    exp,
    ...(req.parent && req.type !== 'override' ? { parent_jti: req.parent.jti } : {}),
    ...req.claims,
  }
  const token = PREFIXES[req.type] + signEs256(claims, signer.kid, signer.privateKey)
  const expiresAt = new Date(exp * 1000)
  const tokenHash = createHash('sha256').update(token).digest()
  await tx`
    insert into auth.issued_tokens
      (org_id, jti, token_type, parent_jti, depth, kid, name, agent_id, session_id, event_id, claims, expires_at, token_hash,
       minted_by, request_reason)
    values (${req.orgId}, ${jti}, ${req.type}, ${req.parent?.jti ?? null}, ${req.depth ?? 0}, ${signer.kid},
            ${req.name ?? null}, ${str(claims.agent_id)}, ${str(claims.session_id)}, ${str(claims.event_id)},
            ${tx.json(claims as never)}, ${expiresAt}, ${tokenHash}, ${req.mintedBy ?? null}, ${req.requestReason ?? null})`
  return { token, jti, type: req.type, claims, expiresAt }
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null
}
