/**
 * @module features/api-tokens/service
 * Who may create, see, rotate and revoke which opaque credential (issue 10; docs/tokens.md), and
 * the one way each change is made: in the org's transaction, audited with the token before and
 * after, and (revocation, rotation) handed to `CredentialResolver.revoked` after the commit so
 * every cache drops the old state.
 *
 * Rules:
 * - `personal`: a signed-in person's own; scopes within their role (default: all of it); no
 *   one else sees its raw value or rotates it; revoked with the membership or a role change.
 * - `service`, `deploy`, `enrollment`: `manage`; a service token gets only scopes its creator
 *   holds (`ingest` needs `manage`); deploy and enrollment scopes are fixed.
 * - `admin` (qk_, every permission): `members`, the owner's permission.
 * - Rotating needs what creating needs: whoever rotates gets the new value. JWTs make no opaque
 *   token: it would outlive the JWT's chain and its revocation.
 * The operator's CLI (`quint-cloud key|token …`) holds every permission but a person's.
 */
import type { CredentialResolver, MemberRole, Principal } from '../../auth/credentials.ts'
import { FORMATS, type OpaqueFormat } from '../../auth/opaque/format.ts'
import { AppError, BadRequestError, ForbiddenError, NotFoundError, ValidationError } from '../../errors.ts'
import type { RequestFacts } from '../../http/request-context.ts'
import { allows, roleAllows, type Permission, type Scope } from '../../http/permissions.ts'
import { uuidOr, withOrg, type Sql, type Tx } from '../../infra/db.ts'
import type { Keyset } from '../../http/pagination.ts'
import { requireName } from '../../lib/names.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { holdMember } from '../members/repo.ts'
import { getToken, issueToken, listTokens, retireAt, revokeTokens, type IssuedToken, type TokenRow } from './repo.ts'
import type { TokenKindName } from './schema.ts'

const DAY_MS = 24 * 3600 * 1000

interface KindRule {
  format: OpaqueFormat
  /** Who may create, rotate and revoke it (personal: only its owner creates and rotates). */
  permission: Permission
  /** Fixed scopes; undefined: chosen at creation. */
  scopes?: readonly string[]
  defaultLifetimeMs: number | null
  maxLifetimeMs: number
  rotatable: boolean
}

export const KINDS: Record<TokenKindName, KindRule> = {
  personal: {
    format: FORMATS.personalToken,
    permission: 'authenticated',
    defaultLifetimeMs: 90 * DAY_MS,
    maxLifetimeMs: 366 * DAY_MS,
    rotatable: true,
  },
  service: {
    format: FORMATS.serviceToken,
    permission: 'manage',
    defaultLifetimeMs: null,
    maxLifetimeMs: 3660 * DAY_MS,
    rotatable: true,
  },
  deploy: {
    format: FORMATS.deployToken,
    permission: 'manage',
    scopes: ['ingest'],
    defaultLifetimeMs: null,
    maxLifetimeMs: 3660 * DAY_MS,
    // A daemon keeps its one token forever (SPEC §3.1): a deploy token is replaced, not rotated.
    rotatable: false,
  },
  enrollment: {
    format: FORMATS.enrollmentToken,
    permission: 'manage',
    scopes: ['enroll'],
    defaultLifetimeMs: 3600 * 1000,
    maxLifetimeMs: 7 * DAY_MS,
    rotatable: false,
  },
  admin: {
    format: FORMATS.adminKey,
    permission: 'members',
    scopes: ['admin'],
    defaultLifetimeMs: null,
    maxLifetimeMs: 3660 * DAY_MS,
    rotatable: true,
  },
}

const BY_STORED_KIND = new Map(Object.entries(KINDS).map(([name, rule]) => [rule.format.kind as string, name as TokenKindName]))

/** The API's name of a stored kind. */
export const kindName = (stored: string): TokenKindName => BY_STORED_KIND.get(stored)!

/** What each role may put in a personal token: its permissions that are scopes. */
const PEOPLE_SCOPES: readonly Scope[] = ['read', 'triage', 'manage', 'members']

