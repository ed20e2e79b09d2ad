/**
 * @module features/jwt-tokens/service
 * Who may mint what, finding the parent, and minting (docs/auth.md "Who can mint"):
 *
 * - management credentials (an admin `qk_` key, or an app token with scope `*`, `admin` or
 *   `tokens:write`) mint app, bearer and agent tokens, and any child whose parent they name by jti
 *   or hash within their org;
 * - a JWT mints its own children when presented as the bearer with no parent named (the client
 *   form of SPEC §7.5): app → bearer, bearer → agent, agent/subagent → subagent, session, override.
 *   Naming a parent other than itself is refused (403) unless it is a management credential.
 *
 * A parent named in the body must be of this org (404 otherwise: RLS hides other orgs' tokens),
 * of the right type, unexpired, and neither it nor any ancestor revoked (400).
 */
import type { RequestFacts } from '../../http/request-context.ts'
import { hasScope, type Principal } from '../../auth/credentials.ts'
import type { SigningKeys } from '../../auth/jwt/keys.ts'
import { checkNarrowing, parseRbac, rbacClaim, type RbacFieldError, type RbacPolicy } from '../../auth/rbac.ts'
import { MintError, mintJwt, PARENT_TYPES, type MintedJwt, type ParentToken, type TokenType } from '../../auth/jwt/hierarchy.ts'
import { TYPE_SCOPES } from '../../auth/jwt/validator.ts'
import { BadRequestError, ForbiddenError, NotFoundError, ValidationError, type FieldError } from '../../errors.ts'
import { withOrg, type Sql, type Tx } from '../../infra/db.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { recordLive } from '../live/repo.ts'
import { findIssued } from './repo.ts'

const MANAGEMENT_SCOPES = new Set(['*', 'admin', 'tokens:write'])

export function isManagement(p: Principal): boolean {
  if (p.kind === 'jwt') return p.type === 'app' && p.scopes.some((s) => MANAGEMENT_SCOPES.has(s))
  return hasScope(p, 'admin')
}

/** `customer_id`, when given, must be the caller's org: never mint for, or reveal, another org. */
export function checkCustomer(p: Principal, customerId: string | undefined): void {
  if (customerId !== undefined && customerId.toLowerCase() !== p.orgId) throw new NotFoundError('No such customer.')
}

/** Where the parent comes from: named in the body, or the calling token itself. */
export type ParentRef = { jti: string; pointer: string } | { hash: Buffer; pointer: string } | null

export interface MintInput {
  type: TokenType
  parentRef: ParentRef
  ttlS?: number
  ttlPointer: string
  name?: string | null
  /** Builds the type's claims once the parent is known. */
  claims: (parent: ParentToken | null) => { claims: Record<string, unknown>; depth?: number }
  /** Extra audit details (never secrets). */
  details?: Record<string, unknown>
  /** An override's reason for asking, kept with the token (the pending list shows it). */
  requestReason?: string | null
}

export interface MintDeps {
  sql: Sql
  keys: SigningKeys
  maxDepth: number
}

export async function mintFor(deps: MintDeps, p: Principal, input: MintInput, request: RequestFacts): Promise<MintedJwt> {
  const signer = await deps.keys.signer(p.orgId)
  try {
    return await withOrg(deps.sql, p.orgId, async (tx) => {
      const parent = await resolveParent(tx, p, input)
      const { claims, depth } = input.claims(parent)
      const minted = await mintJwt(
        tx,
        signer,
        {
          orgId: p.orgId,
          type: input.type,
          parent,
          ttlS: input.ttlS,
          claims,
          name: input.name ?? null,
          depth,
          // A JWT is named by the parent it mints under; a person mints nothing (isManagement).
          mintedBy: p.kind === 'jwt' || p.kind === 'member' ? null : p.tokenId,
          requestReason: input.requestReason ?? null,
        },
        input.ttlPointer,
      )
      await recordAudit(tx, {
        ...auditActor(p),
        action: `jwt.mint.${input.type}`,
        targetType: 'jwt',
        targetId: minted.jti,
        request,
        details: { parent_jti: parent?.jti ?? null, expires_at: minted.expiresAt.toISOString(), ...input.details },
      })
      // An override is an approval request: the console's live stream announces it at commit
      // (docs/live.md `approval`). Last, as every live log writer.
      if (input.type === 'override') await recordLive(tx, 'approval', [minted.jti])
      return minted
    })
  } catch (err) {
    if (err instanceof MintError) throw new BadRequestError(err.message, [{ path: err.pointer, message: err.message }])
    throw err
  }
}

