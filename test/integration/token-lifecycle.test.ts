/**
 * Every opaque credential's lifecycle (issue 10, docs/tokens.md): `/v1/tokens` for each kind,
 * who may create, see, rotate and revoke what, usage (last use, address, count), rotation with
 * an overlap, single-use enrollment, and least privilege for machines: a revoked deploy token
 * keeps the machines it registered and registers no other, a disabled machine is refused whatever
 * it presents. The daemon's calls are the public Gen-B daemon's (SPEC §7.1), in its order.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'
import { signJwt, startIdp, testKey } from '../helpers/idp.ts'

const AUD = 'quint-dashboard'
const key = testKey('ES256')
const idp = startIdp([key])
const AGENT = 'quint-tokens-test/1.0'
let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg

beforeAll(async () => {
  db = await testDatabase()
  // Usage written at every request, so that the count can be read back at once.
  t = testApp(db, { OIDC_ISSUER: idp.issuer, OIDC_AUDIENCE: AUD, TRUST_PROXY_HOPS: '1', TOKEN_USAGE_WRITE_MS: '0' })
  a = await createOrg(db.app, 'tokens A', 'cli')
  b = await createOrg(db.app, 'tokens B', 'cli')
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  idp.stop()
  await db.drop()
}, HOOK_TIMEOUT_MS)

const call = (method: string, path: string, token: string | undefined, json?: unknown, ip = '203.0.113.20') =>
  t.call(method, path, { token, json, headers: { 'x-forwarded-for': ip, 'user-agent': AGENT } })

function expectProblem(res: Awaited<ReturnType<typeof call>>, status: number, code?: string) {
  expect({ status: res.status, type: res.headers.get('content-type') }).toEqual({
    status,
    type: expect.stringContaining('application/problem+json'),
  })
  if (code) expect(res.body.code).toBe(code)
}

async function create(token: string, body: Record<string, unknown>) {
  const res = await call('POST', '/v1/tokens', token, body)
  expect({ status: res.status, body: res.body }).toMatchObject({ status: 201 })
  return res.body as { id: string; token: string; [k: string]: unknown }
}

/** An active member of org A with `role`, signed in through the provider. */
async function member(role: string) {
  const email = `${role}-${crypto.randomUUID()}@example.com`
  expect((await call('POST', '/v1/team', a.admin_key, { email, role })).status).toBe(201)
  const token = signJwt(idp.claims(AUD, { sub: `sub-${email}`, email, email_verified: true }), { key })
  const me = await call('GET', '/v1/auth/whoami', token)
  expect(me.status).toBe(200)
  return { token, id: me.body.member_id as string }
}

const host = () => ({
  machine_id: crypto.randomUUID().replace(/-/g, ''),
  hostname: 'mbp.local',
  os: 'darwin',
  arch: 'arm64',
  agent_version: '0.10.0',
})

/**
 * The public daemon's calls with one token, in its order (SPEC §7.1): register, heartbeat,
 * policies, events, the process snapshot, graphs. The statuses it got.
 */
async function daemon(token: string, fingerprint: ReturnType<typeof host>, machineId?: string) {
  const reg = await call('POST', '/v1/machines/register', token, fingerprint)
  const id = machineId ?? (reg.body?.machine_id as string)
  const base = `/v1/machines/${id}`
  const hb = await call('POST', `${base}/heartbeat`, token, { agent_version: '0.10.0', uptime: 60, active_agents: 1 })
  const policies = await call('GET', `${base}/policies`, token)
  const event = {
    event_id: `tool-${crypto.randomUUID()}`,
    action: 'tool:Bash',
    agent: 'claude',
    timestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    risk_score: 10,
    blocked: false,
    metadata: { platform: 'claude-code' },
  }
  const events = await call('POST', `${base}/events`, token, { events: [event] })
  const agents = await call('POST', `${base}/agents`, token, { agents: [] })
  const graphs = await call('POST', `${base}/graphs`, token, { graphs: [{ id: `g-${crypto.randomUUID()}`, status: 'running' }] })
  return {
    id,
    statuses: [reg.status, hb.status, policies.status, events.status, agents.status, graphs.status],
    codes: [reg, hb, policies, events, agents, graphs].map((r) => r.body?.code ?? null),
  }
}

