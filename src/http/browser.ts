/**
 * @module http/browser
 * What a browser dashboard on another origin needs from the API, and what every answer should
 * tell a browser (issue 10): CORS for the origins in `CORS_ORIGINS` only, and security headers on
 * every response.
 *
 * CORS: an allowed origin gets `Access-Control-Allow-Origin` naming it (never `*`: credentials
 * are allowed), `Vary: Origin`, and the headers a client must read exposed (`Retry-After`,
 * `X-Request-Id`, the RateLimit fields, `Location`, `ETag`). A preflight from an allowed origin
 * is answered 204 here, before routing; one from any other origin gets 403 problem+json, so the
 * refusal is visible instead of an opaque browser error. Without `CORS_ORIGINS` no CORS header is
 * ever sent.
 *
 * Security headers are set before the handler (set after, Hono rebuilds a finished response
 * around its body: issue 9 measured ~0.1 ms on a 35 KB page), so a route that needs another
 * value (the docs page's CSP, the JWKS's cache lifetime) simply sets its own.
 */
import type { Context, MiddlewareHandler } from 'hono'
import { OriginNotAllowedError } from '../errors.ts'
import type { AppEnv } from './request-context.ts'

const ALLOW_METHODS = 'GET, POST, PUT, PATCH, DELETE'
/** Request headers the API reads: credentials, bodies, idempotency, revalidation, org choice, tracing, signatures. */
const ALLOW_HEADERS =
  'Authorization, Content-Type, Content-Encoding, Idempotency-Key, If-None-Match, X-Quint-Org, X-Request-Id, X-Action-Signature, X-API-Key'
/** Answer headers a client reads. */
const EXPOSE_HEADERS =
  'Retry-After, X-Request-Id, RateLimit, RateLimit-Policy, Location, ETag, X-Quint-Deprecation, Idempotent-Replayed'
const PREFLIGHT_MAX_AGE_S = '600'

export function cors(origins: readonly string[]): MiddlewareHandler<AppEnv> {
  const allowed = new Set(origins)
  if (allowed.size === 0) return (_c, next) => next()
  return async function cors(c, next) {
    const origin = c.req.header('origin')
    const preflight = c.req.method === 'OPTIONS' && c.req.header('access-control-request-method') !== undefined
    const granted = origin !== undefined && allowed.has(origin)
    if (preflight) {
      if (!granted) throw new OriginNotAllowedError()
      return c.body(null, 204, {
        ...allowedFor(origin),
        Vary: 'Origin',
        'Access-Control-Allow-Methods': ALLOW_METHODS,
        'Access-Control-Allow-Headers': ALLOW_HEADERS,
        'Access-Control-Max-Age': PREFLIGHT_MAX_AGE_S,
      })
    }
    const headers: Record<string, string> = granted
      ? { ...allowedFor(origin), 'Access-Control-Expose-Headers': EXPOSE_HEADERS }
      : {}
    for (const [name, value] of Object.entries(headers)) c.header(name, value)
    await next()
    // An error answer (401, 429…) is built anew by the error mapper: the dashboard must be able
    // to read it too. Every answer varies by Origin, refused ones included, or a shared cache
    // could hand the dashboard an answer stored for another origin (the public keys are
    // cacheable for 5 minutes).
    const vary = c.res.headers.get('Vary')
    const varies = vary !== null && vary.split(',').some((v) => v.trim().toLowerCase() === 'origin')
    completeHeaders(c, { ...headers, ...(varies ? {} : { Vary: vary ? `${vary}, Origin` : 'Origin' }) })
    return undefined
  }
}

const allowedFor = (origin: string) => ({
  'Access-Control-Allow-Origin': origin,
  // Issue 10 asks for credentials: none of ours are ambient (bearer tokens), but a dashboard
  // behind a proxy that adds a cookie must still be able to call.
  'Access-Control-Allow-Credentials': 'true',
})

/**
 * Sets the headers `c.res` lacks, copying the answer once (each `c.header` on a finished answer
 * copies it: Hono 4.13). Answers built outside the context (the error mapper, 404s, a route's own
 * Response) pass through here.
 */
function completeHeaders(c: Context<AppEnv>, wanted: Record<string, string>): void {
  const missing = Object.entries(wanted).filter(([name]) => !c.res.headers.has(name) || name === 'Vary')
  if (missing.length === 0) return
  const headers = new Headers(c.res.headers)
  for (const [name, value] of missing) headers.set(name, value)
  c.res = new Response(c.res.body, { status: c.res.status, statusText: c.res.statusText, headers })
}

/** Headers every answer carries; a route may set its own value of any of them. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  // JSON answers load nothing and are framed by nobody.
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
  // Ignored by browsers over plain HTTP; in force behind the TLS-terminating load balancer.
  'Strict-Transport-Security': 'max-age=63072000; includeSubDomains',
  // Answers hold an org's data: no shared or browser cache keeps them.
  'Cache-Control': 'no-store',
}

export function securityHeaders(): MiddlewareHandler<AppEnv> {
  const entries = Object.entries(SECURITY_HEADERS)
  return async function securityHeaders(c, next) {
    for (const [name, value] of entries) c.header(name, value)
    await next()
    completeHeaders(c, SECURITY_HEADERS)
  }
}