export function tokenView(t: TokenRow, now = Date.now()) {
  return {
    id: t.id,
    kind: kindName(t.kind),
    name: t.name,
    token_prefix: t.token_prefix,
    scopes: t.scopes,
    member_id: t.member_id,
    machine_id: t.machine_id,
    created_by: t.created_by,
    created_at: t.created_at.toISOString(),
    expires_at: t.expires_at?.toISOString() ?? null,
    revoked_at: t.revoked_at?.toISOString() ?? null,
    replaced_by: t.replaced_by,
    last_used_at: t.last_used_at?.toISOString() ?? null,
    last_used_ip: t.last_used_ip,
    use_count: Number(t.use_count),
    state: t.revoked_at ? 'revoked' : t.expires_at && t.expires_at.getTime() <= now ? 'expired' : 'active',
  } as const
}

export interface CreateInput {
  kind: TokenKindName
  name: string
  scopes?: readonly Scope[]
  expires_at?: string
}

interface Deps {
  sql: Sql
  /** The CLI's has no cache of its own; it publishes through Redis when it has it (cli/credentials). */
  resolver?: CredentialResolver
}

/** The operator at the CLI, acting on one org. */
export interface CliActor {
  kind: 'cli'
  orgId: string
}

export type Actor = Principal | CliActor

const may = (p: Actor, permission: Permission) => p.kind === 'cli' || allows(p, permission)
const actorId = (p: Actor) => (p.kind === 'cli' ? null : p.tokenId)

export async function createToken(deps: Deps, p: Actor, input: CreateInput, request?: RequestFacts): Promise<IssuedToken> {
  const rule = KINDS[input.kind]
  refuseJwt(p)
  const name = requireName(input.name)
  const expiresAt = lifetime(rule, input.expires_at)
  return withOrg(deps.sql, p.orgId, async (tx) => {
    const actor = await asNow(tx, p)
    const scopes =
      input.kind === 'personal'
        ? personalScopes(personRole(actor), input.scopes)
        : scopesFor(actor, input.kind, rule, input.scopes)
    const t = await issueToken(tx, {
      format: rule.format,
      name,
      scopes,
      expiresAt,
      createdBy: actorId(p),
      memberId: p.kind === 'member' && input.kind === 'personal' ? p.memberId : null,
    })
    await audit(tx, p, request, `${auditNoun(input.kind)}.create`, t.id, null, t)
    return t
  })
}

/**
 * A person as they are now, their role held until the transaction ends (FOR SHARE): the role
 * their sign-in remembered may be seconds old, and a credential made under a role just taken
 * away would outlive the change. Every other actor is as it came.
 */
async function asNow(tx: Tx, p: Actor): Promise<Actor> {
  if (p.kind !== 'member') return p
  const row = await holdMember(tx, p.memberId)
  if (!row || row.status !== 'active') throw new ForbiddenError('This person is no longer a member of the organization.')
  return row.role === p.role ? p : { ...p, role: row.role }
}

/** The role a personal token is made under: only people have one. */
function personRole(p: Actor): MemberRole {
  if (p.kind !== 'member') {
    throw new ForbiddenError('A personal token belongs to a person: create it signed in through the identity provider.')
  }
  return p.role
}

function personalScopes(role: MemberRole, asked: readonly string[] | undefined): readonly string[] {
  const held = PEOPLE_SCOPES.filter((s) => roleAllows(role, s))
  const scopes = asked ?? held
  const above = scopes.filter((s) => !(held as readonly string[]).includes(s))
  if (above.length > 0) {
    throw new ForbiddenError(
      `The ${role} role does not hold ${above.map((s) => `"${s}"`).join(', ')}: a personal token cannot exceed it.`,
    )
  }
  return scopes
}

/** A JWT makes no opaque token: the token would outlive the JWT, its chain and their revocation. */
function refuseJwt(p: Actor): void {
  if (p.kind === 'jwt')
    throw new ForbiddenError('A JWT makes no opaque token (it would outlive the JWT): use an admin key, or sign in.')
}