describe('POST /v1/tokens', () => {
  test('a service token: raw once, the scopes asked, usable for them and nothing else', async () => {
    const made = await create(a.admin_key, { kind: 'service', name: 'ci', scopes: ['read'] })
    expect(made.token).toMatch(/^qt_sk_[0-9a-f]{64}$/)
    expect(made).toMatchObject({ kind: 'service', scopes: ['read'], state: 'active', use_count: 0, expires_at: null })
    expect((await call('GET', '/v1/events', made.token)).status).toBe(200)
    expectProblem(await call('GET', '/v1/webhooks', made.token), 403)
    expectProblem(await call('POST', '/v1/ingest', made.token, { events: [] }), 403)
    const listed = await call('GET', `/v1/tokens?kind=service`, a.admin_key)
    const row = listed.body.tokens.find((x: { id: string }) => x.id === made.id)
    expect(row).not.toHaveProperty('token')
    expect(JSON.stringify(listed.body)).not.toContain(made.token.slice(6))
  })

  test('each kind has its prefix, fixed scopes where it has them, and its default expiry', async () => {
    const deploy = await create(a.admin_key, { kind: 'deploy', name: 'laptops' })
    expect(deploy).toMatchObject({ kind: 'deploy', scopes: ['ingest'], expires_at: null })
    expect(deploy.token).toMatch(/^qt_deploy_[0-9a-f]{32}$/)
    const enrollment = await create(a.admin_key, { kind: 'enrollment', name: 'one laptop' })
    expect(enrollment.token).toMatch(/^qt_dk_/)
    expect(Date.parse(enrollment.expires_at as string) - Date.now()).toBeGreaterThan(3500_000)
    expect(Date.parse(enrollment.expires_at as string) - Date.now()).toBeLessThanOrEqual(3600_000)
    const admin = await create(a.admin_key, { kind: 'admin', name: 'second key' })
    expect(admin).toMatchObject({ kind: 'admin', scopes: ['admin'] })
    expect(admin.token).toMatch(/^qk_[0-9a-f]{64}$/)
    expectProblem(await call('POST', '/v1/tokens', a.admin_key, { kind: 'deploy', name: 'x', scopes: ['read'] }), 422)
    expectProblem(await call('POST', '/v1/tokens', a.admin_key, { kind: 'service', name: 'x' }), 422)
    expectProblem(await call('POST', '/v1/tokens', a.admin_key, { kind: 'service', name: 'x', scopes: ['admin'] }), 422)
    expectProblem(await call('POST', '/v1/tokens', a.admin_key, { kind: 'root', name: 'x' }), 422)
    const tooLong = new Date(Date.now() + 8 * 24 * 3600_000).toISOString()
    expectProblem(await call('POST', '/v1/tokens', a.admin_key, { kind: 'enrollment', name: 'x', expires_at: tooLong }), 422)
  })

  test('machine credentials and agents create nothing; a service token grants only what it holds', async () => {
    expectProblem(await call('POST', '/v1/tokens', a.deploy_token, { kind: 'service', name: 'x', scopes: ['ingest'] }), 403)
    const manager = await create(a.admin_key, { kind: 'service', name: 'mgr', scopes: ['manage', 'read'] })
    expect(
      (await call('POST', '/v1/tokens', manager.token, { kind: 'service', name: 'x', scopes: ['ingest', 'read'] })).status,
    ).toBe(201)
    expectProblem(await call('POST', '/v1/tokens', manager.token, { kind: 'service', name: 'x', scopes: ['members'] }), 403)
    expectProblem(await call('POST', '/v1/tokens', manager.token, { kind: 'service', name: 'x', scopes: ['triage'] }), 403)
    expectProblem(await call('POST', '/v1/tokens', manager.token, { kind: 'admin', name: 'x' }), 403)
    expectProblem(await call('POST', '/v1/tokens', manager.token, { kind: 'personal', name: 'x' }), 403)
  })
})

