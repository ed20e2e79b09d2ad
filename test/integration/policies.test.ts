/**
 * Policies written through the API (issue 11, docs/policies.md): validation, versions kept after
 * a deletion, the audit log, scopes (every machine, some machines, machine tags), what each
 * daemon is served and its hash at the next heartbeat, the org's proxied domains, and the
 * installer's version.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
/** Three of org A's machines: `tagged` has the tag laptops, `named` is scoped by id, `plain` neither. */
const m = { tagged: '', named: '', plain: '' }

beforeAll(async () => {
  db = await testDatabase()
  t = testApp(db)
  a = await createOrg(db.app, 'policies A', 'cli')
  for (const key of Object.keys(m) as (keyof typeof m)[]) {
    const reg = await call('POST', '/v1/machines/register', { machine_id: crypto.randomUUID().replace(/-/g, '') }, a.deploy_token)
    expect(reg.status).toBe(201)
    m[key] = reg.body.machine_id
  }
  expect((await call('PATCH', `/v1/machines/${m.tagged}`, { tags: ['laptops'] })).body.tags).toEqual(['laptops'])
}, HOOK_TIMEOUT_MS)
afterAll(() => db.drop(), HOOK_TIMEOUT_MS)

function call(method: string, path: string, json?: unknown, token = a.admin_key, headers: Record<string, string> = {}) {
  return t.call(method, path, { token, json, headers })
}

function expectProblem(res: Awaited<ReturnType<typeof call>>, status: number, pointers: string[] = []) {
  expect({ status: res.status, type: res.headers.get('content-type') }).toEqual({ status, type: 'application/problem+json' })
  if (pointers.length > 0) expect(res.body.errors.map((e: { path: string }) => e.path)).toEqual(pointers)
}

const rule = (tool: string, over: Record<string, unknown> = {}) => ({ tool, action: 'block', ...over })
const create = async (body: Record<string, unknown>) => {
  const res = await call('POST', '/v1/policies', body)
  expect({ status: res.status, body: res.body }).toMatchObject({ status: 201 })
  return res.body as { id: string; version: number }
}
/** What the daemon on `machine` is served, with its ETag, and what its heartbeat says. */
async function daemonView(machine: string) {
  const docs = await call('GET', `/v1/machines/${machine}/policies`, undefined, a.deploy_token)
  const hb = await call('POST', `/v1/machines/${machine}/heartbeat`, { uptime: 1 }, a.deploy_token)
  expect(docs.status).toBe(200)
  expect(hb.status).toBe(200)
  return { names: (docs.body as { name: string }[]).map((p) => p.name), etag: docs.headers.get('etag'), hb: hb.body }
}

