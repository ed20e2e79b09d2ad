/**
 * People (issue 10, docs/people.md): sign-in with the org's identity provider (a stand-in started
 * here with keys generated per run), invitations claimed by a verified email, roles, the team API,
 * removal from the next request, the last owner, and people in several orgs.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { randomBytes } from 'node:crypto'
import { hashToken } from '../../src/auth/opaque/format.ts'
import { ConfigError, loadConfig } from '../../src/config.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'
import { signJwt, startIdp, testKey } from '../helpers/idp.ts'
import { testRedis } from '../helpers/redis.ts'

const AUD = 'quint-dashboard'
const key = testKey('ES256')
const idp = startIdp([key])
let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg

beforeAll(async () => {
  db = await testDatabase()
  t = testApp(db, { OIDC_ISSUER: idp.issuer, OIDC_AUDIENCE: AUD })
  a = await createOrg(db.app, 'people A', 'cli')
  b = await createOrg(db.app, 'people B', 'cli')
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  idp.stop()
  await db.drop()
}, HOOK_TIMEOUT_MS)

/** A provider token for `sub` with `email`, verified unless said otherwise. */
const person = (sub: string, email: string, verified = true) =>
  signJwt(idp.claims(AUD, { sub, email, email_verified: verified }), { key })

const unique = (name: string) => `${name}-${randomBytes(4).toString('hex')}@example.com`

async function invite(org: CreatedOrg, email: string, role: string, token = org.admin_key) {
  return t.call('POST', '/v1/team', { token, json: { email, role } })
}

/** A personal token of a member of org A, as the tokens API will issue them (not through the API yet). */
async function personalToken(memberId: string, scopes: string[]) {
  const raw = 'qt_pk_' + randomBytes(32).toString('hex')
  await db.owner`
    insert into api_tokens (org_id, kind, name, token_prefix, token_hash, scopes, member_id)
    values (${a.org_id}, 'personal', 'laptop', ${raw.slice(0, 10)}, ${hashToken(raw)}, ${scopes}, ${memberId})`
  return raw
}

/** An active member of `org` with `role`: invited by the admin key, signed in once. */
async function member(org: CreatedOrg, role: string) {
  const email = unique(role)
  expect((await invite(org, email, role)).status).toBe(201)
  const token = person(`sub-${email}`, email)
  const me = await t.call('GET', '/v1/auth/whoami', { token })
  expect(me.status).toBe(200)
  return { token, id: me.body.member_id as string, email }
}

describe('sign-in', () => {
  test('an invitation is claimed by the first sign-in with that verified email, then bound to that identity', async () => {
    const email = unique('vera')
    const invited = await invite(a, email.toUpperCase(), 'viewer')
    expect(invited.status).toBe(201)
    expect(invited.body).toMatchObject({ email, role: 'viewer', status: 'pending', joined_at: null })

    const vera = person('vera-1', email)
    const me = await t.call('GET', '/v1/auth/whoami', { token: vera })
    expect(me.body).toEqual({ kind: 'member', org_id: a.org_id, member_id: invited.body.id, email, role: 'viewer' })
    const team = await t.call('GET', '/v1/team', { token: vera })
    expect(team.body.members.find((m: { id: string }) => m.id === invited.body.id)).toMatchObject({ status: 'active' })

    // Another identity with the same address (a reassigned mailbox) does not inherit it.
    const other = await t.call('GET', '/v1/auth/whoami', { token: person('vera-2', email) })
    expect({ status: other.status, code: other.body.code }).toEqual({ status: 403, code: 'not_a_member' })
  })

  test('an unverified email claims nothing; a stranger is not a member', async () => {
    const email = unique('uma')
    const invited = await invite(a, email, 'analyst')
    const res = await t.call('GET', '/v1/events', { token: person('uma-1', email, false) })
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 403, code: 'not_a_member' })
    const team = await t.call('GET', '/v1/team', { token: a.admin_key })
    expect(team.body.members.find((m: { id: string }) => m.id === invited.body.id).status).toBe('pending')
    const stranger = await t.call('GET', '/v1/events', { token: person('nobody', unique('nobody')) })
    expect(stranger.status).toBe(403)
  })

  test('bad provider tokens are 401, expired ones token_expired; without OIDC_ISSUER every provider token is 401', async () => {
    const expired = signJwt(idp.claims(AUD, { sub: 'x', exp: Math.floor(Date.now() / 1000) - 600 }), { key })
    expect((await t.call('GET', '/v1/events', { token: expired })).body.code).toBe('token_expired')
    const forged = signJwt(idp.claims(AUD, { sub: 'x' }), { key: { ...testKey('ES256'), kid: key.kid } })
    expect((await t.call('GET', '/v1/events', { token: forged })).status).toBe(401)
    const plain = testApp(db)
    const email = unique('nocfg')
    expect((await invite(a, email, 'viewer')).status).toBe(201)
    expect((await plain.call('GET', '/v1/events', { token: person('nocfg', email) })).status).toBe(401)
  })

  test("a provider whose keys cannot be loaded is a 503 with Retry-After, not the person's fault", async () => {
    const down = testApp(db, { OIDC_ISSUER: 'http://127.0.0.1:1', OIDC_AUDIENCE: AUD })
    const res = await down.call('GET', '/v1/events', {
      token: signJwt({ ...idp.claims(AUD, { sub: 's' }), iss: 'http://127.0.0.1:1' }, { key }),
    })
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('10')
  })
})