describe('personal tokens', () => {
  test("within the member's role, theirs alone to see and rotate, revoked with the membership", async () => {
    const viewer = await member('viewer')
    const mine = await create(viewer.token, { kind: 'personal', name: 'laptop' })
    expect(mine).toMatchObject({ kind: 'personal', scopes: ['read'], member_id: viewer.id })
    expect(mine.token).toMatch(/^qt_pk_/)
    expect(Date.parse(mine.expires_at as string) - Date.now()).toBeGreaterThan(89 * 24 * 3600_000)
    expectProblem(await call('POST', '/v1/tokens', viewer.token, { kind: 'personal', name: 'x', scopes: ['manage'] }), 403)
    expectProblem(await call('POST', '/v1/tokens', viewer.token, { kind: 'service', name: 'x', scopes: ['read'] }), 403)
    expect((await call('GET', '/v1/events', mine.token)).status).toBe(200)
    expectProblem(await call('GET', '/v1/alert-rules', mine.token), 403)

    // The viewer sees their own tokens and nobody else's; the admin key sees all.
    const own = await call('GET', '/v1/tokens', viewer.token)
    expect(own.body.tokens.map((x: { id: string }) => x.id)).toEqual([mine.id])
    expectProblem(await call('GET', '/v1/tokens?kind=service', viewer.token), 403)
    expectProblem(await call('GET', `/v1/tokens?member_id=${crypto.randomUUID()}`, viewer.token), 403)
    const all = await call('GET', `/v1/tokens?member_id=${viewer.id}`, a.admin_key)
    expect(all.body.tokens.map((x: { id: string }) => x.id)).toEqual([mine.id])

    // Nobody else rotates it (the new value would be theirs); the owner does.
    expectProblem(await call('POST', `/v1/tokens/${mine.id}/rotate`, a.admin_key, { overlap_seconds: 0 }), 403)
    const rotated = await call('POST', `/v1/tokens/${mine.id}/rotate`, viewer.token, { overlap_seconds: 0 })
    expect(rotated.status).toBe(201)
    expectProblem(await call('GET', '/v1/events', mine.token), 401)
    const next = rotated.body.token.token as string
    expect((await call('GET', '/v1/events', next)).status).toBe(200)

    // Removal revokes it from the next request.
    expect((await call('DELETE', `/v1/team/${viewer.id}`, a.admin_key)).status).toBe(204)
    expectProblem(await call('GET', '/v1/events', next), 401)
  })

  test("an admin's personal token holds manage but not members; revoking another's needs manage", async () => {
    const admin = await member('admin')
    const analyst = await member('analyst')
    const adminToken = await create(admin.token, { kind: 'personal', name: 'cli' })
    expect((adminToken.scopes as string[]).sort()).toEqual(['manage', 'read', 'triage'])
    expectProblem(await call('POST', '/v1/tokens', admin.token, { kind: 'admin', name: 'x' }), 403)
    const theirs = await create(analyst.token, { kind: 'personal', name: 'a' })
    expectProblem(await call('DELETE', `/v1/tokens/${adminToken.id}`, analyst.token), 404)
    expect((await call('DELETE', `/v1/tokens/${theirs.id}`, adminToken.token)).status).toBe(204)
    expectProblem(await call('GET', '/v1/events', theirs.token as string), 401)
  })
})

