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
    // Set before the handler: set after, Hono rebuilds the finished response around its body
    // (issue 9: ~0.1 ms on a 35 KB page). Answers built outside the context (the error mapper,
    // 404s) get it afterwards.
    c.header('X-Request-Id', requestId)
    const started = performance.now()
    await next()
    if (!c.res.headers.has('X-Request-Id')) c.header('X-Request-Id', requestId)
    const status = c.res.status
    child[accessLevel(status, c.req.routePath)](
      {
        method: c.req.method,
        route: c.req.routePath,
        // An unmatched request has no route template: its path says what was asked (the query
        // string is left out, it may carry a credential).
        ...(status === 404 || status === 405 ? { path: c.req.path } : {}),
        status,
        duration_ms: Math.round((performance.now() - started) * 100) / 100,
        org_id: c.get('principal')?.orgId,
      },
      'request',
    )
  }

/**
 * 500s are errors; a 503 is a dependency or a start-up/drain state, expected in an outage and
 * already bounded by Retry-After, so a warning; /ready's 503s are how readiness is reported, not
 * a fault at all (issue 14: start-up 503s are not errors).
 */
function accessLevel(status: number, route: string): 'error' | 'warn' | 'info' {
  if (status === 503) return route === '/ready' ? 'info' : 'warn'
  return status >= 500 ? 'error' : 'info'
}