describe('roles', () => {
  test('viewer reads; analyst also triages; admin also manages; owner also manages members; no role ingests', async () => {
    const roles = ['viewer', 'analyst', 'admin', 'owner'] as const
    const people = Object.fromEntries(await Promise.all(roles.map(async (r) => [r, await member(a, r)] as const)))
    const passes = (status: number) => status !== 401 && status !== 403
    const alert = crypto.randomUUID()
    for (const role of roles) {
      const token = people[role]!.token
      const read = await t.call('GET', '/v1/events', { token })
      const triage = await t.call('PATCH', `/v1/alerts/${alert}`, { token, json: { status: 'acknowledged' } })
      const manage = await t.call('GET', '/v1/deploy-tokens', { token })
      const team = await invite(a, unique('x'), 'viewer', token)
      const ingest = await t.call('POST', '/v1/ingest', { token, json: { events: [] } })
      expect({
        role,
        read: passes(read.status),
        triage: passes(triage.status),
        manage: passes(manage.status),
        members: passes(team.status),
        ingest: passes(ingest.status),
      }).toEqual({
        role,
        read: true,
        triage: role !== 'viewer',
        manage: role === 'admin' || role === 'owner',
        members: role === 'owner',
        ingest: false,
      })
      if (!passes(triage.status)) expect(triage.body.code).toBe('insufficient_permissions')
    }
  })

  test('owners and the admin key invite any role; a bad role or address is 422, a second invitation 409', async () => {
    const owner = await member(b, 'owner')
    expect((await invite(b, unique('o2'), 'owner', owner.token)).status).toBe(201)
    expect((await invite(b, unique('o3'), 'owner', b.admin_key)).status).toBe(201)
    expect((await invite(b, unique('bad'), 'superuser', owner.token)).status).toBe(422)
    expect((await invite(b, 'not-an-email', 'viewer', owner.token)).status).toBe(422)
    const dup = unique('dup')
    expect((await invite(b, dup, 'viewer', owner.token)).status).toBe(201)
    expect((await invite(b, dup.toUpperCase(), 'viewer', owner.token)).body.code).toBe('member_exists')
  })
})