describe('who may rotate, and who makes tokens at all (hostile review, issue 10)', () => {
  test('rotating needs what creating needs: an admin-role person cannot mint a members token by rotating one', async () => {
    const admin = await member('admin')
    const strong = await create(a.admin_key, { kind: 'service', name: 'owner-grade', scopes: ['members'] })
    expectProblem(await call('POST', `/v1/tokens/${strong.id}/rotate`, admin.token, { overlap_seconds: 0 }), 403)
    const key = await create(a.admin_key, { kind: 'admin', name: 'k' })
    expectProblem(await call('POST', `/v1/tokens/${key.id}/rotate`, admin.token, {}), 403)
    // A token holding `members` (and nothing else) manages admin keys: creates and revokes them.
    const made = await create(strong.token, { kind: 'admin', name: 'by members' })
    expect((await call('DELETE', `/v1/tokens/${made.id}`, strong.token)).status).toBe(204)
    // Still active: nothing above was rotated.
    expect((await call('GET', '/v1/team', strong.token)).status).toBe(403)
    expect(
      (await call('POST', '/v1/team', strong.token, { email: `${crypto.randomUUID()}@example.com`, role: 'viewer' })).status,
    ).toBe(201)
  })

  test('a JWT makes no opaque token, however strong: it would outlive the JWT', async () => {
    const app = await call('POST', '/tokens/app', a.admin_key, { customer_id: a.org_id, name: 'root', scopes: ['*'] })
    expect(app.status).toBe(201)
    expectProblem(await call('POST', '/v1/tokens', app.body.token, { kind: 'admin', name: 'forever' }), 403)
    expectProblem(await call('POST', '/v1/tokens', app.body.token, { kind: 'service', name: 'x', scopes: ['read'] }), 403)
    const svc = await create(a.admin_key, { kind: 'service', name: 'y', scopes: ['read'] })
    expectProblem(await call('POST', `/v1/tokens/${svc.id}/rotate`, app.body.token, {}), 403)
  })

  test('a person demoted a moment ago makes no credential of their old role on an instance that remembers it', async () => {
    await member('owner') // not the last owner
    const owner = await member('owner')
    const other = testApp(db, { OIDC_ISSUER: idp.issuer, OIDC_AUDIENCE: AUD })
    expect((await other.call('GET', '/v1/team', { token: owner.token })).status).toBe(200)
    expect((await call('PUT', `/v1/team/${owner.id}`, a.admin_key, { role: 'viewer' })).status).toBe(200)
    const key = await other.call('POST', '/v1/tokens', { token: owner.token, json: { kind: 'admin', name: 'late' } })
    expectProblem(key, 403)
    const svc = await other.call('POST', '/v1/tokens', {
      token: owner.token,
      json: { kind: 'service', name: 's', scopes: ['read'] },
    })
    expectProblem(svc, 403)
    const victim = await create(a.admin_key, { kind: 'service', name: 'v', scopes: ['read'] })
    expectProblem(await other.call('DELETE', `/v1/tokens/${victim.id}`, { token: owner.token }), 404)
  })

  test('a personal token is made under the role the person has now, not the one an instance remembers', async () => {
    await member('owner') // not the last owner: the demotion below is allowed
    const owner = await member('owner')
    const other = testApp(db, { OIDC_ISSUER: idp.issuer, OIDC_AUDIENCE: AUD })
    // The other instance remembers the owner for 5 s.
    expect((await other.call('GET', '/v1/team', { token: owner.token })).status).toBe(200)
    expect((await call('PUT', `/v1/team/${owner.id}`, a.admin_key, { role: 'viewer' })).status).toBe(200)
    const stale = await other.call('POST', '/v1/tokens', { token: owner.token, json: { kind: 'personal', name: 'late' } })
    expect(stale.status).toBe(201)
    expect(stale.body.scopes).toEqual(['read'])
    const asked = await other.call('POST', '/v1/tokens', {
      token: owner.token,
      json: { kind: 'personal', name: 'x', scopes: ['members'] },
    })
    expectProblem(asked, 403)
  })
})

