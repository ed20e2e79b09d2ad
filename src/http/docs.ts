/**
 * @module http/docs
 * `GET /docs`: an API reference for `/openapi.json`, rendered in the browser by Scalar (issue 14).
 * The Scalar standalone bundle (`@scalar/api-reference`, a dev dependency) is embedded in the
 * executable by `bun build --compile` through the `type: 'file'` import, and served from
 * `/docs/scalar.js`: the binary works offline and nothing is fetched from a CDN. The page is
 * static HTML with no inline script and a strict Content-Security-Policy: scripts, data and fonts
 * from this origin only (Scalar's web fonts, its proxy and telemetry are switched off).
 */
import type { Hono } from 'hono'
// @ts-expect-error: a plain script, imported for its path (the package's exports map omits it)
import scalarBundle from '../../node_modules/@scalar/api-reference/dist/browser/standalone.js' with { type: 'file' }
import scalarPackage from '../../node_modules/@scalar/api-reference/package.json' with { type: 'json' }
import type { AppEnv } from './request-context.ts'

const BUNDLE_PATH = '/docs/scalar.js'
/** The page asks for the bundle by version, so a year-long cache never serves an old one. */
const BUNDLE_URL = `${BUNDLE_PATH}?v=${encodeURIComponent(scalarPackage.version)}`

const CONFIGURATION = JSON.stringify({ withDefaultFonts: false, telemetry: false, hideClientButton: false })

const PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>quint-cloud API reference</title>
  </head>
  <body>
    <script id="api-reference" type="application/json" data-url="/openapi.json"
      data-configuration="${CONFIGURATION.replaceAll('"', '&quot;')}"></script>
    <script src="${BUNDLE_URL}"></script>
  </body>
</html>
`

// Scalar injects its own <style> elements and style attributes: styles need 'unsafe-inline'.
export const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

const BUNDLE_CACHE = 'public, max-age=31536000, immutable'

export function mountDocs(app: Hono<AppEnv>): void {
  const etag = `"scalar-${scalarPackage.version}"`
  app.get('/docs', (c) =>
    c.html(PAGE, 200, {
      'Content-Security-Policy': DOCS_CSP,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'Cache-Control': 'no-cache',
    }),
  )
  app.get(BUNDLE_PATH, (c) => {
    const file = Bun.file(scalarBundle as unknown as string)
    // A 304's headers replace the cached ones (RFC 9111 §4.3.4): it repeats the cache lifetime.
    if (c.req.header('if-none-match') === etag) return c.body(null, 304, { ETag: etag, 'Cache-Control': BUNDLE_CACHE })
    return c.body(file.stream(), 200, {
      'Content-Type': 'text/javascript; charset=utf-8',
      'Content-Length': String(file.size),
      'Cache-Control': BUNDLE_CACHE,
      ETag: etag,
      'X-Content-Type-Options': 'nosniff',
    })
  })
}