describe('the team', () => {
  test('the last owner can be neither demoted nor removed; with two, one can go', async () => {
    const org = await createOrg(db.app, 'owners', 'cli')
    const first = await member(org, 'owner')
    const demote = await t.call('PUT', `/v1/team/${first.id}`, { token: first.token, json: { role: 'admin' } })
    expect({ status: demote.status, code: demote.body.code }).toEqual({ status: 409, code: 'last_owner' })
    expect((await t.call('DELETE', `/v1/team/${first.id}`, { token: org.admin_key })).body.code).toBe('last_owner')
    const second = await member(org, 'owner')
    expect((await t.call('PUT', `/v1/team/${first.id}`, { token: second.token, json: { role: 'admin' } })).status).toBe(200)
    expect((await t.call('GET', '/v1/auth/whoami', { token: first.token })).body.role).toBe('admin')
    // Demoted to admin: no longer manages members, from this request on.
    expect((await invite(org, unique('late'), 'viewer', first.token)).status).toBe(403)
    expect((await t.call('DELETE', `/v1/team/${second.id}`, { token: second.token })).body.code).toBe('last_owner')
  })

  test('removal refuses the member from their next request and revokes their personal tokens', async () => {
    const owner = await member(a, 'owner')
    const leaver = await member(a, 'analyst')
    const raw = await personalToken(leaver.id, ['read'])
    expect((await t.call('GET', '/v1/events', { token: raw })).status).toBe(200)
    expect((await t.call('GET', '/v1/events', { token: leaver.token })).status).toBe(200)

    expect((await t.call('DELETE', `/v1/team/${leaver.id}`, { token: owner.token })).status).toBe(204)
    expect((await t.call('GET', '/v1/events', { token: leaver.token })).body.code).toBe('not_a_member')
    expect((await t.call('GET', '/v1/events', { token: raw })).status).toBe(401)
    expect((await t.call('DELETE', `/v1/team/${leaver.id}`, { token: owner.token })).status).toBe(404)
    expect((await t.call('DELETE', '/v1/team/not-a-uuid', { token: owner.token })).status).toBe(404)

    const audit = await db.owner<{ action: string; actor_type: string; actor_id: string; details: Record<string, unknown> }[]>`
      select action, actor_type, actor_id, details from audit_log
       where org_id = ${a.org_id} and target_id = ${leaver.id} order by id`
    expect(audit.map((r) => r.action)).toEqual(['member.invite', 'member.join', 'member.remove'])
    expect(audit[2]).toMatchObject({
      actor_type: 'member',
      actor_id: owner.id,
      details: { before: { role: 'analyst', status: 'active' }, after: null, revoked_tokens: 1 },
    })
  })

  test('a role change revokes the personal tokens made under the old role', async () => {
    const owner = await member(a, 'owner')
    const changing = await member(a, 'admin')
    const raw = await personalToken(changing.id, ['admin'])
    expect((await t.call('GET', '/v1/deploy-tokens', { token: raw })).status).toBe(200)
    const demoted = await t.call('PUT', `/v1/team/${changing.id}`, { token: owner.token, json: { role: 'viewer' } })
    expect(demoted.body).toMatchObject({ id: changing.id, role: 'viewer' })
    expect((await t.call('GET', '/v1/deploy-tokens', { token: raw })).status).toBe(401)
    expect((await t.call('GET', '/v1/deploy-tokens', { token: changing.token })).status).toBe(403)
  })

  test('another instance sees a removal within 5 s (the membership it remembers); this one at once', async () => {
    const owner = await member(a, 'owner')
    const leaver = await member(a, 'viewer')
    const other = testApp(db, { OIDC_ISSUER: idp.issuer, OIDC_AUDIENCE: AUD })
    expect((await other.call('GET', '/v1/events', { token: leaver.token })).status).toBe(200)
    expect((await t.call('DELETE', `/v1/team/${leaver.id}`, { token: owner.token })).status).toBe(204)
    expect((await t.call('GET', '/v1/events', { token: leaver.token })).status).toBe(403)
    await Bun.sleep(5_100)
    expect((await other.call('GET', '/v1/events', { token: leaver.token })).body.code).toBe('not_a_member')
  })

  test('in cluster mode every instance refuses a removed member from their next request (Redis)', async () => {
    const stores = [await testRedis(), await testRedis()]
    try {
      const env = { OIDC_ISSUER: idp.issuer, OIDC_AUDIENCE: AUD }
      const [one, two] = stores.map((redis) => testApp(db, env, undefined, { redis }))
      const owner = await member(a, 'owner')
      const leaver = await member(a, 'viewer')
      // Both remember the membership (a second request is a cache hit on each).
      for (const app of [one!, two!])
        for (let i = 0; i < 2; i++) expect((await app.call('GET', '/v1/events', { token: leaver.token })).status).toBe(200)
      expect((await one!.call('DELETE', `/v1/team/${leaver.id}`, { token: owner.token })).status).toBe(204)
      // The answer to the removal went out after every instance was told: the very next request.
      expect((await two!.call('GET', '/v1/events', { token: leaver.token })).body.code).toBe('not_a_member')
    } finally {
      for (const s of stores) await s.close()
    }
  })

  test("org B's members and ids are invisible to org A", async () => {
    const inB = await member(b, 'viewer')
    const ownerA = await member(a, 'owner')
    const listed = await t.call('GET', '/v1/team', { token: ownerA.token })
    expect(listed.body.members.some((m: { id: string }) => m.id === inB.id)).toBe(false)
    expect((await t.call('PUT', `/v1/team/${inB.id}`, { token: ownerA.token, json: { role: 'admin' } })).status).toBe(404)
    expect((await t.call('DELETE', `/v1/team/${inB.id}`, { token: ownerA.token })).status).toBe(404)
  })
})

