/**
 * @module http/request-context
 * Per-request id (client's `X-Request-Id` when sane, else a UUID), a child logger carrying it,
 * and one access-log line per request.
 */
import type { MiddlewareHandler } from 'hono'
import type { Principal } from '../auth/credentials.ts'
import type { Logger } from '../infra/log.ts'

export interface AppEnv {
  Variables: {
    requestId: string
    log: Logger
    principal: Principal
  }
}

const SANE_ID = /^[A-Za-z0-9._:-]{1,128}$/

export const requestContext = (log: Logger): MiddlewareHandler<AppEnv> =>
  async function requestContext(c, next) {
    const given = c.req.header('x-request-id')
    const requestId = given && SANE_ID.test(given) ? given : crypto.randomUUID()
    const child = log.child({ requestId })
    c.set('requestId', requestId)
    c.set('log', child)
    const started = performance.now()
    await next()
    c.header('X-Request-Id', requestId)
    const status = c.res.status
    child[status >= 500 ? 'error' : 'info'](
      {
        method: c.req.method,
        route: c.req.routePath,
        status,
        duration_ms: Math.round((performance.now() - started) * 100) / 100,
        org_id: c.get('principal')?.orgId,
      },
      'request',
    )
  }
