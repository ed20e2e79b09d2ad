/**
 * The admin audit log people can read (issue 10, docs/audit-log.md): every change with its actor,
 * source IP, user agent, before and after; filters; keyset pages; one org's entries only.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { encodeCursor } from '../../src/http/pagination.ts'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
/** Behind one proxy of ours: the source IP is the X-Forwarded-For entry it added. */
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg
let adminKeyId: string

const AGENT = 'dashboard/1.0 (audit test)'
const call = (method: string, path: string, json?: unknown, token = a.admin_key) =>
  t.call(method, path, {
    token,
    json,
    headers: { 'x-forwarded-for': '198.51.100.7, 203.0.113.9', 'user-agent': AGENT },
  })

beforeAll(async () => {
  db = await testDatabase()
  t = testApp(db, { TRUST_PROXY_HOPS: '1' })
  a = await createOrg(db.app, 'audit A', 'cli')
  b = await createOrg(db.app, 'audit B', 'cli')
  adminKeyId = (await call('GET', '/v1/auth/whoami')).body.token_id
  expect((await call('POST', '/v1/team', { email: 'ann@example.com', role: 'viewer' })).status).toBe(201)
  expect((await call('POST', '/v1/deploy-tokens', { name: 'laptops' })).status).toBe(201)
  expect((await call('PATCH', '/v1/org', { retention_days: 60 })).status).toBe(200)
  expect((await call('POST', '/v1/team', { email: 'bob@example.com', role: 'admin' }, b.admin_key)).status).toBe(201)
}, HOOK_TIMEOUT_MS)
afterAll(() => db.drop(), HOOK_TIMEOUT_MS)

const entries = async (qs = '') => {
  const res = await call('GET', `/v1/audit-log${qs}`)
  expect(res.status).toBe(200)
  return res.body as { entries: Record<string, unknown>[]; next_cursor: string | null }
}