describe('several orgs', () => {
  test('invitations: claimed by naming their org, or alone; two at once make the person choose', async () => {
    const email = unique('multi')
    expect((await invite(a, email, 'viewer')).status).toBe(201)
    expect((await invite(b, email, 'admin')).status).toBe(201)
    const token = person('multi-1', email)
    const none = await t.call('GET', '/v1/auth/whoami', { token })
    expect({ status: none.status, code: none.body.code }).toEqual({ status: 400, code: 'org_required' })
    expect([...none.body.orgs].sort()).toEqual([a.org_id, b.org_id].sort())
    // Naming B claims B's invitation; from then on B is the one membership, the default.
    const inB = await t.call('GET', '/v1/auth/whoami', { token, headers: { 'x-quint-org': b.org_id } })
    expect(inB.body).toMatchObject({ org_id: b.org_id, role: 'admin' })
    expect((await t.call('GET', '/v1/auth/whoami', { token, headers: { 'x-quint-org': ' ' } })).body.org_id).toBe(b.org_id)
    const inA = await t.call('GET', '/v1/auth/whoami', { token, headers: { 'x-quint-org': a.org_id.toUpperCase() } })
    expect(inA.body).toMatchObject({ org_id: a.org_id, role: 'viewer' })
    // Two memberships now: the person must say which.
    const both = await t.call('GET', '/v1/auth/whoami', { token })
    expect({ status: both.status, orgs: [...both.body.orgs].sort() }).toEqual({ status: 400, orgs: [a.org_id, b.org_id].sort() })
    const other = await createOrg(db.app, 'not theirs', 'cli')
    for (const org of [other.org_id, 'nonsense', 'x'.repeat(5000)]) {
      const res = await t.call('GET', '/v1/auth/whoami', { token, headers: { 'x-quint-org': org } })
      expect({ status: res.status, code: res.body.code }).toEqual({ status: 403, code: 'not_a_member' })
    }
  })

  test("another org inviting a member's address changes nothing until they name it", async () => {
    const vic = await member(a, 'analyst')
    const evil = await createOrg(db.app, 'evil', 'cli')
    expect((await invite(evil, vic.email, 'viewer')).status).toBe(201)
    const me = await t.call('GET', '/v1/auth/whoami', { token: vic.token })
    expect(me.body).toMatchObject({ org_id: a.org_id, role: 'analyst' })
    const pending = await t.call('GET', '/v1/team', { token: evil.admin_key })
    expect(pending.body.members.find((m: { email: string }) => m.email === vic.email).status).toBe('pending')
  })

  test('a claimed invitation is audited with the identity it was bound to', async () => {
    const email = unique('joiner')
    const invited = await invite(a, email, 'viewer')
    expect((await t.call('GET', '/v1/auth/whoami', { token: person('joiner-sub', email) })).status).toBe(200)
    const [row] = await db.owner<{ actor_type: string; details: Record<string, unknown> }[]>`
      select actor_type, details from audit_log where org_id = ${a.org_id} and action = 'member.join' and target_id = ${invited.body.id}`
    expect(row).toEqual({
      actor_type: 'member',
      details: { email, role: 'viewer', idp_issuer: idp.issuer, idp_subject: 'joiner-sub' },
    })
  })
})

describe('what people are not', () => {
  test('RBAC checks are refused: a person has no agent policy', async () => {
    const viewer = await member(a, 'viewer')
    const res = await t.call('POST', '/v1/auth/check', { token: viewer.token, json: { action: 'data:write:x' } })
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 403, code: 'insufficient_permissions' })
  })

  test("a member's changes are audited as the member", async () => {
    const admin = await member(a, 'admin')
    expect((await t.call('POST', '/v1/deploy-tokens', { token: admin.token, json: { name: 'laptops' } })).status).toBe(201)
    const [row] = await db.owner<{ actor_type: string; actor_id: string }[]>`
      select actor_type, actor_id from audit_log where org_id = ${a.org_id} and action = 'deploy_token.create'
       order by id desc limit 1`
    expect(row).toEqual({ actor_type: 'member', actor_id: admin.id })
  })
})

test('an org created with its first owner: the invitation is an owner one, claimed at first sign-in', async () => {
  const email = unique('founder')
  const org = await createOrg(db.app, 'founded', 'cli', email.toUpperCase())
  expect(org.owner_invited).toBe(email)
  const me = await t.call('GET', '/v1/auth/whoami', { token: person('founder-sub', email) })
  expect(me.body).toMatchObject({ org_id: org.org_id, role: 'owner' })
  await expect(createOrg(db.app, 'bad', 'cli', 'not an email')).rejects.toThrow(TypeError)
  expect(() => loadConfig({ QUINT_BOOTSTRAP_OWNER_EMAIL: 'nope' })).toThrow(ConfigError)
})

test('OIDC settings come together', () => {
  expect(() => loadConfig({ OIDC_ISSUER: 'https://idp.example.com' })).toThrow(ConfigError)
  expect(() => loadConfig({ OIDC_AUDIENCE: 'x' })).toThrow(ConfigError)
  expect(() => loadConfig({ SUPABASE_JWT_SECRET: 'x'.repeat(40) })).toThrow(ConfigError)
  expect(() => loadConfig({ OIDC_ISSUER: 'https://a.example', OIDC_AUDIENCE: 'x', SUPABASE_JWT_SECRET: 'short' })).toThrow(
    ConfigError,
  )
  expect(loadConfig({ OIDC_ISSUER: 'https://a.example', OIDC_AUDIENCE: 'x' }).OIDC_AUDIENCE).toBe('x')
})