describe('usage', () => {
  test('last use, its address and the count', async () => {
    const made = await create(a.admin_key, { kind: 'service', name: 'counted', scopes: ['read'] })
    for (let i = 0; i < 3; i++) expect((await call('GET', '/v1/events', made.token, undefined, '198.51.100.4')).status).toBe(200)
    // Written after the answer: wait for the third write to land.
    let row: Record<string, unknown> = {}
    for (let i = 0; i < 50 && row.use_count !== 3; i++) {
      row = (await call('GET', '/v1/tokens?kind=service', a.admin_key)).body.tokens.find((x: { id: string }) => x.id === made.id)
      if (row.use_count !== 3) await Bun.sleep(20)
    }
    expect(row).toMatchObject({ use_count: 3, last_used_ip: '198.51.100.4' })
    expect(Date.now() - Date.parse(row.last_used_at as string)).toBeLessThan(60_000)
  })

  test('uses after the last write are written by the flush timer, not left until the next use', async () => {
    const timed = testApp(db, { TRUST_PROXY_HOPS: '1', TOKEN_USAGE_WRITE_MS: '1000' })
    const made = await create(a.admin_key, { kind: 'service', name: 'timed', scopes: ['read'] })
    const use = (ip: string) => timed.call('GET', '/v1/events', { token: made.token, headers: { 'x-forwarded-for': ip } })
    for (const ip of ['198.51.100.1', '198.51.100.66', '198.51.100.66']) expect((await use(ip)).status).toBe(200)
    let row: { use_count: string; ip: string } | undefined
    for (let i = 0; i < 40 && row?.use_count !== '3'; i++) {
      await Bun.sleep(100)
      ;[row] = await db.owner<{ use_count: string; ip: string }[]>`
        select use_count::text, host(last_used_ip) as ip from api_tokens where id = ${made.id}`
    }
    expect(row).toEqual({ use_count: '3', ip: '198.51.100.66' })
  })

  test('with the default minute between writes, every use still counts: added at the next write or at shutdown', async () => {
    const quiet = testApp(db, { TRUST_PROXY_HOPS: '1' })
    const made = await create(a.admin_key, { kind: 'service', name: 'batched', scopes: ['read'] })
    const use = () => quiet.call('GET', '/v1/events', { token: made.token, headers: { 'x-forwarded-for': '192.0.2.7' } })
    for (let i = 0; i < 7; i++) expect((await use()).status).toBe(200)
    // Cache entries come and go (a revocation elsewhere drops them all): the count survives.
    await quiet.resolver.revoked([])
    await quiet.resolver.flushUsage()
    const [row] = await db.owner<{ use_count: string; ip: string }[]>`
      select use_count::text, host(last_used_ip) as ip from api_tokens where id = ${made.id}`
    expect(row).toEqual({ use_count: '7', ip: '192.0.2.7' })
  })
})

describe('rotation', () => {
  test('admin key: both work during the overlap, the old one stops after it; a second rotation is a 409', async () => {
    const old = await create(a.admin_key, { kind: 'admin', name: 'rotating' })
    const res = await call('POST', `/v1/tokens/${old.id}/rotate`, old.token, { overlap_seconds: 1 })
    expect(res.status).toBe(201)
    expect(res.body.previous).toMatchObject({ id: old.id, replaced_by: res.body.token.id, state: 'active' })
    expect(Date.parse(res.body.previous.expires_at) - Date.now()).toBeLessThanOrEqual(1000)
    expect(res.body.token).toMatchObject({ kind: 'admin', name: 'rotating', scopes: ['admin'] })
    const next = res.body.token.token as string
    expect((await call('GET', '/v1/org', old.token)).status).toBe(200)
    expect((await call('GET', '/v1/org', next)).status).toBe(200)
    expectProblem(await call('POST', `/v1/tokens/${old.id}/rotate`, next, {}), 409, 'token_not_active')
    await Bun.sleep(1100)
    expectProblem(await call('GET', '/v1/org', old.token), 401)
    expect((await call('GET', '/v1/org', next)).status).toBe(200)
    const actions = await db.owner<{ action: string; details: Record<string, any> }[]>`
      select action, details from audit_log where org_id = ${a.org_id} and target_id in (${old.id}, ${res.body.token.id}) order by id`
    expect(actions.map((r) => r.action)).toEqual(['admin_key.create', 'admin_key.rotate', 'admin_key.create'])
    expect(actions[1]!.details).toMatchObject({
      before: { state: 'active', replaced_by: null },
      after: { replaced_by: res.body.token.id },
    })
    expect(JSON.stringify(actions)).not.toContain(next.slice(3))
  })

  test('deploy and enrollment tokens are not rotated; another org cannot touch a token', async () => {
    const deploy = await create(a.admin_key, { kind: 'deploy', name: 'd' })
    expectProblem(await call('POST', `/v1/tokens/${deploy.id}/rotate`, a.admin_key, {}), 400)
    expectProblem(await call('POST', `/v1/tokens/${deploy.id}/rotate`, b.admin_key, {}), 404)
    expectProblem(await call('DELETE', `/v1/tokens/${deploy.id}`, b.admin_key), 404)
    expectProblem(await call('DELETE', `/v1/tokens/not-a-uuid`, a.admin_key), 404)
    expect((await call('GET', `/v1/tokens?limit=200`, b.admin_key)).body.tokens.map((x: { id: string }) => x.id)).not.toContain(
      deploy.id,
    )
  })
})

