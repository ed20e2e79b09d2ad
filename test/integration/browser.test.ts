/**
 * What a browser dashboard on another origin meets (issue 10, src/http/browser.ts): CORS for the
 * configured origins only, errors it can read, and security headers on every answer.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { ConfigError, loadConfig } from '../../src/config.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { SECURITY_HEADERS } from '../../src/http/browser.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'
import { testApp } from '../helpers/app.ts'

const DASHBOARD = 'https://app.example.com'
const DEV = 'http://localhost:5173'
let db: TestDatabase
let org: CreatedOrg
let open: ReturnType<typeof testApp>
let plain: ReturnType<typeof testApp>

beforeAll(async () => {
  db = await testDatabase()
  org = await createOrg(db.app, 'browser', 'cli')
  open = testApp(db, { CORS_ORIGINS: `${DASHBOARD}, ${DEV}` })
  plain = testApp(db)
}, HOOK_TIMEOUT_MS)
afterAll(() => db.drop(), HOOK_TIMEOUT_MS)

const preflight = (origin: string, path = '/v1/events') =>
  open.call('OPTIONS', path, {
    headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
  })

describe('CORS', () => {
  test('a preflight from a configured origin is answered 204 with what the browser needs', async () => {
    for (const origin of [DASHBOARD, DEV]) {
      const r = await preflight(origin)
      expect(r.status).toBe(204)
      expect(r.headers.get('access-control-allow-origin')).toBe(origin)
      expect(r.headers.get('access-control-allow-credentials')).toBe('true')
      expect(r.headers.get('access-control-allow-methods')).toContain('DELETE')
      expect(r.headers.get('access-control-allow-headers')).toContain('Authorization')
      expect(r.headers.get('access-control-allow-headers')).toContain('Content-Encoding')
      expect(r.headers.get('access-control-allow-headers')).toContain('X-Quint-Org')
      expect(Number(r.headers.get('access-control-max-age'))).toBeGreaterThan(0)
      expect(r.headers.get('vary')).toContain('Origin')
    }
  })

  test('a preflight from any other origin is a 403 problem, without CORS headers', async () => {
    for (const origin of ['https://evil.example', 'https://app.example.com.evil.example', 'null', 'https://APP.example.com']) {
      const r = await preflight(origin)
      expect({ origin, status: r.status, code: r.body?.code }).toEqual({ origin, status: 403, code: 'origin_not_allowed' })
      expect(r.headers.get('content-type')).toContain('application/problem+json')
      expect(r.headers.get('access-control-allow-origin')).toBeNull()
    }
  })

  test('answers to an allowed origin name it and expose the headers a client reads, errors included', async () => {
    const ok = await open.call('GET', '/v1/auth/whoami', { token: org.admin_key, headers: { origin: DASHBOARD } })
    expect(ok.status).toBe(200)
    expect(ok.headers.get('access-control-allow-origin')).toBe(DASHBOARD)
    const exposed = ok.headers.get('access-control-expose-headers') ?? ''
    for (const h of ['Retry-After', 'X-Request-Id', 'RateLimit', 'X-Quint-Deprecation']) expect(exposed).toContain(h)
    // The dashboard must be able to read why it was refused.
    const refused = await open.call('GET', '/v1/events', { token: 'qk_' + '0'.repeat(64), headers: { origin: DASHBOARD } })
    expect(refused.status).toBe(401)
    expect(refused.headers.get('access-control-allow-origin')).toBe(DASHBOARD)
    expect(refused.headers.get('access-control-allow-credentials')).toBe('true')
    const missing = await open.call('GET', '/v1/nothing-here', { headers: { origin: DASHBOARD } })
    expect(missing.status).toBe(404)
    expect(missing.headers.get('access-control-allow-origin')).toBe(DASHBOARD)
  })

  test('with CORS_ORIGINS every answer varies by Origin: no shared cache serves one origin what it kept for another', async () => {
    // The public keys are cacheable for 5 minutes: fetched without Origin, then by the dashboard.
    for (const headers of [{}, { origin: 'https://evil.example' }, { origin: DASHBOARD }] as Record<string, string>[]) {
      const keys = await open.call('GET', `/keys/public/${org.org_id}`, { headers })
      expect(keys.status).toBe(200)
      expect(keys.headers.get('vary')).toBe('Origin')
    }
    const refused = await preflight('https://evil.example')
    expect(refused.headers.get('vary')).toBe('Origin')
  })

  test('another origin, or no CORS_ORIGINS at all: no CORS header on any answer', async () => {
    const other = await open.call('GET', '/v1/auth/whoami', { token: org.admin_key, headers: { origin: 'https://evil.example' } })
    expect(other.status).toBe(200)
    expect(other.headers.get('access-control-allow-origin')).toBeNull()
    const unset = await plain.call('GET', '/v1/auth/whoami', { token: org.admin_key, headers: { origin: DASHBOARD } })
    expect(unset.status).toBe(200)
    expect(unset.headers.get('access-control-allow-origin')).toBeNull()
    // Without the setting, OPTIONS is what it was: no route answers it.
    const pre = await plain.call('OPTIONS', '/v1/events', {
      headers: { origin: DASHBOARD, 'access-control-request-method': 'GET' },
    })
    expect(pre.status).toBe(405)
    expect(pre.headers.get('access-control-allow-origin')).toBeNull()
  })

  test('CORS_ORIGINS takes exact origins only', () => {
    for (const bad of [
      '*',
      'https://app.example.com/',
      'https://app.example.com/path',
      'ftp://x.example',
      'app.example.com',
      'https://a.example.com,',
      'http://app.example.com',
    ]) {
      expect(() => loadConfig({ CORS_ORIGINS: bad })).toThrow(ConfigError)
    }
    expect(loadConfig({ CORS_ORIGINS: `${DASHBOARD},${DASHBOARD}, ${DEV}` }).corsOrigins).toEqual([DASHBOARD, DEV])
  })
})

describe('security headers', () => {
  test('every kind of answer carries them: success, error, 404, 405, health', async () => {
    const answers = [
      await plain.call('GET', '/v1/auth/whoami', { token: org.admin_key }),
      await plain.call('GET', '/v1/events', {}),
      await plain.call('GET', '/v1/events?limit=0', { token: org.admin_key }),
      await plain.call('GET', '/v1/nothing-here'),
      await plain.call('DELETE', '/health'),
      await plain.call('GET', '/health'),
      await plain.call('POST', '/v1/ingest', {
        token: org.deploy_token,
        body: '{not json',
        headers: { 'content-type': 'application/json' },
      }),
    ]
    expect(answers.map((a) => a.status)).toEqual([200, 401, 400, 404, 405, 200, 400])
    for (const a of answers) {
      for (const [name, value] of Object.entries(SECURITY_HEADERS))
        expect({ name, value: a.headers.get(name) }).toEqual({ name, value })
    }
  })

  test('a route that needs its own value keeps it: the docs page its CSP, the public keys their cache lifetime', async () => {
    const docs = await plain.call('GET', '/docs')
    expect(docs.status).toBe(200)
    expect(docs.headers.get('content-security-policy')).toContain("script-src 'self'")
    const jwks = await plain.call('GET', `/keys/public/${org.org_id}`)
    expect(jwks.status).toBe(200)
    expect(jwks.headers.get('cache-control')).toBe('public, max-age=300')
    // The docs bundle: a year, and its 304 repeats it (a 304's headers replace the cached ones).
    const bundle = await plain.call('GET', '/docs/scalar.js')
    expect(bundle.headers.get('cache-control')).toBe('public, max-age=31536000, immutable')
    const again = await plain.call('GET', '/docs/scalar.js', { headers: { 'if-none-match': bundle.headers.get('etag')! } })
    expect(again.status).toBe(304)
    expect(again.headers.get('cache-control')).toBe('public, max-age=31536000, immutable')
  })
})