describe('/v1/policies', () => {
  test('created in the daemon format, normalised as the daemon reads it, version 1, audited', async () => {
    const p = await create({ name: ' block rm ', priority: 10, rules: [rule('Bash', { conditions: ['rm -rf'] })] })
    expect(p).toMatchObject({
      name: 'block rm',
      enabled: true,
      priority: 10,
      version: 1,
      rules: [{ tool: 'Bash', agent: '*', action: 'block', conditions: ['rm -rf'] }],
      scope: { all: true, machine_ids: [], tags: [] },
    })
    expect((await call('GET', `/v1/policies/${p.id}`)).body).toEqual(p)
    const [audit] = await db.owner<{ details: Record<string, any> }[]>`
      select details from audit_log where org_id = ${a.org_id} and target_id = ${p.id} and action = 'policy.create'`
    expect(audit!.details).toMatchObject({ version: 1, before: null, after: { name: 'block rm' } })
  })

  test('bad policies are a 422 naming each field, never a 500', async () => {
    const cases: [unknown, string[]][] = [
      [{ name: 'x', rules: [] }, ['/rules']],
      [{ name: 'x', rules: [rule('Bash', { action: 'allow' })] }, ['/rules/0/action']],
      [{ name: 'x', rules: [rule('')] }, ['/rules/0/tool']],
      [{ name: 'x', rules: [rule('Ba\u0000sh')] }, ['/rules/0/tool']],
      [{ name: 'x', rules: [rule('Bash', { conditions: ['x'.repeat(513)] })] }, ['/rules/0/conditions/0']],
      [{ name: 'x', rules: [rule('Bash')], scope: { tags: ['Laptops'] } }, ['/scope/tags/0']],
      [{ name: '   ', rules: [rule('Bash')] }, ['/name']],
      [{ name: 'x', rules: [rule('Bash')], scope: { machine_ids: [m.plain, crypto.randomUUID()] } }, ['/scope/machine_ids/1']],
      [{ name: 'x', rules: [rule('Bash')], priority: 1.5 }, ['/priority']],
      // What the daemon would read otherwise than it looks (SPEC §11.2).
      [{ name: 'x', rules: [rule('http:*.exfil.example:*')] }, ['/rules/0/tool']],
      [{ name: 'x', rules: [rule(' Bash ')] }, ['/rules/0/tool']],
      [{ name: 'x', rules: [rule('Bash', { agent: 'claude\u200b' })] }, ['/rules/0/agent']],
      [{ name: 'allow\u202eevil', rules: [rule('Bash')] }, ['/name']],
      [{ name: 'x', description: 'a\u0085b', rules: [rule('Bash')] }, ['/description']],
      // A scope never widens to the whole fleet by being empty.
      [{ name: 'x', rules: [rule('Bash')], scope: { machine_ids: [] } }, ['/scope']],
      [{ name: 'x', rules: [rule('Bash')], scope: { all: true, tags: ['laptops'] } }, ['/scope/all']],
    ]
    for (const [body, pointers] of cases) {
      const res = await call('POST', '/v1/policies', body)
      expect({ body, status: res.status }).toEqual({ body, status: 422 })
      expectProblem(res, 422, pointers)
    }
    expectProblem(await call('PATCH', `/v1/policies/${crypto.randomUUID()}`, {}), 422)
    expectProblem(await call('GET', '/v1/policies/not-a-uuid'), 404)
  })

  test('every change is a version, kept after the deletion; each is in the audit log with before and after', async () => {
    const p = await create({ name: 'versioned', rules: [rule('curl')] })
    const changed = await call('PATCH', `/v1/policies/${p.id}`, { enabled: false, description: 'off for now' })
    expect(changed.body).toMatchObject({ version: 2, enabled: false, description: 'off for now', name: 'versioned' })
    // A change to nothing is no version (and no new hash for the fleet).
    expect((await call('PATCH', `/v1/policies/${p.id}`, { enabled: false, scope: { all: true } })).body.version).toBe(2)
    expectProblem(await call('PATCH', `/v1/policies/${p.id}`, { scope: { tags: [] } }), 422, ['/scope'])
    expect((await call('DELETE', `/v1/policies/${p.id}`)).status).toBe(204)
    expectProblem(await call('GET', `/v1/policies/${p.id}`), 404)
    expectProblem(await call('DELETE', `/v1/policies/${p.id}`), 404)
    const versions = (await call('GET', `/v1/policies/${p.id}/versions`)).body.versions
    expect(versions.map((v: { version: number; deleted: boolean }) => [v.version, v.deleted])).toEqual([
      [3, true],
      [2, false],
      [1, false],
    ])
    expect(versions[1].policy).toMatchObject({ enabled: false, version: 2 })
    expect(versions[0].policy).toBeNull()
    expect(versions[0].changed_by).toBeTruthy()
    const audit = await db.owner<{ action: string; details: Record<string, any> }[]>`
      select action, details from audit_log where org_id = ${a.org_id} and target_id = ${p.id} order by id`
    expect(audit.map((e) => e.action)).toEqual(['policy.create', 'policy.update', 'policy.delete'])
    expect(audit[1]!.details).toMatchObject({ before: { enabled: true }, after: { enabled: false } })
    expect(audit[2]!.details).toMatchObject({ version: 3, after: null })
    expectProblem(await call('GET', `/v1/policies/${crypto.randomUUID()}/versions`), 404)
  })

  test('who may: viewers and read credentials read, machines do not; changes need manage', async () => {
    const reader = (await call('POST', '/v1/tokens', { kind: 'service', name: 'r', scopes: ['read'] })).body.token
    expect((await call('GET', '/v1/policies', undefined, reader)).status).toBe(200)
    expectProblem(await call('POST', '/v1/policies', { name: 'x', rules: [rule('Bash')] }, reader), 403)
    expectProblem(await call('GET', '/v1/policies', undefined, a.deploy_token), 403)
  })
})

