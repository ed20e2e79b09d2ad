/**
 * @module http/request-context
 * Per-request id (client's `X-Request-Id` when sane, else a UUID), a child logger carrying it,
 * and one access-log line per request.
 */
import type { Context, MiddlewareHandler } from 'hono'
import { isIP } from 'node:net'
import type { Principal, RequestOrigin } from '../auth/credentials.ts'
import type { Logger } from '../infra/log.ts'

export interface AppEnv {
  Variables: {
    requestId: string
    /** What the audit log records of the request (docs/audit-log.md). */
    request: RequestFacts
    log: Logger
    principal: Principal
  }
}

export type RequestFacts = RequestOrigin

const MAX_USER_AGENT = 512

const SANE_ID = /^[A-Za-z0-9._:-]{1,128}$/

export const requestContext = (
  log: Logger,
  options: { trustProxyHops: number } = { trustProxyHops: 0 },
): MiddlewareHandler<AppEnv> =>
  async function requestContext(c, next) {
    const given = c.req.header('x-request-id')
    const requestId = given && SANE_ID.test(given) ? given : crypto.randomUUID()
    const child = log.child({ requestId })
    c.set('requestId', requestId)
    const agent = c.req.header('user-agent')
    c.set('request', {
      id: requestId,
      sourceIp: clientIp(c, options.trustProxyHops),
      userAgent: agent ? agent.slice(0, MAX_USER_AGENT) : null,
    })
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
 * The client's address. Behind `hops` proxies we run (load balancers), X-Forwarded-For's entry
 * that the outermost of them added; anything further left was written by the client and proves
 * nothing. Without proxies, the peer address of the connection (Bun's `requestIP`; none when the
 * app is called in process).
 */
function clientIp(c: Context<AppEnv>, hops: number): string | null {
  if (hops > 0) {
    const chain = (c.req.header('x-forwarded-for') ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
    const ip = chain[chain.length - hops]
    return ip && isIP(ip) ? ip : null
  }
  const server = c.env as { requestIP?: (req: Request) => { address: string } | null } | undefined
  const peer = server?.requestIP?.(c.req.raw)?.address
  return peer && isIP(peer) ? peer : null
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