describe('enrollment: single use, exchanged at register', () => {
  test('one registration gets a service token; the second use is refused; it does nothing else', async () => {
    const enrollment = await create(a.admin_key, { kind: 'enrollment', name: 'new hire' })
    expectProblem(await call('POST', '/v1/ingest', enrollment.token, { events: [] }), 403)
    const first = await call('POST', '/v1/machines/register', enrollment.token, host())
    expect(first.status).toBe(201)
    expect(first.body.service_token).toMatch(/^qt_sk_/)
    expectProblem(await call('POST', '/v1/machines/register', enrollment.token, host()), 401)
    const daemonRun = await daemon(first.body.service_token, host(), first.body.machine_id)
    expect(daemonRun.statuses.slice(1)).toEqual([200, 200, 200, 200, 201])
    const listed = (await call('GET', '/v1/tokens?kind=enrollment', a.admin_key)).body.tokens.find(
      (x: { id: string }) => x.id === enrollment.id,
    )
    expect(listed).toMatchObject({ state: 'revoked' })
  })

  test('two registrations racing with one enrollment token: exactly one succeeds', async () => {
    const enrollment = await create(a.admin_key, { kind: 'enrollment', name: 'race' })
    const all = await Promise.all([0, 1, 2, 3].map(() => call('POST', '/v1/machines/register', enrollment.token, host())))
    expect(all.map((r) => r.status).sort()).toEqual([201, 401, 401, 401])
  })
})