function scopesFor(
  p: Actor,
  kind: Exclude<TokenKindName, 'personal'>,
  rule: KindRule,
  asked: readonly Scope[] | undefined,
): readonly string[] {
  requirePermission(p, rule.permission, kind)
  if (rule.scopes) {
    if (asked !== undefined) throw new ValidationError([{ path: '/scopes', message: `a ${kind} token's scopes are fixed` }])
    return rule.scopes
  }
  if (asked === undefined) throw new ValidationError([{ path: '/scopes', message: `a ${kind} token needs its scopes` }])
  requireGrantable(p, asked)
  return asked
}

/** `ingest` is no power over the org's data: whoever manages tokens may give it. */
function requireGrantable(p: Actor, scopes: readonly string[]): void {
  const above = scopes.filter((s) => !(s === 'ingest' ? may(p, 'manage') : may(p, s as Permission)))
  if (above.length > 0) {
    throw new ForbiddenError(`This credential cannot grant ${above.map((s) => `"${s}"`).join(', ')}: it does not hold it.`)
  }
}

function requirePermission(p: Actor, permission: Permission, kind: TokenKindName): void {
  if (!may(p, permission)) throw new ForbiddenError(`Managing ${kind} tokens needs the "${permission}" permission.`)
}

function lifetime(rule: KindRule, raw: string | undefined): Date | null {
  const now = Date.now()
  if (raw === undefined) return rule.defaultLifetimeMs === null ? null : new Date(now + rule.defaultLifetimeMs)
  const at = new Date(raw)
  if (!(at.getTime() > now) || at.getTime() > now + rule.maxLifetimeMs) {
    throw new ValidationError([
      { path: '/expires_at', message: `must be in the future and within ${Math.round(rule.maxLifetimeMs / 3600_000)} hours` },
    ])
  }
  return at
}

export interface ListInput {
  kind?: TokenKindName
  member_id?: string
  active?: boolean
}

/**
 * `manage` sees every token; a person signed in without it sees their own personal tokens.
 * Machine credentials and agents' JWTs see none.
 */
export function listVisibleTokens(deps: Deps, p: Actor, q: ListInput, limit: number, after: Keyset | null) {
  const everything = may(p, 'manage')
  if (!everything && p.kind !== 'member') throw new ForbiddenError('Listing tokens needs the "manage" permission.')
  const memberId = everything ? q.member_id : p.kind === 'member' ? p.memberId : undefined
  if (!everything && q.member_id !== undefined && q.member_id !== memberId) {
    throw new ForbiddenError('Listing another member’s tokens needs the "manage" permission.')
  }
  const kinds = !everything ? ['personal'] : q.kind ? [KINDS[q.kind].format.kind] : undefined
  if (!everything && q.kind !== undefined && q.kind !== 'personal') {
    throw new ForbiddenError('Listing tokens other than your personal ones needs the "manage" permission.')
  }
  return withOrg(deps.sql, p.orgId, (tx) =>
    listTokens(tx, { kinds, ...(memberId ? { memberId } : {}), active: q.active === true }, limit, after),
  )
}

/**
 * Revokes a token the caller may manage (a person without `manage`: only their own personal
 * tokens); `only` limits the kinds (the deploy-token routes, the CLI's commands). A deploy token
 * is retired: refused for new machines, still serving its own (SPEC §3.2). Idempotent; the
 * publication is repeated so a failed one is retried.
 */
export async function revokeToken(
  deps: Deps,
  p: Actor,
  rawId: string,
  request?: RequestFacts,
  only?: readonly TokenKindName[],
): Promise<void> {
  const id = tokenId(rawId)
  const revoked = await withOrg(deps.sql, p.orgId, async (tx) => {
    const actor = await asNow(tx, p)
    const before = await tokenFor(tx, actor, id, only)
    const rows = await revokeTokens(tx, { kind: before.kind, id })
    if (rows[0]?.revokedNow) {
      await audit(tx, p, request, `${auditNoun(kindName(before.kind))}.revoke`, id, before, await getToken(tx, id))
    }
    return rows
  })
  await deps.resolver?.revoked(revoked)
}

