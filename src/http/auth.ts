/**
 * @module http/auth
 * Bearer authentication for opaque credentials (admin keys, deploy/service/personal tokens).
 * 401 when the credential is missing, malformed, unknown, revoked or expired (one message for all,
 * so a caller learns nothing about which); 403 when it is valid but lacks the scope.
 */
import type { MiddlewareHandler } from 'hono'
import { hasScope, type CredentialResolver } from '../auth/credentials.ts'
import { ForbiddenError, UnauthorizedError } from '../errors.ts'
import type { AppEnv } from './request-context.ts'

export const requireAuth = (
  resolver: CredentialResolver,
  options: { scope: string },
): MiddlewareHandler<AppEnv> =>
  async function requireAuth(c, next) {
    const header = c.req.header('authorization')
    if (!header) throw new UnauthorizedError('Authorization header required.')
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
    if (!match) throw new UnauthorizedError('The Authorization header must be "Bearer <token>".')
    const principal = await resolver.resolve(match[1]!)
    if (!principal) throw new UnauthorizedError('The token is invalid, expired or revoked.')
    if (!hasScope(principal, options.scope)) {
      throw new ForbiddenError(`This credential lacks the "${options.scope}" scope.`)
    }
    c.set('principal', principal)
    await next()
  }
