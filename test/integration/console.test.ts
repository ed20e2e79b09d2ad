/**
 * The console's files over HTTP (issue 12), as the composed app serves them: the page with its
 * sign-in settings and Content-Security-Policy, its hashed scripts and styles cached for a year,
 * compressed as the browser asks, revalidated by ETag. The browser tests (test/browser/) run it.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
beforeAll(async () => {
  db = await testDatabase()
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db?.drop()
}, HOOK_TIMEOUT_MS)

const get = (app: ReturnType<typeof testApp>['app'], path: string, headers: Record<string, string> = {}) =>
  app.fetch(new Request(`http://test${path}`, { headers }))

const settingsOf = (html: string) =>
  JSON.parse(
    /<meta name="quint-console" content="([^"]*)">/
      .exec(html)![1]!
      .replaceAll('&quot;', '"')
      .replaceAll('&lt;', '<')
      .replaceAll('&gt;', '>')
      .replaceAll('&amp;', '&'),
  ) as { oidc: { issuer: string; client_id: string; scopes: string } | null; version: string }

describe('the console over HTTP', () => {
  test('GET / is the page: no credential needed, its settings in a meta tag, a strict CSP, revalidated', async () => {
    const { app } = testApp(db)
    const res = await get(app, '/')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toStartWith('text/html')
    expect(res.headers.get('cache-control')).toBe('no-cache')
    const csp = res.headers.get('content-security-policy')!
    expect(csp).toContain("script-src 'self'")
    expect(csp).toContain("style-src 'self'")
    expect(csp).toContain("connect-src 'self';")
    expect(csp).toContain("frame-ancestors 'none'")
    expect(csp).not.toContain('unsafe')
    const html = await res.text()
    expect(settingsOf(html)).toEqual({ oidc: null, version: expect.any(String) })
    // No inline script: everything the page runs comes from a hashed file of this origin.
    expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/)
    const again = await get(app, '/', { 'if-none-match': res.headers.get('etag')! })
    expect(again.status).toBe(304)
  })

  test('its scripts and styles: immutable, brotli or gzip as accepted, identical once decoded', async () => {
    const { app } = testApp(db)
    const html = await (await get(app, '/')).text()
    const files = [...html.matchAll(/(?:src|href)="\.?\/(chunk-[a-z0-9]+\.(?:js|css))"/g)].map((m) => `/${m[1]}`)
    expect(files.filter((f) => f.endsWith('.js'))).toHaveLength(1)
    expect(files.filter((f) => f.endsWith('.css'))).toHaveLength(1)
    for (const file of files) {
      const plain = await get(app, file)
      expect(plain.status).toBe(200)
      expect(plain.headers.get('cache-control')).toBe('public, max-age=31536000, immutable')
      expect(plain.headers.get('content-encoding')).toBeNull()
      expect(plain.headers.get('vary')).toContain('Accept-Encoding')
      const body = Buffer.from(await plain.arrayBuffer())
      const br = await get(app, file, { 'accept-encoding': 'gzip, deflate, br' })
      expect(br.headers.get('content-encoding')).toBe('br')
      const brBody = Buffer.from(await br.arrayBuffer())
      expect(brBody.length).toBeLessThan(body.length)
      expect(brotliDecompressSync(brBody).equals(body)).toBe(true)
      const gz = await get(app, file, { 'accept-encoding': 'gzip' })
      expect(gz.headers.get('content-encoding')).toBe('gzip')
      expect(gunzipSync(Buffer.from(await gz.arrayBuffer())).equals(body)).toBe(true)
    }
  })

  test('encodings are negotiated by their weights, each with its own ETag; If-None-Match takes lists and weak tags', async () => {
    const { app } = testApp(db)
    const enc = async (accept: string) => (await get(app, '/', { 'accept-encoding': accept })).headers.get('content-encoding')
    expect(await enc('br;q=0, gzip')).toBe('gzip')
    expect(await enc('gzip;q=0, deflate')).toBeNull()
    expect(await enc('x-br, x-gzip')).toBeNull()
    expect(await enc('*')).toBe('br')
    expect(await enc('*, br;q=0')).toBe('gzip')
    const br = (await get(app, '/', { 'accept-encoding': 'br' })).headers.get('etag')!
    const gzip = (await get(app, '/', { 'accept-encoding': 'gzip' })).headers.get('etag')!
    const plain = (await get(app, '/')).headers.get('etag')!
    expect(new Set([br, gzip, plain]).size).toBe(3)
    const revalidate = (inm: string, accept = 'br') =>
      Promise.resolve(get(app, '/', { 'accept-encoding': accept, 'if-none-match': inm })).then((r) => r.status)
    expect(await revalidate(`"other", W/${br}`)).toBe(304)
    expect(await revalidate(br, 'gzip')).toBe(200)
  })

  test('an unknown file is a 404 problem, and the API keeps its paths', async () => {
    const { app } = testApp(db)
    const missing = await get(app, '/chunk-0000000000.js')
    expect(missing.status).toBe(404)
    expect(missing.headers.get('content-type')).toStartWith('application/problem+json')
    expect((await get(app, '/health')).status).toBe(200)
    expect((await get(app, '/v1/alerts')).status).toBe(401)
  })

  test('with an identity provider and a console client id, the page names them and the CSP lets it reach the provider', async () => {
    const { app } = testApp(db, {
      OIDC_ISSUER: 'https://idp.example.com/realms/acme',
      OIDC_AUDIENCE: 'quint',
      CONSOLE_OIDC_CLIENT_ID: 'quint-console',
    })
    const res = await get(app, '/')
    expect(res.headers.get('content-security-policy')).toContain("connect-src 'self' https://idp.example.com;")
    expect(settingsOf(await res.text()).oidc).toEqual({
      issuer: 'https://idp.example.com/realms/acme',
      client_id: 'quint-console',
      scopes: 'openid email profile',
    })
  })
})