/**
 * A new token of the same kind, name, scopes and owner; the old one keeps working for
 * `overlapS` seconds (0: revoked now). Whoever rotates gets the new value, so they must be able
 * to create that token (personal: its owner, within their role now). The old token's caches are
 * dropped after the commit so that its new end is read from Postgres.
 */
export async function rotateToken(
  deps: Deps,
  p: Actor,
  rawId: string,
  overlapS: number,
  request?: RequestFacts,
  only?: readonly TokenKindName[],
) {
  const id = tokenId(rawId)
  const now = Date.now()
  refuseJwt(p)
  const out = await withOrg(deps.sql, p.orgId, async (tx) => {
    const actor = await asNow(tx, p)
    const before = await tokenFor(tx, actor, id, only)
    const kind = kindName(before.kind)
    if (!KINDS[kind].rotatable) {
      throw new BadRequestError(`A ${kind} token cannot be rotated: create a new one and revoke this one.`)
    }
    if (before.machine_id) throw new BadRequestError('A machine’s service token is replaced by registering the machine again.')
    if (kind === 'personal') {
      if (!(p.kind === 'member' && p.memberId === before.member_id)) {
        throw new ForbiddenError('Only its owner rotates a personal token (the new value is theirs alone).')
      }
      personalScopes(personRole(actor), before.scopes)
    } else if (!KINDS[kind].scopes) {
      requireGrantable(actor, before.scopes)
    }
    if (before.revoked_at || before.replaced_by || (before.expires_at && before.expires_at.getTime() <= now)) {
      throw new AppError(409, 'token_not_active', 'Only an active token that was not rotated already can be rotated.')
    }
    const life = before.expires_at ? before.expires_at.getTime() - before.created_at.getTime() : null
    const next = await issueToken(tx, {
      format: KINDS[kind].format,
      name: before.name,
      scopes: before.scopes,
      expiresAt: life === null ? null : new Date(now + life),
      createdBy: actorId(p),
      memberId: before.member_id,
    })
    if (overlapS === 0) await revokeTokens(tx, { kind: before.kind, id })
    const previous = await retireAt(tx, id, new Date(now + overlapS * 1000), next.id)
    await audit(tx, p, request, `${auditNoun(kind)}.rotate`, id, before, previous, {
      successor: next.id,
      overlap_seconds: overlapS,
    })
    await audit(tx, p, request, `${auditNoun(kind)}.create`, next.id, null, next, { rotated_from: id })
    return { next, previous }
  })
  await deps.resolver?.revoked([{ id, hash: out.previous.token_hash }])
  return out
}

/**
 * The token, locked, if the caller may change it: its kind's permission (personal: `manage`, or
 * its owner). A token the caller may not see at all is the 404 of one that is not there.
 */
async function tokenFor(tx: Tx, p: Actor, id: string, only: readonly TokenKindName[] | undefined): Promise<TokenRow> {
  const t = await getToken(tx, id, true)
  if (!t || (only && !only.includes(kindName(t.kind)))) throw tokenNotFound()
  const kind = kindName(t.kind)
  if (kind === 'personal') {
    if (may(p, 'manage') || (p.kind === 'member' && p.memberId === t.member_id)) return t
    throw tokenNotFound()
  }
  if (!may(p, 'manage') && !may(p, KINDS[kind].permission)) throw tokenNotFound()
  requirePermission(p, KINDS[kind].permission, kind)
  return t
}

const tokenId = (raw: string) => uuidOr(raw, tokenNotFound)

const tokenNotFound = () => new NotFoundError('No token with that id in this organization.')

const auditNoun = (kind: TokenKindName) => (kind === 'admin' ? 'admin_key' : `${kind}_token`)

async function audit(
  tx: Tx,
  p: Actor,
  request: RequestFacts | undefined,
  action: string,
  targetId: string,
  before: TokenRow | null,
  after: TokenRow | null,
  extra: Record<string, unknown> = {},
): Promise<void> {
  await recordAudit(tx, {
    ...(p.kind === 'cli' ? { actorType: 'cli' as const } : auditActor(p)),
    action,
    targetType: 'api_token',
    targetId,
    request,
    details: { before: before && tokenView(before), after: after && tokenView(after), ...extra },
  })
}
