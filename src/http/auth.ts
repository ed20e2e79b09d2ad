/**
 * @module http/auth
 * Bearer authentication for every credential: opaque tokens (admin keys, deploy/service/personal
 * tokens) and the JWT-bearing `qt_app_ … qt_override_` tokens (src/auth/jwt/validator.ts).
 * 401 when the credential is missing, malformed, unknown, revoked or invalid (one message for all,
 * so a caller learns nothing about which), with code `token_expired` only for a genuine token past
 * its expiry; 403 when it is valid but lacks the scope.
 *
 * Legacy `X-API-Key: <key>` (SPEC §16.9) is accepted when there is no Authorization header, and
 * every answer to such a request, errors included, carries the deprecation header.
 */
import type { Context, MiddlewareHandler } from 'hono'
import type { CredentialResolver, Principal } from '../auth/credentials.ts'
import {
  AppError,
  ForbiddenError,
  NotAMemberError,
  OrgRequiredError,
  TokenExpiredError,
  UnauthorizedError,
  UnavailableError,
} from '../errors.ts'
import { allows, type Permission } from './permissions.ts'
import type { AppEnv } from './request-context.ts'

export const DEPRECATION_HEADER = 'X-Quint-Deprecation'
/** A person in several orgs names the one this request is for (docs/people.md). */
export const ORG_HEADER = 'X-Quint-Org'
export const DEPRECATION_TEXT = 'X-API-Key auth is deprecated; migrate to Bearer token auth'

const INVALID_DETAIL = 'The token is invalid, expired or revoked.'

/**
 * The raw credential the request presents (Bearer, or the deprecated X-API-Key); throws 401
 * problems. The fleet stream keeps it to authenticate again while it is held.
 */
export function presentedCredential(c: Context<AppEnv>): string {
  const header = c.req.header('authorization')
  if (header === undefined) {
    const legacy = c.req.header('x-api-key')
    if (legacy === undefined) throw new UnauthorizedError('Authorization header required.')
    return legacy.trim()
  }
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
  if (!match) throw new UnauthorizedError('The Authorization header must be "Bearer <token>".')
  return match[1]!
}

/** The principal for the request's credential; throws 401 problems. Sets the legacy header. */
export async function authenticate(c: Context<AppEnv>, resolver: CredentialResolver): Promise<Principal> {
  const raw = presentedCredential(c)
  if (isLegacy(c)) c.header(DEPRECATION_HEADER, DEPRECATION_TEXT)
  const out = await resolver.authenticate(raw, { org: c.req.header(ORG_HEADER), request: c.get('request') })
  if (out.principal) return out.principal
  switch (out.reason) {
    case 'expired':
      throw new TokenExpiredError()
    case 'unavailable':
      throw new UnavailableError("The identity provider's keys cannot be loaded; try again shortly.", 10)
    case 'not_a_member':
      throw new NotAMemberError()
    case 'org_required':
      throw new OrgRequiredError(out.orgs)
    default:
      throw new UnauthorizedError(INVALID_DETAIL)
  }
}

/** Adds the deprecation header to an error answer of a legacy X-API-Key request. */
function tagLegacy(c: Context<AppEnv>, err: unknown): unknown {
  if (err instanceof AppError && isLegacy(c)) err.headers[DEPRECATION_HEADER] = DEPRECATION_TEXT
  return err
}

const isLegacy = (c: Context<AppEnv>) => c.req.header('authorization') === undefined && c.req.header('x-api-key') !== undefined

/** After the handler: its answer (or the error mapper's) carries the header too. */
function tagLegacyResponse(c: Context<AppEnv>): void {
  if (isLegacy(c)) c.res.headers.set(DEPRECATION_HEADER, DEPRECATION_TEXT)
}

export const requireAuth = (resolver: CredentialResolver, options: { permission: Permission }): MiddlewareHandler<AppEnv> =>
  async function requireAuth(c, next) {
    try {
      const principal = await authenticate(c, resolver)
      // A revoked deploy token serves only its machines' daemon calls: anywhere else it is the
      // revoked credential it is (401), not a weak one (403).
      if ('retired' in principal && principal.retired && !allows(principal, options.permission)) {
        throw new UnauthorizedError(INVALID_DETAIL)
      }
      if (!allows(principal, options.permission)) {
        throw new ForbiddenError(
          principal.kind === 'member'
            ? `The ${principal.role} role does not have the "${options.permission}" permission.`
            : `This credential does not have the "${options.permission}" permission.`,
        )
      }
      c.set('principal', principal)
    } catch (err) {
      throw tagLegacy(c, err)
    }
    await next()
    tagLegacyResponse(c)
  }

/** Any accepted credential, whatever its scopes (introspection, parent-token minting). */
export const requireAnyAuth = (resolver: CredentialResolver): MiddlewareHandler<AppEnv> =>
  async function requireAnyAuth(c, next) {
    try {
      const principal = await authenticate(c, resolver)
      if (!allows(principal, 'authenticated')) throw new UnauthorizedError(INVALID_DETAIL)
      c.set('principal', principal)
    } catch (err) {
      throw tagLegacy(c, err)
    }
    await next()
    tagLegacyResponse(c)
  }