async function resolveParent(tx: Tx, p: Principal, input: MintInput): Promise<ParentToken | null> {
  const allowed = PARENT_TYPES[input.type]
  const mgmt = isManagement(p)
  const ref = input.parentRef
  if (ref === null) {
    // The caller itself is the parent (client form), or there is none (app; override by management).
    if (p.kind === 'jwt' && allowed.includes(p.type)) {
      // An app token without a management scope hands on only what it holds: a bearer carries
      // ingest and read, and overrides (human decisions) are for management credentials.
      if (p.type === 'app' && !mgmt) {
        if (input.type === 'override')
          throw new ForbiddenError('Only a management credential may mint override tokens from an app token.')
        const missing = TYPE_SCOPES.bearer.filter((s) => !p.scopes.includes(s))
        if (input.type === 'bearer' && missing.length > 0) {
          throw new ForbiddenError(
            `A bearer token carries ${TYPE_SCOPES.bearer.join(' and ')}; this app token lacks ${missing.join(', ')}.`,
          )
        }
      }
      return {
        jti: p.jti,
        type: p.type,
        exp: p.exp,
        depth: p.depth ?? 0,
        claims: { ...(p.rbac ? { rbac: p.rbac } : {}), ...(p.agentId ? { agent_id: p.agentId } : {}) },
      }
    }
    if (input.type === 'app' || input.type === 'override') {
      if (!mgmt) throw new ForbiddenError(`This credential may not mint ${input.type} tokens.`)
      return null
    }
    if (!mgmt) throw new ForbiddenError(`This credential may not mint ${input.type} tokens.`)
    throw new ValidationError([
      { path: parentPointer(input.type), message: `required: the parent ${allowed.join(' or ')} token` },
    ])
  }
  const row = await findIssued(tx, 'jti' in ref ? { jti: ref.jti } : { hash: ref.hash })
  if (!row) throw new NotFoundError('No such parent token in this organization.')
  // A token may name itself; anything else needs a management credential.
  if (!mgmt && !(p.kind === 'jwt' && p.jti === row.jti)) {
    throw new ForbiddenError('Only a management credential may mint under another token.')
  }
  if (!allowed.includes(row.type)) {
    throw new BadRequestError('Wrong parent type.', [
      { path: ref.pointer, message: `must name a ${allowed.join(' or ')} token, not ${row.type}` },
    ])
  }
  if (row.chainRevoked || row.exp * 1000 <= Date.now()) {
    throw new BadRequestError('The parent token is revoked or expired.', [
      { path: ref.pointer, message: 'the parent token (or one of its ancestors) is revoked or expired' },
    ])
  }
  return row
}

function parentPointer(type: TokenType): string {
  switch (type) {
    case 'bearer':
      return '/app_token_hash'
    case 'agent':
      return '/bearer_jti'
    case 'subagent':
      return '/parent_agent_jti'
    default:
      return '/parent_jti'
  }
}

/** Parses a policy from a request body; 422 with pointers under `/rbac`. */
export function requirePolicy(input: unknown): RbacPolicy {
  const r = parseRbac(input)
  if (!r.ok) throw new ValidationError(prefix(r.errors, '/rbac'), 'The RBAC policy is invalid.')
  return r.policy
}

/** The policy a sub-agent gets: the requested one if it narrows the parent's, else 400. */
export function narrowedPolicy(parentRbac: unknown, requested: unknown): Record<string, unknown> {
  const parent = parseRbac(parentRbac)
  if (!parent.ok) throw new BadRequestError('The parent token carries no usable RBAC policy.')
  if (requested === undefined) return rbacClaim(parent.policy)
  const child = requirePolicy(requested)
  const n = checkNarrowing(parent.policy, child)
  if (!n.ok) {
    throw new BadRequestError("A sub-agent policy must be a subset of its parent's.", prefix(n.violations, '/rbac'))
  }
  return rbacClaim(child)
}

/** The depth of a new sub-agent under `parent`, or 400 past the limit. */
export function subagentDepth(parent: ParentToken, maxDepth: number, pointer: string): number {
  const depth = parent.type === 'agent' ? 1 : parent.depth + 1
  if (depth > maxDepth) {
    throw new BadRequestError('Delegation too deep.', [
      { path: pointer, message: `delegation depth ${depth} exceeds the limit of ${maxDepth}` },
    ])
  }
  return depth
}

function prefix(errors: readonly RbacFieldError[], base: string): FieldError[] {
  return errors.map((e) => ({ path: base + e.path, message: e.message }))
}
