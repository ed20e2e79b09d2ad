/**
 * The onboarding REST surface: /v1/deploy-tokens with admin keys, across two orgs, plus every
 * kind of bad input. Every error is RFC 9457 problem+json and none is a 500.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { FORMATS } from '../../src/auth/opaque/format.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { issueToken, revokeTokens } from '../../src/features/api-tokens/repo.ts'
import { withOrg } from '../../src/infra/db.ts'
import { testApp, twoOrgApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

function expectProblem(res: { status: number; headers: Headers; body: any }, status: number, code: string) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  expect(res.body).toMatchObject({ status, code, type: `urn:quint:problem:${code}` })
  expect(typeof res.body.title).toBe('string')
  expect(res.body.instance).toMatch(/^urn:request:/)
}

describe('org onboarding output', () => {
  test('admin key and deploy token have the documented formats and are stored only as hashes', async () => {
    expect(a.admin_key).toMatch(/^qk_[0-9a-f]{64}$/)
    expect(a.deploy_token).toMatch(/^qt_deploy_[0-9a-f]{32}$/)
    const rows = await db.owner<{ token_hash: Buffer; token_prefix: string }[]>`
      select token_hash, token_prefix from api_tokens where org_id = ${a.org_id}`
    expect(rows.length).toBe(2)
    const dump = JSON.stringify(await db.owner`select * from api_tokens`)
    expect(dump).not.toContain(a.admin_key.slice(3))
    expect(dump).not.toContain(a.deploy_token.slice(10))
    for (const r of rows) expect(r.token_hash.length).toBe(32)
  })
})

describe('POST /v1/deploy-tokens', () => {
  test('creates a token, shown once, usable only as a deploy token', async () => {
    const res = await t.call('POST', '/v1/deploy-tokens', { token: a.admin_key, json: { name: 'dev-machine-01' } })
    expect(res.status).toBe(201)
    // A laptop's credential sends events; it never reads the org's data (issue 9).
    expect(res.body).toMatchObject({ name: 'dev-machine-01', scopes: ['ingest'], revoked_at: null, expires_at: null })
    expect(res.body.id).toMatch(/^[0-9a-f-]{36}$/)
    expect(res.body.token).toMatch(/^qt_deploy_[0-9a-f]{32}$/)
    expect(res.body.token.startsWith(res.body.token_prefix)).toBe(true)
    expect(Date.parse(res.body.created_at)).toBeGreaterThan(Date.now() - 60_000)
    // A deploy token cannot manage tokens.
    const denied = await t.call('POST', '/v1/deploy-tokens', { token: res.body.token, json: { name: 'x' } })
    expectProblem(denied, 403, 'insufficient_permissions')
    const audit = await withOrg(db.app, a.org_id, (tx) => tx`select action from audit_log where target_id = ${res.body.id}`)
    expect(audit.map((r) => r.action)).toEqual(['deploy_token.create'])
  })

  test('accepts a future expiry and refuses past or absurd ones', async () => {
    const future = new Date(Date.now() + 86_400_000).toISOString()
    const ok = await t.call('POST', '/v1/deploy-tokens', { token: a.admin_key, json: { name: 'exp', expires_at: future } })
    expect(ok.status).toBe(201)
    expect(ok.body.expires_at).toBe(future)
    for (const expires_at of [new Date(Date.now() - 1000).toISOString(), '2999-01-01T00:00:00Z']) {
      const bad = await t.call('POST', '/v1/deploy-tokens', { token: a.admin_key, json: { name: 'exp', expires_at } })
      expectProblem(bad, 422, 'validation_failed')
      expect(bad.body.errors).toEqual([{ path: '/expires_at', message: expect.any(String) }])
    }
  })

  test.each([
    ['no body', undefined, { 'content-type': 'application/json' }, 400, 'bad_request'],
    ['malformed JSON', '{"name":', { 'content-type': 'application/json' }, 400, 'bad_request'],
    ['not JSON', 'name=x', { 'content-type': 'application/x-www-form-urlencoded' }, 415, 'unsupported_media_type'],
    ['no content type', '{"name":"x"}', {}, 415, 'unsupported_media_type'],
    ['invalid UTF-8', new Uint8Array([0x7b, 0xff, 0x7d]), { 'content-type': 'application/json' }, 400, 'bad_request'],
    [
      'over 64 KiB',
      JSON.stringify({ name: 'x'.repeat(70_000) }),
      { 'content-type': 'application/json' },
      413,
      'payload_too_large',
    ],
  ] as const)('%s → %d', async (_name, body, headers, status, code) => {
    const res = await t.call('POST', '/v1/deploy-tokens', { token: a.admin_key, body: body as RequestInit['body'], headers })
    expectProblem(res, status, code)
  })

  test('an oversized chunked body (no Content-Length) is refused with 413', async () => {
    const chunk = new TextEncoder().encode('x'.repeat(16_384))
    let sent = 0
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 10) controller.enqueue(chunk)
        else controller.close()
      },
    })
    const res = await t.app.fetch(
      new Request('http://test/v1/deploy-tokens', {
        method: 'POST',
        headers: { authorization: `Bearer ${a.admin_key}`, 'content-type': 'application/json' },
        body: stream,
        duplex: 'half',
      }),
    )
    expect(res.status).toBe(413)
    expect(sent).toBeLessThan(10) // refused before the whole body was read
  })

  test.each([
    [{}, '/name'],
    [{ name: '' }, '/name'],
    [{ name: '   ' }, '/name'],
    [{ name: 'a\u0000b' }, '/name'],
    [{ name: 42 }, '/name'],
    [{ name: 'x'.repeat(201) }, '/name'],
    [{ name: 'ok', scopes: ['admin'] }, '/scopes'],
    [{ name: 'ok', expires_at: 'tomorrow' }, '/expires_at'],
    [['name'], '/'],
  ])('schema violation %j → 422 at %s', async (json, path) => {
    const res = await t.call('POST', '/v1/deploy-tokens', { token: a.admin_key, json })
    expectProblem(res, 422, 'validation_failed')
    expect(res.body.errors.map((e: { path: string }) => e.path)).toContain(path)
  })
})

describe('authentication', () => {
  test.each([
    ['no header', undefined],
    ['wrong scheme', 'Basic abc'],
    ['unknown key', `Bearer qk_${'0'.repeat(64)}`],
    ['not a token', 'Bearer hello'],
    ['JWT-style prefix', 'Bearer qt_app_eyJhbGciOiJub25lIn0.e30.'],
    ['absurdly long', `Bearer qk_${'a'.repeat(5000)}`],
  ])('%s → 401 with WWW-Authenticate', async (_n, authorization) => {
    const res = await t.call('GET', '/v1/deploy-tokens', { headers: authorization ? { authorization } : {} })
    expectProblem(res, 401, 'unauthorized')
    expect(res.headers.get('www-authenticate')).toContain('Bearer')
  })

  test('an expired token is refused', async () => {
    const expired = await withOrg(db.app, a.org_id, (tx) =>
      issueToken(tx, { format: FORMATS.adminKey, name: 'old', scopes: ['admin'], expiresAt: new Date(Date.now() - 1000) }),
    )
    expectProblem(await t.call('GET', '/v1/deploy-tokens', { token: expired.token }), 401, 'unauthorized')
  })
})

describe('GET /v1/deploy-tokens', () => {
  test('lists only the caller org tokens, newest first, never the raw value, with working pagination', async () => {
    const org = await createOrg(db.app, 'paging', 'cli')
    const names: string[] = []
    for (let i = 0; i < 7; i++) {
      const res = await t.call('POST', '/v1/deploy-tokens', { token: org.admin_key, json: { name: `t${i}` } })
      expect(res.status).toBe(201)
      names.push(`t${i}`)
    }
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const q: string = cursor ? `?limit=3&cursor=${cursor}` : '?limit=3'
      const res = await t.call('GET', `/v1/deploy-tokens${q}`, { token: org.admin_key })
      expect(res.status).toBe(200)
      expect(res.text).not.toMatch(/qt_deploy_[0-9a-f]{32}/)
      for (const tok of res.body.deploy_tokens) {
        expect(tok).not.toHaveProperty('token')
        expect(tok).not.toHaveProperty('token_hash')
        seen.push(tok.name)
      }
      cursor = res.body.next_cursor
      pages++
    } while (cursor && pages < 10)
    expect(pages).toBe(3)
    expect(seen).toEqual([...names].reverse().concat(['default deploy token']))
  })

  test('rows created in the same microsecond are neither skipped nor repeated across pages', async () => {
    const org = await createOrg(db.app, 'same instant', 'cli')
    // One transaction: now() is identical for every row.
    await withOrg(db.app, org.org_id, async (tx) => {
      for (let i = 0; i < 5; i++) await issueToken(tx, { format: FORMATS.deployToken, name: `same${i}`, scopes: [] })
    })
    const seen: string[] = []
    let cursor: string | null = null
    for (let page = 0; page < 10; page++) {
      const res = await t.call('GET', `/v1/deploy-tokens?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: org.admin_key })
      expect(res.status).toBe(200)
      seen.push(...res.body.deploy_tokens.map((x: { id: string }) => x.id))
      cursor = res.body.next_cursor
      if (!cursor) break
    }
    expect(seen.length).toBe(6) // 5 + the org's default deploy token
    expect(new Set(seen).size).toBe(6)
  })

  const cursorOf = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
  test.each([
    ['36 dashes as id', cursorOf(['2026-11-22 11:14:00.890123+00', '-'.repeat(36)])],
    ['year 275760', cursorOf(['+275760-09-13 00:00:00+00', crypto.randomUUID()])],
    ['month 13', cursorOf(['2026-13-01 00:00:00+00', crypto.randomUUID()])],
    ['not an array', cursorOf({ at: 1 })],
    ['uppercase id', cursorOf(['2026-11-22 11:14:00+00', crypto.randomUUID().toUpperCase()])],
  ])('a doctored cursor (%s) → 400, never 500', async (_n, cursor) => {
    expectProblem(await t.call('GET', `/v1/deploy-tokens?cursor=${cursor}`, { token: a.admin_key }), 400, 'bad_request')
  })

  test.each([
    ['?limit=0', 'limit'],
    ['?limit=1000', 'limit'],
    ['?limit=abc', 'limit'],
    ['?cursor=not-a-cursor', 'cursor'],
    ['?bogus=1', 'bogus'],
  ])('bad query %s → 400', async (q) => {
    expectProblem(await t.call('GET', `/v1/deploy-tokens${q}`, { token: a.admin_key }), 400, 'bad_request')
  })
})

describe('DELETE /v1/deploy-tokens/{id}', () => {
  test('revokes: the token is refused on its next use; deleting again is idempotent', async () => {
    const created = await t.call('POST', '/v1/deploy-tokens', { token: a.admin_key, json: { name: 'to-revoke' } })
    const token = created.body.token as string
    // Use it once so it is cached as valid.
    expect(await t.resolver.resolve(token)).toMatchObject({ orgId: a.org_id, kind: 'install' })
    const del = await t.call('DELETE', `/v1/deploy-tokens/${created.body.id}`, { token: a.admin_key })
    expect(del.status).toBe(204)
    // Retired, not refused: it keeps the machines it registered (SPEC §3.2), and nothing else.
    expect(await t.resolver.resolve(token)).toMatchObject({ retired: true })
    expectProblem(await t.call('GET', '/v1/deploy-tokens', { token }), 401, 'unauthorized')
    expectProblem(await t.call('POST', '/v1/ingest', { token, json: [] }), 401, 'unauthorized')
    expect((await t.call('DELETE', `/v1/deploy-tokens/${created.body.id}`, { token: a.admin_key })).status).toBe(204)
    const listed = await t.call('GET', '/v1/deploy-tokens', { token: a.admin_key })
    const row = listed.body.deploy_tokens.find((x: { id: string }) => x.id === created.body.id)
    expect(Date.parse(row.revoked_at)).toBeGreaterThan(0)
  })

  test('revoking by an uppercase id still refuses the token on its next use', async () => {
    const created = await t.call('POST', '/v1/deploy-tokens', { token: a.admin_key, json: { name: 'upper' } })
    expect(await t.resolver.resolve(created.body.token)).not.toBeNull()
    const del = await t.call('DELETE', `/v1/deploy-tokens/${String(created.body.id).toUpperCase()}`, { token: a.admin_key })
    expect(del.status).toBe(204)
    expect(await t.resolver.resolve(created.body.token)).toMatchObject({ retired: true })
  })

  test('a lookup in flight while the token is revoked does not cache it as valid', async () => {
    const created = await t.call('POST', '/v1/deploy-tokens', { token: a.admin_key, json: { name: 'race' } })
    const inFlight = t.resolver.resolve(created.body.token)
    const revoked = await withOrg(db.app, a.org_id, (tx) => revokeTokens(tx, { kind: 'install', id: created.body.id }))
    await t.resolver.revoked(revoked)
    await inFlight
    expect(await t.resolver.resolve(created.body.token)).toMatchObject({ retired: true })
  })

  test("an org can neither see nor revoke another org's token", async () => {
    const theirs = await t.call('POST', '/v1/deploy-tokens', { token: b.admin_key, json: { name: 'b-token' } })
    const res = await t.call('DELETE', `/v1/deploy-tokens/${theirs.body.id}`, { token: a.admin_key })
    expectProblem(res, 404, 'not_found')
    const listA = await t.call('GET', '/v1/deploy-tokens?limit=200', { token: a.admin_key })
    expect(listA.body.deploy_tokens.map((x: { id: string }) => x.id)).not.toContain(theirs.body.id)
    expect(await t.resolver.resolve(theirs.body.token)).toMatchObject({ orgId: b.org_id })
  })

  test('the admin key itself cannot be revoked through the deploy-token endpoint', async () => {
    const [admin] = await withOrg(
      db.app,
      a.org_id,
      (tx) => tx<{ id: string }[]>`select id from api_tokens where kind = 'api_key' limit 1`,
    )
    expectProblem(await t.call('DELETE', `/v1/deploy-tokens/${admin!.id}`, { token: a.admin_key }), 404, 'not_found')
  })

  test('a malformed id → 404, like an unknown one (issue 9: the same answer on every route)', async () => {
    for (const id of ['12345', `${crypto.randomUUID()}x`, 'a'.repeat(300), crypto.randomUUID()]) {
      expectProblem(await t.call('DELETE', `/v1/deploy-tokens/${id}`, { token: a.admin_key }), 404, 'not_found')
    }
  })
})

describe('service endpoints', () => {
  test('/health is cheap and always 200; /ready follows the lifecycle', async () => {
    expect((await t.call('GET', '/health')).body).toMatchObject({ status: 'ok' })
    expect((await t.call('GET', '/ready')).status).toBe(200)
    const other = testApp(db)
    const draining = other.lifecycle.shutdown('test', 1000)
    const res = await other.call('GET', '/ready')
    expectProblem(res, 503, 'not_ready')
    expect(res.headers.get('retry-after')).toBe('5')
    await draining
  })

  test('/metrics exposes Prometheus text with per-route counters', async () => {
    await t.call('GET', '/health')
    const res = await t.call('GET', '/metrics')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('text/plain')
    expect(res.text).toMatch(/quint_http_requests_total\{method="GET",route="\/health",status="200"\} \d+/)
    expect(res.text).toContain('process_resident_memory_bytes')
  })

  test('/openapi.json documents every route with its schemas', async () => {
    const res = await t.call('GET', '/openapi.json')
    expect(res.body.openapi).toBe('3.1.0')
    expect(Object.keys(res.body.paths)).toEqual(
      expect.arrayContaining([
        '/v1/deploy-tokens',
        '/v1/deploy-tokens/{id}',
        '/v1/events/ingest',
        '/v1/ingest',
        '/v1/sessions/ingest',
        '/v1/machines/register',
        '/v1/machines/{id}/heartbeat',
        '/v1/machines/{id}/policies',
        '/v1/machines/{id}/events',
        '/v1/machines/{id}/agents',
        '/v1/machines/{id}/graphs',
        '/v1/alert-rules',
        '/v1/alert-rules/{id}',
        '/v1/alerts',
      ]),
    )
    // Every operation is named and documents at least one success answer.
    for (const [path, ops] of Object.entries<Record<string, any>>(res.body.paths)) {
      for (const [method, op] of Object.entries<any>(ops)) {
        expect({ path, method, operationId: typeof op.operationId }).toEqual({ path, method, operationId: 'string' })
        expect(Object.keys(op.responses).some((code) => /^[23]/.test(code))).toBe(true)
      }
    }
    expect(res.body.paths['/v1/ingest'].post.responses).toHaveProperty('207')
    const post = res.body.paths['/v1/deploy-tokens'].post
    expect(post.requestBody.content['application/json'].schema.required).toEqual(['name'])
    expect(post.responses['201'].content['application/json'].schema.properties).toHaveProperty('token')
  })

  test('unknown routes → 404 problem, known paths with another method → 405 with Allow; the request id echoed', async () => {
    const res = await t.call('GET', '/v1/nope', { headers: { 'x-request-id': 'abc-123' } })
    expectProblem(res, 404, 'not_found')
    expect(res.body.instance).toBe('urn:request:abc-123')
    expect(res.headers.get('x-request-id')).toBe('abc-123')
    const wrong = await t.call('PUT', '/v1/deploy-tokens', { token: a.admin_key })
    expectProblem(wrong, 405, 'method_not_allowed')
    expect(wrong.headers.get('allow')).toBe('GET, HEAD, POST')
  })
})
