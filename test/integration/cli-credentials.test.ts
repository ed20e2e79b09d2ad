/**
 * The operator's credential commands (issue 10, docs/tokens.md) as real processes on a test
 * database: `org list`, duplicate org names, `key create|list|rotate|revoke` and
 * `token create|list|revoke`; what they mint works against the service, what they revoke is
 * refused by a running instance that shares Redis with them.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { testApp } from '../helpers/app.ts'
import { databaseEnv, HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'
import { childEnv, runCli } from '../helpers/process.ts'
import type { RedisStateStore } from '../../src/infra/redis.ts'
import { TEST_REDIS_URL, testRedis } from '../helpers/redis.ts'

let db: TestDatabase
let env: Record<string, string>
let a: CreatedOrg
let redis: RedisStateStore | null = null

beforeAll(async () => {
  db = await testDatabase()
  env = childEnv({ ...databaseEnv(db), LOG_LEVEL: 'warn' })
  a = await createOrg(db.app, `cli creds ${crypto.randomUUID()}`, 'cli')
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await redis?.close()
  await db.drop()
}, HOOK_TIMEOUT_MS)

async function cli(args: string[], extra: Record<string, string> = {}) {
  const res = await runCli(args, { ...env, ...extra })
  return { ...res, json: () => JSON.parse(res.stdout) }
}

describe('org', () => {
  test('list shows every org; a name in use is refused unless said explicitly', async () => {
    const name = `Acme ${crypto.randomUUID()}`
    const first = await cli(['org', 'create', '--name', name, '--json'])
    expect(first.code).toBe(0)
    const dup = await cli(['org', 'create', '--name', name.toUpperCase(), '--json'])
    expect(dup.code).toBe(1)
    expect(dup.stderr).toContain('--allow-duplicate-name')
    expect(dup.stderr).toContain(first.json().org_id)
    expect(dup.stdout).toBe('')
    const second = await cli(['org', 'create', '--name', name, '--allow-duplicate-name', '--json'])
    expect(second.code).toBe(0)
    const listed = await cli(['org', 'list', '--json'])
    expect(listed.code).toBe(0)
    const mine = (listed.json() as { id: string; name: string }[]).filter((o) => o.name === name).map((o) => o.id)
    expect(mine).toEqual([first.json().org_id, second.json().org_id])
    expect(listed.stdout).not.toContain('qk_')
  })
})

describe('key', () => {
  test('create, list, rotate with an overlap, revoke: each works against the service', async () => {
    redis ??= await testRedis()
    const t = testApp(db, {}, undefined, { redis })
    const made = await cli(['key', 'create', '--org', a.org_id, '--name', 'ops', '--json'])
    expect(made.code).toBe(0)
    const key = made.json()
    expect(key).toMatchObject({ kind: 'admin', name: 'ops', scopes: ['admin'] })
    expect((await t.call('GET', '/v1/org', { token: key.token })).status).toBe(200)

    const listed = await cli(['key', 'list', '--org', a.org_id, '--json'])
    expect((listed.json() as { id: string }[]).map((k) => k.id)).toContain(key.id)
    expect(listed.stdout).not.toContain(key.token)

    const rotated = await cli(['key', 'rotate', '--org', a.org_id, '--id', key.id, '--overlap-seconds', '0', '--json'], {
      REDIS_URL: TEST_REDIS_URL,
    })
    expect(rotated.code).toBe(0)
    const next = rotated.json().token.token as string
    expect((await t.call('GET', '/v1/org', { token: key.token })).status).toBe(401)
    expect((await t.call('GET', '/v1/org', { token: next })).status).toBe(200)

    const revoked = await cli(['key', 'revoke', '--org', a.org_id, '--id', rotated.json().token.id], {
      REDIS_URL: TEST_REDIS_URL,
    })
    expect(revoked.code).toBe(0)
    expect((await t.call('GET', '/v1/org', { token: next })).status).toBe(401)
    // The audit log says the CLI did it.
    const audit = await db.owner<{ action: string; actor_type: string }[]>`
      select action, actor_type from audit_log where org_id = ${a.org_id} and action like 'admin_key.%' order by id`
    expect([...audit]).toEqual([
      { action: 'admin_key.create', actor_type: 'cli' },
      { action: 'admin_key.rotate', actor_type: 'cli' },
      { action: 'admin_key.create', actor_type: 'cli' },
      { action: 'admin_key.revoke', actor_type: 'cli' },
    ])
  })

  test('a key of another org, or no such key: exit 1 with the reason; bad usage: exit 2', async () => {
    const other = await createOrg(db.app, `cli other ${crypto.randomUUID()}`, 'cli')
    const theirs = (await cli(['key', 'create', '--org', other.org_id, '--json'])).json()
    const res = await cli(['key', 'revoke', '--org', a.org_id, '--id', theirs.id])
    expect(res.code).toBe(1)
    expect(res.stderr).toContain('No token with that id')
    const unknown = await cli(['token', 'create', '--org', crypto.randomUUID(), '--kind', 'deploy', '--name', 'x'])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('no org')
    expect((await cli(['key', 'list', '--org', crypto.randomUUID()])).code).toBe(1)
    // `key` acts on admin keys only, `token` on service, deploy and enrollment tokens only.
    const service = (
      await cli(['token', 'create', '--org', a.org_id, '--kind', 'service', '--name', 's', '--scopes', 'read,read', '--json'])
    ).json()
    expect(service.scopes).toEqual(['read'])
    expect((await cli(['key', 'rotate', '--org', a.org_id, '--id', service.id])).code).toBe(1)
    expect((await cli(['key', 'revoke', '--org', a.org_id, '--id', service.id])).code).toBe(1)
    const adminKey = (await cli(['key', 'create', '--org', a.org_id, '--json'])).json()
    expect((await cli(['token', 'revoke', '--org', a.org_id, '--id', adminKey.id])).code).toBe(1)
    for (const [args, message] of [
      [['key', 'create'], '--org ID'],
      [['key', 'create', '--org', 'nope'], '--org ID'],
      [['key', 'revoke', '--org', a.org_id], '--id ID'],
      [['key', 'rotate', '--org', a.org_id, '--id', theirs.id, '--overlap-seconds', '-1'], '--overlap-seconds'],
      [['key', 'explode'], 'usage'],
      [['token', 'create', '--org', a.org_id, '--kind', 'personal', '--name', 'x'], '--kind'],
      [['token', 'create', '--org', a.org_id, '--kind', 'service', '--name', 'x', '--scopes', 'root'], 'unknown root'],
      [['token', 'list', '--org', a.org_id, '--name', 'x'], 'unexpected --name'],
    ] as const) {
      const bad = await cli([...args])
      expect({ args, code: bad.code }).toEqual({ args, code: 2 })
      expect(bad.stderr).toContain(message)
    }
  })
})

describe('token', () => {
  test('create service, deploy and enrollment tokens; list; a revocation reaches a running instance through Redis', async () => {
    redis ??= await testRedis()
    const t = testApp(db, {}, undefined, { redis })
    const service = await cli([
      'token',
      'create',
      '--org',
      a.org_id,
      '--kind',
      'service',
      '--name',
      'ci',
      '--scopes',
      'read',
      '--json',
    ])
    expect(service.code).toBe(0)
    const s = service.json()
    expect(s).toMatchObject({ kind: 'service', scopes: ['read'] })
    expect((await t.call('GET', '/v1/events', { token: s.token })).status).toBe(200)
    const enrollment = await cli(['token', 'create', '--org', a.org_id, '--kind', 'enrollment', '--name', 'laptop', '--json'])
    expect(enrollment.json().token).toMatch(/^qt_dk_/)
    const deploy = await cli(['token', 'create', '--org', a.org_id, '--kind', 'deploy', '--name', 'fleet', '--json'])
    expect(deploy.json().token).toMatch(/^qt_deploy_/)

    const listed = await cli(['token', 'list', '--org', a.org_id, '--json'])
    const kinds = new Set((listed.json() as { kind: string }[]).map((x) => x.kind))
    expect(kinds).toEqual(new Set(['service', 'deploy', 'enrollment']))

    const revoked = await cli(['token', 'revoke', '--org', a.org_id, '--id', s.id], { REDIS_URL: TEST_REDIS_URL })
    expect(revoked.code).toBe(0)
    expect((await t.call('GET', '/v1/events', { token: s.token })).status).toBe(401)
  })
})