describe('what each daemon is served', () => {
  test('scopes: every machine, machines by id, machines by tag; priority order; the hash moves only where it applies', async () => {
    const all = await create({ name: 'everywhere', priority: 1, rules: [rule('rm')] })
    const byTag = await create({ name: 'laptops only', priority: 50, rules: [rule('curl')], scope: { tags: ['laptops'] } })
    await create({ name: 'one machine', priority: 100, rules: [rule('ssh')], scope: { machine_ids: [m.named.toUpperCase()] } })
    const tagged = await daemonView(m.tagged)
    const named = await daemonView(m.named)
    const plain = await daemonView(m.plain)
    expect(tagged.names.filter((n) => ['everywhere', 'laptops only', 'one machine'].includes(n))).toEqual([
      'laptops only',
      'everywhere',
    ])
    expect(named.names.filter((n) => ['everywhere', 'laptops only', 'one machine'].includes(n))).toEqual([
      'one machine',
      'everywhere',
    ])
    expect(plain.names.filter((n) => ['everywhere', 'laptops only', 'one machine'].includes(n))).toEqual(['everywhere'])
    for (const v of [tagged, named, plain]) expect(v.hb.policy_hash).toBe(v.etag)

    // A polling daemon sees a change at its very next heartbeat, and only where it applies.
    const changed = await call('PATCH', `/v1/policies/${byTag.id}`, { rules: [rule('curl'), rule('wget')] })
    expect(changed.body.version).toBe(2)
    const tagged2 = await daemonView(m.tagged)
    const plain2 = await daemonView(m.plain)
    expect(tagged2.hb.policy_hash).not.toBe(tagged.hb.policy_hash)
    expect(tagged2.hb.policy_hash).toBe(tagged2.etag)
    expect(plain2.hb.policy_hash).toBe(plain.hb.policy_hash)
    // The old ETag is no longer current for the tagged machine: 200 with the new document.
    const refetch = await call('GET', `/v1/machines/${m.tagged}/policies`, undefined, a.deploy_token, {
      'if-none-match': tagged.etag!,
    })
    expect(refetch.status).toBe(200)
    const same = await call('GET', `/v1/machines/${m.plain}/policies`, undefined, a.deploy_token, {
      'if-none-match': plain.etag!,
    })
    expect(same.status).toBe(304)

    // Tagging a machine brings the tag's policies to it; disabling a policy takes it away.
    expect((await call('PATCH', `/v1/machines/${m.plain}`, { tags: ['laptops'] })).status).toBe(200)
    expect((await daemonView(m.plain)).names).toContain('laptops only')
    expect((await call('PATCH', `/v1/policies/${all.id}`, { enabled: false })).status).toBe(200)
    expect((await daemonView(m.plain)).names).not.toContain('everywhere')
    expect((await call('GET', '/v1/machines?tag=laptops')).body.machines.map((x: { id: string }) => x.id).sort()).toEqual(
      [m.tagged, m.plain].sort(),
    )
  })

  test('the served policy is the SPEC §11.1 object the daemon decodes', async () => {
    const p = await create({ name: 'wire', description: null, rules: [rule('http:exfil.example:*')] })
    const served = (await call('GET', `/v1/machines/${m.plain}/policies`, undefined, a.deploy_token)).body.find(
      (x: { id: string }) => x.id === p.id,
    )
    expect(Object.keys(served).sort()).toEqual(
      ['created_at', 'description', 'enabled', 'id', 'name', 'org_id', 'priority', 'rules', 'updated_at'].sort(),
    )
    expect(served).toMatchObject({
      org_id: a.org_id,
      description: '',
      rules: [{ tool: 'http:exfil.example:*', agent: '*', action: 'block', conditions: [] }],
    })
    expect(served.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/)
  })
})

describe('proxied domains and the installer', () => {
  test("the org's proxy_domains are the heartbeat's domains; config_version follows them; audited", async () => {
    const before = await daemonView(m.plain)
    const set = await call('PATCH', '/v1/org', {
      proxy_domains: ['API.Example.com', '*.internal.example.com', 'api.example.com'],
    })
    expect(set.status).toBe(200)
    expect(set.body.proxy_domains).toEqual(['*.internal.example.com', 'api.example.com'])
    const after = await daemonView(m.plain)
    expect(after.hb.domains).toEqual(['*.internal.example.com', 'api.example.com'])
    expect(after.hb.policy_hash).toBe(before.hb.policy_hash)
    expect(after.hb.config_version).not.toBe(before.hb.config_version)
    for (const bad of ['not a host', 'http://x.example.com', '*.', 'x'.repeat(254)]) {
      expectProblem(await call('PATCH', '/v1/org', { proxy_domains: [bad] }), 422, ['/proxy_domains/0'])
    }
    const [audit] = await db.owner<{ details: Record<string, any> }[]>`
      select details from audit_log where org_id = ${a.org_id} and action = 'org.update' order by id desc limit 1`
    expect(audit!.details.proxy_domains).toEqual({ from: [], to: ['*.internal.example.com', 'api.example.com'] })
  })

  test('GET /agent/latest-version: plain text, no credential, when configured; a 404 (the installer falls back) when not', async () => {
    expectProblem(await t.call('GET', '/agent/latest-version'), 404)
    const res = await testApp(db, { DAEMON_LATEST_VERSION: '0.10.2' }).call('GET', '/agent/latest-version')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toStartWith('text/plain')
    expect(res.text).toBe('0.10.2')
  })
})

describe('limits', () => {
  test("an org's rules total at most 1 MiB: every heartbeat serves the whole document", async () => {
    const big = await createOrg(db.app, 'policies big', 'cli')
    const rules = Array.from({ length: 100 }, (_, i) => rule(`tool-${i}`, { conditions: ['x'.repeat(500)] }))
    let status = 201
    let made = 0
    while (status === 201 && made < 40) {
      const res = await call('POST', '/v1/policies', { name: `big ${made}`, rules }, big.admin_key)
      status = res.status
      if (status === 201) made++
      else expectProblem(res, 422, ['/rules'])
    }
    expect(made).toBeGreaterThan(10)
    expect(made).toBeLessThan(25)
    const served = await call('GET', '/v1/policies?limit=200', undefined, big.admin_key)
    expect(Buffer.byteLength(JSON.stringify(served.body.policies.map((p: { rules: unknown }) => p.rules)))).toBeLessThanOrEqual(
      1024 * 1024,
    )
  })
})
