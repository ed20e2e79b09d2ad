/**
 * The OpenAPI document as client authors meet it (issue 14): the committed `openapi.json` is what
 * the code generates, it passes Redocly's recommended ruleset, `openapi-typescript` turns it into
 * types, whoami answers what it documents, and `/docs` renders it with the embedded Scalar bundle.
 * The tools are the real ones from node_modules, run offline.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { Hono, type MiddlewareHandler } from 'hono'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { loadConfig } from '../../src/config.ts'
import { WhoAmI } from '../../src/features/jwt-tokens/introspection.ts'
import { RouteRegistry } from '../../src/http/openapi.ts'
import type { AppEnv } from '../../src/http/request-context.ts'
import { offlineApp } from '../../src/app.ts'
import { ConditionSchema } from '../../src/features/alerts/condition.ts'
import { testLog, type TestDatabase } from '../helpers/db.ts'
import { twoOrgApp } from '../helpers/app.ts'
import { ROOT } from '../helpers/process.ts'

const COMMITTED = path.join(ROOT, 'openapi.json')
const BIN = (pkg: string, file: string) => path.join(ROOT, 'node_modules', pkg, file)
// No telemetry and no update check: CI has no network at run time.
const TOOL_ENV = {
  PATH: process.env.PATH ?? '',
  HOME: os.tmpdir(),
  REDOCLY_TELEMETRY: 'off',
  REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true',
  NO_COLOR: '1',
}

async function run(cmd: string[], cwd = ROOT) {
  const proc = Bun.spawn(cmd, { cwd, env: TOOL_ENV, stdout: 'pipe', stderr: 'pipe' })
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ])
  return { code, stdout, stderr }
}

type Doc = {
  paths: Record<
    string,
    Record<string, { operationId: string; tags: string[]; responses: Record<string, unknown>; requestBody?: any }>
  >
  components: Record<string, Record<string, any>>
  servers?: unknown[]
  tags?: { name: string; description?: string }[]
}

let generated = ''
let doc: Doc
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-openapi-'))
// The two tools take a few seconds each: started at once, side by side, on the committed file.
const lint = run([
  'bun',
  BIN('@redocly/cli', 'bin/cli.js'),
  'lint',
  'openapi.json',
  '--config',
  'redocly.yaml',
  '--format',
  'json',
])
const generate = run([
  'bun',
  '--preload',
  path.join(import.meta.dir, 'openapi-typescript.preload.ts'),
  BIN('openapi-typescript', 'bin/cli.js'),
  COMMITTED,
  '--output',
  path.join(tmp, 'api.d.ts'),
])

beforeAll(async () => {
  // Exactly what `bun run openapi:write` writes.
  const out = await run(['bun', 'src/main.ts', 'openapi'])
  expect(out.stderr).toBe('')
  expect(out.code).toBe(0)
  generated = out.stdout
  doc = JSON.parse(generated) as Doc
})

afterAll(async () => {
  await Promise.allSettled([lint, generate])
  fs.rmSync(tmp, { recursive: true, force: true })
})

describe('the OpenAPI document', () => {
  test('the committed openapi.json is what the code generates', () => {
    const committed = fs.existsSync(COMMITTED) ? fs.readFileSync(COMMITTED, 'utf8') : ''
    if (committed !== generated) {
      throw new Error('openapi.json is out of date with the routes: run `bun run openapi:write` and commit openapi.json')
    }
  })

  test('every $ref resolves; servers, tags and unique operationIds are declared; every operation has its 4xx', () => {
    const text = JSON.stringify(doc)
    for (const [, kind, name] of text.matchAll(/"\$ref":"#\/components\/(\w+)\/([^"]+)"/g)) {
      expect(doc.components[kind!]?.[name!], `#/components/${kind}/${name}`).toBeDefined()
    }
    expect([...text.matchAll(/"\$ref":"([^"#][^"]*)"/g)].map((m) => m[1])).toEqual([])
    expect(doc.components.schemas!.AlertRuleCondition).toBeDefined()
    expect(doc.servers?.length).toBeGreaterThan(0)
    const declared = new Set(doc.tags?.map((t) => t.name))
    const ids: string[] = []
    for (const [p, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        ids.push(op.operationId)
        for (const tag of op.tags) expect(declared.has(tag), `tag ${tag}`).toBe(true)
        expect(
          Object.keys(op.responses).some((s) => s.startsWith('4')),
          `${method} ${p} has a 4xx`,
        ).toBe(true)
      }
    }
    expect(new Set(ids).size).toBe(ids.length)
    const ingest = doc.paths['/v1/ingest']!.post!
    expect(Object.keys(ingest.responses)).toEqual(expect.arrayContaining(['400', '401', '403', '413', '415', '503']))
    expect(ingest.requestBody.content['application/json'].schema.properties.events.items.anyOf).toEqual([
      { $ref: '#/components/schemas/IngestEventV2' },
      { $ref: '#/components/schemas/ApiReferenceEvent' },
    ])
    expect(doc.components.schemas!.DaemonEvent.required).toEqual(['event_id', 'action'])
    const whoami = doc.paths['/v1/auth/whoami']!.get!.responses['200'] as any
    expect(whoami.content['application/json'].schema.anyOf).toHaveLength(3)
  })

  test('Redocly lint (recommended ruleset, redocly.yaml) finds no problem', async () => {
    const out = await lint
    const report = JSON.parse(out.stdout) as { problems: { ruleId: string; message: string; location: { pointer: string }[] }[] }
    expect(report.problems.map((p) => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`)).toEqual([])
    expect(out.code).toBe(0)
  })

  test('openapi-typescript generates the types of every path and schema', async () => {
    const out = await generate
    expect(out.code, out.stderr).toBe(0)
    const types = fs.readFileSync(path.join(tmp, 'api.d.ts'), 'utf8')
    const names = [
      '"/v1/ingest": {',
      '"/v1/auth/whoami": {',
      'IngestEventV2: {',
      'DaemonEvent: {',
      'AlertRuleCondition: {',
      'Problem: {',
    ]
    for (const name of names) expect(types).toContain(name)
    // The console is typed by these (issue 12): a route or schema it reads cannot drift unseen.
    const committed = fs.readFileSync(path.join(ROOT, 'src/console/ui/api/openapi.ts'), 'utf8')
    if (committed !== types) {
      throw new Error('src/console/ui/api/openapi.ts is out of date with openapi.json: run `bun run openapi:write` and commit it')
    }
  })
})

describe('the document generator', () => {
  const pass: MiddlewareHandler<AppEnv> = (_c, next) => next()
  const registry = () =>
    new RouteRegistry(new Hono<AppEnv>(), {
      authenticated: pass,
      enroll: pass,
      machine: pass,
      ingest: pass,
      read: pass,
      triage: pass,
      manage: pass,
      members: pass,
    })
  const route = {
    method: 'post' as const,
    summary: 's',
    tags: ['t'],
    permission: 'read' as const,
    responses: { 200: { description: 'ok' } },
  }

  test('a recursive TypeBox schema becomes a named component its $refs point to', () => {
    const r = registry()
    r.add({ ...route, path: '/x', operationId: 'x', body: Type.Object({ condition: ConditionSchema }) }, (c) => c.json({}))
    const d = r.document({ title: 't', version: '1' }) as Doc
    const body = d.paths['/x']!.post!.requestBody.content['application/json'].schema
    expect(body.properties.condition).toEqual({ $ref: '#/components/schemas/AlertRuleCondition' })
    expect(d.components.schemas!.AlertRuleCondition.properties.not).toEqual({ $ref: '#/components/schemas/AlertRuleCondition' })
    expect(d.components.schemas!.AlertRuleCondition.$id).toBeUndefined()
  })

  test('an unresolvable $ref and a reused operationId are refused, naming the route', () => {
    const r = registry()
    r.add({ ...route, path: '/x', operationId: 'x', rawBody: Type.Object({ a: Type.Unsafe({ $ref: 'Nowhere' }) }) }, (c) =>
      c.json({}),
    )
    expect(() => r.document({ title: 't', version: '1' })).toThrow('unresolved $ref "Nowhere" (POST /x body)')
    const s = registry()
    s.add({ ...route, path: '/a', operationId: 'same' }, (c) => c.json({}))
    s.add({ ...route, path: '/b', operationId: 'same' }, (c) => c.json({}))
    expect(() => s.document({ title: 't', version: '1' })).toThrow('operationId "same" is used by both POST /a and POST /b')
  })
})

describe('GET /v1/auth/whoami', () => {
  let db: TestDatabase
  let t: Awaited<ReturnType<typeof twoOrgApp>>['t']
  let a: Awaited<ReturnType<typeof twoOrgApp>>['a']
  beforeAll(async () => {
    ;({ db, t, a } = await twoOrgApp())
  })
  afterAll(async () => {
    await db.drop()
  })

  test('answers what the document says, for opaque credentials and qt_ JWTs', async () => {
    const app = await t.call('POST', '/tokens/app', { token: a.admin_key, json: { name: 'contract' } })
    expect(app.status).toBe(201)
    for (const token of [a.admin_key, a.deploy_token, app.body.token as string]) {
      const res = await t.call('GET', '/v1/auth/whoami', { token })
      expect(res.status).toBe(200)
      expect([...Value.Errors(WhoAmI, res.body)].map((e) => `${e.path}: ${e.message}`)).toEqual([])
    }
  })
})

describe('GET /docs', () => {
  const { app, close } = offlineApp(loadConfig({}), testLog)
  afterAll(() => close())

  test('a page with a strict CSP that loads the embedded Scalar bundle and /openapi.json', async () => {
    const page = await app.fetch(new Request('http://test/docs'))
    expect(page.status).toBe(200)
    const csp = page.headers.get('content-security-policy') ?? ''
    expect(csp).toContain("default-src 'none'")
    expect(csp).toContain("script-src 'self';")
    expect(csp).toContain("connect-src 'self'")
    const html = await page.text()
    expect(html).toContain('data-url="/openapi.json"')
    expect(html).not.toMatch(/<script>|https?:\/\//)
    const src = /<script src="([^"]+)"/.exec(html)![1]!
    const bundle = await app.fetch(new Request(`http://test${src}`))
    expect(bundle.status).toBe(200)
    expect(bundle.headers.get('content-type')).toStartWith('text/javascript')
    expect(bundle.headers.get('cache-control')).toContain('immutable')
    const served = new Uint8Array(await bundle.arrayBuffer())
    const shipped = fs.readFileSync(BIN('@scalar/api-reference', 'dist/browser/standalone.js'))
    expect(served.byteLength).toBe(shipped.byteLength)
    expect(Bun.hash(served)).toBe(Bun.hash(shipped))
  })
})
