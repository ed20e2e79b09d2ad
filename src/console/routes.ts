/**
 * @module console/routes
 * Serves the console (issue 12) at `/` from the same binary as the API: the page, and its hashed
 * scripts and styles at `/chunk-<hash>.(js|css)`. The API keeps its paths; the console reads only
 * the public API, with the credential its user signed in with (./ui/auth.ts).
 *
 * The page carries its sign-in settings in a `<meta name="quint-console">` (no inline script), and
 * a Content-Security-Policy that allows scripts and styles from this origin only, and connections
 * to this origin and to the identity provider's (OIDC discovery and the code exchange of
 * Authorization Code + PKCE happen in the browser: the console is a public client).
 */
import type { Context, Hono } from 'hono'
import { NotFoundError } from '../errors.ts'
import type { AppEnv } from '../http/request-context.ts'
import type { Logger } from '../infra/log.ts'
import { loadConsoleFiles, type ConsoleFile, type ConsoleFiles } from './assets.ts'

export interface ConsoleSettings {
  /** Authorization Code + PKCE against this provider; null: API-key sign-in only. */
  oidc: { issuer: string; client_id: string; scopes: string } | null
  version: string
}

const ASSET = '/:file{chunk-[a-z0-9]+\\.(?:js|css)}'
const IMMUTABLE = 'public, max-age=31536000, immutable'

export function consoleCsp(settings: ConsoleSettings): string {
  const idp = settings.oidc ? ` ${new URL(settings.oidc.issuer).origin}` : ''
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src 'self'${idp}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ')
}

export function mountConsole(app: Hono<AppEnv>, settings: ConsoleSettings, log: Logger): void {
  const meta = `<meta name="quint-console" content="${escapeAttribute(JSON.stringify(settings))}">`
  let files: Promise<ConsoleFiles> | null = null
  const load = () => {
    files ??= loadConsoleFiles((html) => html.replace('<head>', `<head>${meta}`)).catch((err: unknown) => {
      files = null
      log.error({ err }, 'the console could not be built')
      throw err
    })
    return files
  }
  const csp = consoleCsp(settings)
  app.get('/', async (c) => send(c, (await load()).get('/')!, csp))
  app.get(ASSET, async (c) => {
    const file = (await load()).get(c.req.path)
    if (!file) throw new NotFoundError('No such file of the console: it may be from an older version; reload the page.')
    return send(c, file, csp)
  })
}

function send(c: Context<AppEnv>, file: ConsoleFile, csp: string): Response {
  const encoding = negotiate(c.req.header('accept-encoding') ?? '')
  const etag = file.etag[encoding]
  const headers: Record<string, string> = {
    'Content-Type': file.type,
    ETag: etag,
    Vary: 'Accept-Encoding',
    'Cache-Control': file.immutable ? IMMUTABLE : 'no-cache',
    'Content-Security-Policy': csp,
  }
  if (matches(c.req.header('if-none-match'), etag)) return c.body(null, 304, headers)
  if (encoding !== 'identity') headers['Content-Encoding'] = encoding
  const body = encoding === 'br' ? file.br : encoding === 'gzip' ? file.gzip : file.body
  return c.body(body as Uint8Array<ArrayBuffer>, 200, headers)
}

/** The encoding to answer with: brotli, else gzip, else none; `q=0` refuses one (RFC 9110 §12.5.3). */
export function negotiate(header: string): 'br' | 'gzip' | 'identity' {
  const q = new Map<string, number>()
  for (const part of header.split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';')
    if (!name) continue
    const weight = params.map((p) => /^\s*q=([0-9.]+)\s*$/.exec(p)?.[1]).find((v) => v !== undefined)
    q.set(name, weight === undefined ? 1 : Number(weight))
  }
  const accepts = (name: string) => (q.get(name) ?? q.get('*') ?? 0) > 0
  return accepts('br') ? 'br' : accepts('gzip') ? 'gzip' : 'identity'
}

/** If-None-Match: a list, weak tags included (the weak comparison of RFC 9110 §13.1.2). */
function matches(header: string | undefined, etag: string): boolean {
  if (!header) return false
  return header.split(',').some((t) => {
    const tag = t.trim().replace(/^W\//, '')
    return tag === '*' || tag === etag
  })
}

const escapeAttribute = (s: string) =>
  s.replaceAll('&', '&amp;').replaceAll('"', '&quot;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