describe('GET /v1/audit-log', () => {
  test('newest first, each with its actor, where it came from, and what changed', async () => {
    const { entries: all } = await entries()
    expect(all.map((e) => e.action).slice(0, 3)).toEqual(['org.update', 'deploy_token.create', 'member.invite'])
    const invite = all.find((e) => e.action === 'member.invite')!
    expect(invite).toMatchObject({
      actor_type: 'api_key',
      actor_id: adminKeyId,
      target_type: 'member',
      source_ip: '203.0.113.9',
      user_agent: AGENT,
      details: { before: null, after: { email: 'ann@example.com', role: 'viewer', status: 'pending' } },
    })
    expect(typeof invite.request_id).toBe('string')
    // Org B's invitation is not here.
    expect(all.some((e) => JSON.stringify(e.details).includes('bob@example.com'))).toBe(false)
  })

  test('filters: action (exact or kind.*), actor, target, time', async () => {
    expect((await entries('?action=member.*')).entries.map((e) => e.action)).toEqual(['member.invite'])
    expect((await entries('?action=member')).entries).toEqual([])
    const invite = (await entries('?action=member.invite')).entries[0]!
    expect((await entries(`?target_id=${invite.target_id}`)).entries.map((e) => e.id)).toEqual([invite.id])
    expect((await entries('?target_type=api_token')).entries.map((e) => e.action)).toEqual(['deploy_token.create'])
    expect((await entries(`?actor_id=${adminKeyId}`)).entries.length).toBeGreaterThanOrEqual(3)
    expect((await entries('?until=2000-01-01T00:00:00Z')).entries).toEqual([])
    expect((await entries(`?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).entries).toEqual([])
  })

  test('keyset pages cover every entry once', async () => {
    for (let i = 0; i < 5; i++) await call('PATCH', '/v1/org', { retention_days: 30 + i })
    const { entries: all } = await entries('?limit=200')
    const seen: unknown[] = []
    let cursor: string | null = null
    do {
      const page: { entries: Record<string, unknown>[]; next_cursor: string | null } = await entries(
        `?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      )
      seen.push(...page.entries.map((e) => e.id))
      cursor = page.next_cursor
    } while (cursor)
    expect(seen).toEqual(all.map((e) => e.id))
  })

  test('bad input is a 400, never a 500; who may read it', async () => {
    const uuidCursor = encodeCursor({ at: '2026-01-01 00:00:00+00', id: crypto.randomUUID() })
    for (const qs of [
      `?cursor=${uuidCursor}`,
      '?cursor=nope',
      '?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z',
      '?limit=0',
    ]) {
      expect({ qs, status: (await call('GET', `/v1/audit-log${qs}`)).status }).toEqual({ qs, status: 400 })
    }
    expect((await call('GET', '/v1/audit-log', undefined, a.deploy_token)).status).toBe(403)
  })

  test('without a proxy of ours, X-Forwarded-For is not believed', async () => {
    const direct = testApp(db)
    await direct.call('PATCH', '/v1/org', {
      token: a.admin_key,
      json: { retention_days: 45 },
      headers: { 'x-forwarded-for': '192.0.2.1' },
    })
    const [latest] = (await entries('?action=org.update&limit=1')).entries
    expect(latest!.source_ip).toBeNull()
  })
})

describe('what each change records (before and after, never a secret)', () => {
  const latest = async (targetId: string, action: string) => {
    const res = await call('GET', `/v1/audit-log?target_id=${targetId}&action=${action}`)
    expect(res.status).toBe(200)
    return res.body.entries[0] as { details: Record<string, any>; source_ip: string; user_agent: string }
  }

  test('alert rules: created, changed and deleted, each with the rule before and after', async () => {
    const condition = { field: 'tool_name', op: 'eq', value: 'Bash' }
    const rule = (await call('POST', '/v1/alert-rules', { name: 'shell', severity: 'high', condition })).body
    expect((await latest(rule.id, 'alert_rule.create')).details).toMatchObject({
      before: null,
      after: { name: 'shell', condition },
    })
    expect((await call('PATCH', `/v1/alert-rules/${rule.id}`, { severity: 'low' })).status).toBe(200)
    const update = await latest(rule.id, 'alert_rule.update')
    expect(update).toMatchObject({
      source_ip: '203.0.113.9',
      user_agent: AGENT,
      details: { fields: ['severity'], before: { severity: 'high' }, after: { severity: 'low' } },
    })
    expect((await call('DELETE', `/v1/alert-rules/${rule.id}`)).status).toBe(204)
    expect((await latest(rule.id, 'alert_rule.delete')).details).toMatchObject({ before: { name: 'shell' }, after: null })
  })

  test('webhooks: before and after with the URL by host and fingerprint, never its secret path', async () => {
    const t2 = testApp(db, { TRUST_PROXY_HOPS: '1', WEBHOOK_ALLOW_INSECURE: 'false' })
    const secretPath = '/services/T000/B000/XXXXSECRETXXXX'
    const made = await t2.call('POST', '/v1/webhooks', {
      token: a.admin_key,
      json: { url: `https://hooks.example.com${secretPath}` },
    })
    expect(made.status).toBe(201)
    const id = made.body.id as string
    const moved = await t2.call('PATCH', `/v1/webhooks/${id}`, {
      token: a.admin_key,
      json: { url: 'https://hooks.example.com/other' },
    })
    expect(moved.status).toBe(200)
    const update = await latest(id, 'webhook.update')
    expect(update.details.before.url_host).toBe('hooks.example.com')
    expect(update.details.before.url_sha256).not.toBe(update.details.after.url_sha256)
    const all = await call('GET', `/v1/audit-log?target_id=${id}`)
    expect(JSON.stringify(all.body)).not.toContain('SECRETXXXX')
    expect(JSON.stringify(all.body)).not.toContain(made.body.secret)
  })

  test('signing keys: the rotation names the key retired and the key made, in the same transaction', async () => {
    const key = (await call('POST', '/keys/signing', {})).body
    const rotated = await call('POST', `/keys/${key.kid}/rotate`, {})
    expect(rotated.status).toBe(201)
    const entry = await latest(rotated.body.kid, 'signing_key.rotate')
    expect(entry.details).toMatchObject({ before: { active_kid: key.kid }, after: { active_kid: rotated.body.kid } })
  })

  test('a machine taken over by another credential is recorded; a daemon restart is not', async () => {
    const host = { machine_id: crypto.randomUUID().replace(/-/g, ''), hostname: 'mbp.local' }
    const first = await call('POST', '/v1/machines/register', host, a.deploy_token)
    expect(first.status).toBe(201)
    const id = first.body.machine_id as string
    expect((await call('POST', '/v1/machines/register', host, a.deploy_token)).status).toBe(200)
    let entries = (await call('GET', `/v1/audit-log?target_id=${id}&action=machine.register`)).body.entries
    expect(entries).toHaveLength(1)
    expect(entries[0].details).toMatchObject({ before: null, after: { hostname: 'mbp.local' } })
    const other = (await call('POST', '/v1/deploy-tokens', { name: 'second' })).body
    expect((await call('POST', '/v1/machines/register', host, other.token)).status).toBe(200)
    entries = (await call('GET', `/v1/audit-log?target_id=${id}&action=machine.register`)).body.entries
    expect(entries).toHaveLength(2)
    expect(entries[0].details.after.token_id).toBe(other.id)
    expect(entries[0].details.before.token_id).not.toBe(other.id)
  })
})
