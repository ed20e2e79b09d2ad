/**
 * @module http/method-not-allowed
 * 405 with `Allow` for a known path asked with a method it does not have (RFC 9110 §15.5.6;
 * issue 14: it used to be a 404, which reads as "wrong URL" to a first-time user). The methods
 * come from every route of the app, registry or not, so the answer cannot drift from the routes.
 */
import type { Context, Hono } from 'hono'
import type { AppEnv } from './request-context.ts'
import { problem } from './problem.ts'

interface Pattern {
  re: RegExp
  method: string
}

/** Hono path syntax to an anchored expression: `:name` (optionally `:name{re}`) and `*`. */
function compile(path: string): RegExp {
  let out = ''
  for (const part of path.split(/(:[A-Za-z0-9_]+(?:\{[^}]*\})?\??|\*)/)) {
    if (part === '*') out += '.*'
    else if (part.startsWith(':')) {
      const custom = /\{([^}]*)\}/.exec(part)
      out += custom ? `(?:${custom[1]})` : '[^/]+'
      if (part.endsWith('?')) out += '?'
    } else out += part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(`^${out}$`)
}

/** Finds the methods of a path; compiled once the routes are all mounted (first unmatched request). */
export function allowedMethods(app: Hono<AppEnv>): (path: string) => string[] {
  let compiledFor = -1
  let patterns: Pattern[] = []
  return (path) => {
    if (compiledFor !== app.routes.length) {
      // Middleware (`app.use`) registers as ALL; it makes no path "known".
      patterns = app.routes
        .filter((r) => r.method !== 'ALL')
        .map((r) => ({ re: compile(r.path), method: r.method.toUpperCase() }))
      compiledFor = app.routes.length
    }
    const methods = new Set(patterns.filter((p) => p.re.test(path)).map((p) => p.method))
    // Hono answers HEAD with the GET route (no body).
    if (methods.has('GET')) methods.add('HEAD')
    return [...methods].sort()
  }
}

/** The not-found handler: 405 + Allow when the path exists with other methods, else 404. */
export function notFoundOrNotAllowed(app: Hono<AppEnv>) {
  const methodsOf = allowedMethods(app)
  return (c: Context<AppEnv>): Response => {
    const instance = `urn:request:${c.get('requestId')}`
    const allow = methodsOf(c.req.path)
    if (allow.length > 0) {
      return problem({
        status: 405,
        code: 'method_not_allowed',
        detail: `${c.req.method} is not allowed on ${c.req.path}; allowed: ${allow.join(', ')}.`,
        instance,
        headers: { Allow: allow.join(', ') },
      })
    }
    return problem({ status: 404, code: 'not_found', detail: `No route for ${c.req.method} ${c.req.path}.`, instance })
  }
}