describe('least privilege for machines', () => {
  test('a revoked deploy token keeps the machines it registered, with the daemon’s exact calls, and registers no other', async () => {
    const deploy = await create(a.admin_key, { kind: 'deploy', name: 'fleet' })
    const laptop = host()
    const before = await daemon(deploy.token, laptop)
    expect(before.statuses).toEqual([201, 200, 200, 200, 200, 201])
    const other = await daemon(a.deploy_token, host())
    expect((await call('DELETE', `/v1/tokens/${deploy.id}`, a.admin_key)).status).toBe(204)

    // The daemon restarts: it registers again with the same token, then carries on.
    const after = await daemon(deploy.token, laptop)
    expect(after.id).toBe(before.id)
    expect(after.statuses).toEqual([200, 200, 200, 200, 200, 201])
    // It mints nothing: a fresh service token would be a live credential made from a revoked one.
    const again = await call('POST', '/v1/machines/register', deploy.token, laptop)
    expect(again.status).toBe(200)
    expect(again.body).not.toHaveProperty('service_token')
    // Nor on an instance whose cache still holds it as live: registration reads the token's row.
    const stale = await create(a.admin_key, { kind: 'deploy', name: 'stale' })
    const instance = testApp(db)
    expect((await instance.call('POST', '/v1/machines/register', { token: stale.token, json: host() })).status).toBe(201)
    expect((await call('DELETE', `/v1/tokens/${stale.id}`, a.admin_key)).status).toBe(204)
    const fresh = await instance.call('POST', '/v1/machines/register', { token: stale.token, json: host() })
    expectProblem(fresh, 403, 'token_retired')
    // A new machine, or one it did not register, is refused; and nothing else is open to it.
    const refused = await call('POST', '/v1/machines/register', deploy.token, host())
    expectProblem(refused, 403, 'token_retired')
    expectProblem(await call('POST', `/v1/machines/${other.id}/heartbeat`, deploy.token, { uptime: 1 }), 404)
    expectProblem(await call('POST', '/v1/ingest', deploy.token, { events: [] }), 401)
    expectProblem(await call('GET', '/v1/tokens', deploy.token), 401)
    const listed = (await call('GET', '/v1/tokens?kind=deploy', a.admin_key)).body.tokens.find(
      (x: { id: string }) => x.id === deploy.id,
    )
    expect(listed).toMatchObject({ state: 'revoked' })
  })

  test('a disabled machine is refused from its next request whatever it presents; enabling lets it back', async () => {
    const laptop = host()
    const enrollment = await create(a.admin_key, { kind: 'enrollment', name: 'to disable' })
    const reg = await call('POST', '/v1/machines/register', enrollment.token, laptop)
    const service = reg.body.service_token as string
    const id = reg.body.machine_id as string
    expect((await daemon(a.deploy_token, laptop, id)).statuses).toEqual([200, 200, 200, 200, 200, 201])

    const off = await call('PATCH', `/v1/machines/${id}`, a.admin_key, { status: 'disabled' })
    expect(off.status).toBe(200)
    expect(off.body.status).toBe('disabled')
    const withDeploy = await daemon(a.deploy_token, laptop, id)
    expect(withDeploy.statuses).toEqual([403, 403, 403, 403, 403, 403])
    expect(new Set(withDeploy.codes)).toEqual(new Set(['machine_disabled']))
    // Its own service token was revoked with it: refused everywhere, not only on machine routes.
    expectProblem(await call('POST', `/v1/machines/${id}/heartbeat`, service, { uptime: 1 }), 401)
    expectProblem(await call('POST', '/v1/ingest', service, { events: [] }), 401)
    // Still listed, with its status; the change is audited.
    expect((await call('GET', `/v1/machines/${id}`, a.admin_key)).body.status).toBe('disabled')
    const [audit] = await db.owner<{ action: string; details: Record<string, any>; source_ip: string }[]>`
      select action, details, host(source_ip) as source_ip from audit_log where org_id = ${a.org_id} and target_id = ${id} and action = 'machine.disable'`
    expect(audit).toMatchObject({
      details: { before: { status: 'active' }, after: { status: 'disabled' } },
      source_ip: '203.0.113.20',
    })

    expect((await call('PATCH', `/v1/machines/${id}`, a.admin_key, { status: 'active' })).status).toBe(200)
    expect((await daemon(a.deploy_token, laptop, id)).statuses).toEqual([200, 200, 200, 200, 200, 201])
  })

  test('DELETE cuts a machine off like disabling (idempotent); machines and viewers cannot', async () => {
    const { id } = await daemon(a.deploy_token, host())
    const viewer = await member('viewer')
    expectProblem(await call('DELETE', `/v1/machines/${id}`, viewer.token), 403)
    expectProblem(await call('DELETE', `/v1/machines/${id}`, a.deploy_token), 403)
    expectProblem(await call('DELETE', `/v1/machines/${id}`, b.admin_key), 404)
    expect((await call('DELETE', `/v1/machines/${id}`, a.admin_key)).status).toBe(204)
    expect((await call('DELETE', `/v1/machines/${id}`, a.admin_key)).status).toBe(204)
    expectProblem(await call('POST', `/v1/machines/${id}/heartbeat`, a.deploy_token, { uptime: 1 }), 403, 'machine_disabled')
    expectProblem(await call('PATCH', `/v1/machines/${id}`, a.admin_key, { status: 'gone' }), 422)
  })
})
