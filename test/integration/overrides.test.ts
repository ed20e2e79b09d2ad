/**
 * The human override flow (SPEC §16.7) on a real Postgres: decide with the override token as the
 * bearer and with a management credential naming it; single use (also under concurrency); event
 * binding, allowed decisions, revoked and expired tokens, other orgs; the cosignature; the durable
 * record, the listing, and the audit trail (never the token). Also SecretBox.derive, the source of
 * the cosignature key, and the list of pending approval requests (`GET /v1/overrides/pending`).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { verifyOverrideCosignature } from '../../src/auth/override-cosign.ts'
import { SecretBox } from '../../src/auth/secret-box.ts'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { withOrg } from '../../src/infra/db.ts'
import { testApp, testSecrets, twoOrgApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'
import { signJwt, startIdp, testKey } from '../helpers/idp.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg
let agentA: { token: string; jti: string }

const RBAC = { allowed_actions: ['data:read:*'], denied_actions: [], max_sensitivity_level: 3 }
const IDP_KEY = testKey('ES256')

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
  agentA = await agentOf(a)
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

async function agentOf(o: CreatedOrg) {
  const app = await t.call('POST', '/tokens/app', { token: o.admin_key, json: { name: 'root', scopes: ['*'] } })
  const bearer = await t.call('POST', '/tokens/bearer', {
    token: o.admin_key,
    json: { app_token_hash: app.body.token_hash, environment: 'prod' },
  })
  const agent = await t.call('POST', '/tokens/agent', {
    token: o.admin_key,
    json: { bearer_jti: bearer.body.jti, agent_id: 'agent-1', rbac: RBAC },
  })
  expect(agent.status).toBe(201)
  return { token: agent.body.token as string, jti: agent.body.jti as string }
}

async function override(eventId: string, extra: Record<string, unknown> = {}, by = agentA.token) {
  const res = await t.call('POST', '/tokens/override', { token: by, json: { event_id: eventId, ...extra } })
  expect(res.status).toBe(201)
  return { token: res.body.token as string, jti: res.body.jti as string }
}

function expectProblem(res: { status: number; headers: Headers; body: any }, status: number, code?: string) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  if (code) expect(res.body.code).toBe(code)
}

const cosignKey = () => testSecrets.derive('override-cosign')

describe('SecretBox.derive', () => {
  test('HKDF-SHA256 per purpose: RFC 5869 by hand, stable, separated by purpose and master key', () => {
    const master = randomBytes(32)
    const box = new SecretBox(master)
    // RFC 5869 with an empty salt (= 32 zero bytes) and L = 32: one expand block.
    const prk = createHmac('sha256', Buffer.alloc(32)).update(master).digest()
    const okm = createHmac('sha256', prk)
      .update(Buffer.concat([Buffer.from('quint/override-cosign'), Buffer.of(1)]))
      .digest()
    expect(box.derive('override-cosign').equals(okm)).toBe(true)
    expect(box.derive('override-cosign').equals(new SecretBox(master).derive('override-cosign'))).toBe(true)
    expect(box.derive('override-cosign').equals(box.derive('action-signature'))).toBe(false)
    expect(box.derive('override-cosign').equals(new SecretBox(randomBytes(32)).derive('override-cosign'))).toBe(false)
    expect(box.derive('x').length).toBe(32)
    expect(() => box.derive('')).toThrow()
    expect(() => box.derive('Bad Purpose')).toThrow()
  })
})

describe('decide with the override token as bearer', () => {
  test('200 with a verifiable cosignature; a second decide is 409 override_used; recorded, listed and audited', async () => {
    const ov = await override('evt-1', { allowed_decisions: ['approve', 'reject'] })
    const res = await t.call('POST', '/overrides/evt-1/decide', {
      token: ov.token,
      json: { override_jti: ov.jti, decision: 'reject', reason: 'looks malicious' },
    })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ event_id: 'evt-1', decision: 'reject', override_jti: ov.jti, reason: 'looks malicious' })
    expect(res.body.cosignature).toMatch(/^[0-9a-f]{64}$/)
    expect(verifyOverrideCosignature(cosignKey(), 'evt-1', 'reject', ov.jti, res.body.cosignature)).toBe(true)
    expect(verifyOverrideCosignature(cosignKey(), 'evt-1', 'approve', ov.jti, res.body.cosignature)).toBe(false)
    expect(Math.abs(Date.parse(res.body.decided_at) - Date.now())).toBeLessThan(60_000)

    // The token is spent: again as bearer (with or without naming itself) and named by admin.
    expectProblem(
      await t.call('POST', '/overrides/evt-1/decide', { token: ov.token, json: { decision: 'approve' } }),
      409,
      'override_used',
    )
    expectProblem(
      await t.call('POST', '/overrides/evt-1/decide', {
        token: a.admin_key,
        json: { override_jti: ov.jti, decision: 'approve' },
      }),
      409,
      'override_used',
    )

    const [row] = await db.owner`select used_at from auth.issued_tokens where jti = ${ov.jti}`
    expect(row!.used_at).toBeInstanceOf(Date)
    const list = await t.call('GET', '/overrides/evt-1', { token: a.admin_key })
    expect(list.status).toBe(200)
    expect(list.body.decisions).toHaveLength(1)
    expect(list.body.decisions[0]).toMatchObject({
      override_jti: ov.jti,
      decision: 'reject',
      cosignature: res.body.cosignature,
      decided_by: `jwt:override:${ov.jti}`,
    })

    const audit = await db.owner`select action, actor_type, actor_id, target_id, details from audit_log
      where org_id = ${a.org_id} and action like 'override.%' and details->>'override_jti' = ${ov.jti} order by id`
    expect(audit.map((r) => r.action)).toEqual(['override.decide', 'override.refused', 'override.refused'])
    expect(audit[0]).toMatchObject({ actor_type: 'token', actor_id: ov.jti, target_id: 'evt-1' })
    expect(audit[0]!.details).toMatchObject({ decision: 'reject', reason: 'looks malicious', override_jti: ov.jti })
    expect(audit[1]!.details.refusal).toBe('override_used')
    const everything = JSON.stringify(await db.owner`select * from audit_log where org_id = ${a.org_id}`)
    expect(everything).not.toContain(ov.token.slice(12, 60))
  })

  test('concurrent decides with one token: exactly one succeeds', async () => {
    const ov = await override('evt-race')
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        t.call(
          'POST',
          '/overrides/evt-race/decide',
          i % 2
            ? { token: ov.token, json: { decision: 'approve' } }
            : { token: a.admin_key, json: { override_jti: ov.jti, decision: 'approve' } },
        ),
      ),
    )
    expect(results.filter((r) => r.status === 200)).toHaveLength(1)
    for (const r of results.filter((r) => r.status !== 200)) expectProblem(r, 409, 'override_used')
    const [n] = await db.owner`select count(*)::int as n from auth.override_decisions where override_jti = ${ov.jti}`
    expect(n!.n).toBe(1)
  })

  test('another event in the path: 409 override_event_mismatch, and the token stays usable', async () => {
    const ov = await override('evt-bound')
    expectProblem(
      await t.call('POST', '/overrides/evt-other/decide', { token: ov.token, json: { decision: 'approve' } }),
      409,
      'override_event_mismatch',
    )
    expectProblem(
      await t.call('POST', '/overrides/evt-other/decide', {
        token: a.admin_key,
        json: { override_jti: ov.jti, decision: 'approve' },
      }),
      409,
      'override_event_mismatch',
    )
    expect((await t.call('POST', '/overrides/evt-bound/decide', { token: ov.token, json: { decision: 'approve' } })).status).toBe(
      200,
    )
  })

  test('a decision outside allowed_decisions is 422; `|` in a decision is 422 at mint and at decide', async () => {
    const ov = await override('evt-422', { allowed_decisions: ['approve'] })
    const res = await t.call('POST', '/overrides/evt-422/decide', { token: ov.token, json: { decision: 'reject' } })
    expectProblem(res, 422, 'validation_failed')
    expect(res.body.errors[0].path).toBe('/decision')
    expectProblem(await t.call('POST', '/overrides/evt-422/decide', { token: ov.token, json: { decision: 'a|b' } }), 422)
    expectProblem(await t.call('POST', '/overrides/evt-422/decide', { token: ov.token, json: {} }), 422)
    expectProblem(
      await t.call('POST', '/tokens/override', { token: agentA.token, json: { event_id: 'e', allowed_decisions: ['a|b'] } }),
      422,
    )
    expect((await t.call('POST', '/overrides/evt-422/decide', { token: ov.token, json: { decision: 'approve' } })).status).toBe(
      200,
    )
  })

  test('an override token naming another override is 403', async () => {
    const mine = await override('evt-n1')
    const other = await override('evt-n1')
    expectProblem(
      await t.call('POST', '/overrides/evt-n1/decide', {
        token: mine.token,
        json: { override_jti: other.jti, decision: 'approve' },
      }),
      403,
    )
  })
})

describe('decide with a management credential', () => {
  test('admin key naming override_jti: 200; missing override_jti 422; malformed 422', async () => {
    const ov = await override('evt-m')
    expectProblem(await t.call('POST', '/overrides/evt-m/decide', { token: a.admin_key, json: { decision: 'approve' } }), 422)
    expectProblem(
      await t.call('POST', '/overrides/evt-m/decide', {
        token: a.admin_key,
        json: { override_jti: 'nope', decision: 'approve' },
      }),
      422,
    )
    const res = await t.call('POST', '/overrides/evt-m/decide', {
      token: a.admin_key,
      json: { override_jti: ov.jti.toUpperCase(), customer_id: a.org_id, decision: 'approve' },
    })
    expect(res.status).toBe(200)
    expect(res.body.override_jti).toBe(ov.jti)
    expect(verifyOverrideCosignature(cosignKey(), 'evt-m', 'approve', ov.jti, res.body.cosignature)).toBe(true)
  })

  test('other orgs: customer_id of another org 404; another org naming our jti 404; not an override 404', async () => {
    const ov = await override('evt-x')
    expectProblem(
      await t.call('POST', '/overrides/evt-x/decide', { token: ov.token, json: { customer_id: b.org_id, decision: 'approve' } }),
      404,
    )
    expectProblem(
      await t.call('POST', '/overrides/evt-x/decide', {
        token: b.admin_key,
        json: { override_jti: ov.jti, decision: 'approve' },
      }),
      404,
    )
    expectProblem(
      await t.call('POST', '/overrides/evt-x/decide', {
        token: a.admin_key,
        json: { override_jti: agentA.jti, decision: 'approve' },
      }),
      404,
    )
    expectProblem(
      await t.call('POST', '/overrides/evt-x/decide', {
        token: a.admin_key,
        json: { override_jti: crypto.randomUUID(), decision: 'approve' },
      }),
      404,
    )
    expect((await t.call('GET', '/overrides/evt-x', { token: b.admin_key })).body.decisions).toEqual([])
    expect((await t.call('POST', '/overrides/evt-x/decide', { token: ov.token, json: { decision: 'approve' } })).status).toBe(200)
    expect((await t.call('GET', '/overrides/evt-x', { token: b.admin_key })).body.decisions).toEqual([])
  })

  test('credentials that are neither the override nor management: 403', async () => {
    const ov = await override('evt-f')
    expectProblem(
      await t.call('POST', '/overrides/evt-f/decide', {
        token: agentA.token,
        json: { override_jti: ov.jti, decision: 'approve' },
      }),
      403,
    )
    expectProblem(
      await t.call('POST', '/overrides/evt-f/decide', {
        token: a.deploy_token,
        json: { override_jti: ov.jti, decision: 'approve' },
      }),
      403,
    )
    expectProblem(await t.call('POST', '/overrides/evt-f/decide', { json: { override_jti: ov.jti, decision: 'approve' } }), 401)
    expectProblem(await t.call('GET', '/overrides/evt-f', { token: agentA.token }), 403)
    expect((await t.call('GET', '/overrides/evt-f', { token: ov.token })).status).toBe(200)
    expectProblem(await t.call('GET', '/overrides/evt-other', { token: ov.token }), 403)
  })

  test('revoked (itself or its minter) and expired overrides are refused', async () => {
    const ov = await override('evt-r')
    expect((await t.call('DELETE', `/revocation/${ov.jti}`, { token: a.admin_key })).status).toBe(200)
    expectProblem(await t.call('POST', '/overrides/evt-r/decide', { token: ov.token, json: { decision: 'approve' } }), 401)
    expectProblem(
      await t.call('POST', '/overrides/evt-r/decide', {
        token: a.admin_key,
        json: { override_jti: ov.jti, decision: 'approve' },
      }),
      409,
      'override_revoked',
    )

    const minter = await agentOf(a)
    const child = await override('evt-r2', {}, minter.token)
    expect((await t.call('DELETE', `/revocation/${minter.jti}`, { token: a.admin_key })).status).toBe(200)
    expectProblem(await t.call('POST', '/overrides/evt-r2/decide', { token: child.token, json: { decision: 'approve' } }), 401)
    expectProblem(
      await t.call('POST', '/overrides/evt-r2/decide', {
        token: a.admin_key,
        json: { override_jti: child.jti, decision: 'approve' },
      }),
      409,
      'override_revoked',
    )

    const short = await override('evt-exp', { ttl_minutes: 1 / 60 })
    await Bun.sleep(1_100)
    expectProblem(
      await t.call('POST', '/overrides/evt-exp/decide', {
        token: a.admin_key,
        json: { override_jti: short.jti, decision: 'approve' },
      }),
      409,
      'override_expired',
    )
    const [used] = await db.owner`select used_at from auth.issued_tokens where jti = ${short.jti}`
    expect(used!.used_at).toBeNull()
  })
})

describe('decide as a person signed in with the identity provider', () => {
  const AUD = 'people-aud'
  let idp: ReturnType<typeof startIdp>
  let people: ReturnType<typeof testApp>
  beforeAll(() => {
    idp = startIdp([IDP_KEY])
    people = testApp(db, { OIDC_ISSUER: idp.issuer, OIDC_AUDIENCE: AUD })
  })
  afterAll(() => idp.stop())

  /** An active member of org A with `role`: invited by the admin key, claimed at first sign-in. */
  async function member(role: string) {
    const email = `${role}-${crypto.randomUUID()}@example.com`
    expect((await people.call('POST', '/v1/team', { token: a.admin_key, json: { email, role } })).status).toBe(201)
    const token = signJwt(idp.claims(AUD, { sub: `sub-${email}`, email, email_verified: true }), { key: IDP_KEY })
    const me = await people.call('GET', '/v1/auth/whoami', { token })
    expect(me.body).toMatchObject({ kind: 'member', role })
    return { token, id: me.body.member_id as string }
  }

  test('an admin member naming override_jti decides: 200, decided_by and the audit name the member, single use holds', async () => {
    const admin = await member('admin')
    const ov = await override('evt-person')
    expectProblem(
      await people.call('POST', '/overrides/evt-person/decide', { token: admin.token, json: { decision: 'approve' } }),
      422,
    )
    const res = await people.call('POST', '/overrides/evt-person/decide', {
      token: admin.token,
      json: { override_jti: ov.jti, decision: 'approve', reason: 'reviewed' },
    })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ event_id: 'evt-person', decision: 'approve', override_jti: ov.jti, reason: 'reviewed' })
    expect(verifyOverrideCosignature(cosignKey(), 'evt-person', 'approve', ov.jti, res.body.cosignature)).toBe(true)

    const list = await t.call('GET', '/overrides/evt-person', { token: a.admin_key })
    expect(list.body.decisions).toHaveLength(1)
    expect(list.body.decisions[0]).toMatchObject({ override_jti: ov.jti, decided_by: `member:${admin.id}` })
    const [audit] = await db.owner`select actor_type, actor_id, target_id from audit_log
      where org_id = ${a.org_id} and action = 'override.decide' and details->>'override_jti' = ${ov.jti}`
    expect(audit).toMatchObject({ actor_type: 'member', actor_id: admin.id, target_id: 'evt-person' })

    // Single use still holds: the member again, the token itself, and the admin key are all 409.
    for (const [token, json] of [
      [admin.token, { override_jti: ov.jti, decision: 'reject' }],
      [ov.token, { decision: 'reject' }],
      [a.admin_key, { override_jti: ov.jti, decision: 'reject' }],
    ] as const) {
      expectProblem(await people.call('POST', '/overrides/evt-person/decide', { token, json }), 409, 'override_used')
    }
  })

  test('an analyst member is 403 and the request stays pending; an admin of another org is 404', async () => {
    const analyst = await member('analyst')
    const ov = await override('evt-analyst')
    expectProblem(
      await people.call('POST', '/overrides/evt-analyst/decide', {
        token: analyst.token,
        json: { override_jti: ov.jti, decision: 'approve' },
      }),
      403,
    )
    const [row] = await db.owner`select used_at from auth.issued_tokens where jti = ${ov.jti}`
    expect(row!.used_at).toBeNull()
    const email = `admin-b-${crypto.randomUUID()}@example.com`
    expect((await people.call('POST', '/v1/team', { token: b.admin_key, json: { email, role: 'admin' } })).status).toBe(201)
    const adminB = signJwt(idp.claims(AUD, { sub: `sub-${email}`, email, email_verified: true }), { key: IDP_KEY })
    expectProblem(
      await people.call('POST', '/overrides/evt-analyst/decide', {
        token: adminB,
        json: { override_jti: ov.jti, decision: 'approve' },
      }),
      404,
    )
    expect(
      (await t.call('POST', '/overrides/evt-analyst/decide', { token: ov.token, json: { decision: 'reject' } })).status,
    ).toBe(200)
  })
})

describe('the record', () => {
  test('auth.override_decisions is tenant-scoped: org B sees none of org A’s rows', async () => {
    const ov = await override('evt-rls')
    expect((await t.call('POST', '/overrides/evt-rls/decide', { token: ov.token, json: { decision: 'approve' } })).status).toBe(
      200,
    )
    const seen = await withOrg(db.app, b.org_id, (tx) => tx`select 1 from auth.override_decisions`)
    expect(seen).toHaveLength(0)
    const mine = await withOrg(
      db.app,
      a.org_id,
      (tx) => tx`select cosignature from auth.override_decisions where override_jti = ${ov.jti}`,
    )
    expect(mine).toHaveLength(1)
    // The stored cosignature is the one answered; the token's hash is not stored here.
    expect(JSON.stringify(mine)).not.toContain(createHash('sha256').update(ov.token).digest('hex'))
  })
})

describe('pending approvals: GET /v1/overrides/pending (issue 12)', () => {
  /** A fresh org with a registered machine: the other tests' requests are in org A. */
  async function orgWithMachine(name: string) {
    const org = await createOrg(db.app, `${name} ${crypto.randomUUID().slice(0, 8)}`, 'cli')
    const reg = await t.call('POST', '/v1/machines/register', {
      token: org.deploy_token,
      json: { machine_id: crypto.randomUUID().replace(/-/g, ''), hostname: `${name}-laptop` },
    })
    expect(reg.status).toBe(201)
    return { org, machine: { id: reg.body.machine_id as string, token: reg.body.service_token as string } }
  }
  /** An event sent by the machine for approval, stored by the pipeline consumer. */
  async function storedEvent(token: string) {
    const event = v2Event({ arguments_json: '{"command":"git push origin main"}', decision: 'require_approval' })
    expect((await t.call('POST', '/v1/ingest', { token, json: { events: [event] } })).status).toBe(200)
    await drainOnce(db.app, 'pipeline', storeEvents)
    return event.event_id
  }
  const pending = async (token: string, query = '') => {
    const res = await t.call('GET', `/v1/overrides/pending${query}`, { token })
    expect(res.status).toBe(200)
    return res.body as { pending: Record<string, any>[]; next_cursor: string | null }
  }
  const jtis = (list: { pending: Record<string, any>[] }) => list.pending.map((p) => p.override_jti)

  test('a minted request is listed with its stored event, its machine and who asked; newest first', async () => {
    const { org, machine } = await orgWithMachine('pend')
    const agent = await agentOf(org)
    const eventId = await storedEvent(machine.token)
    const byAgent = await override(eventId, { reason: 'wants to push to main', allowed_decisions: ['approve'] }, agent.token)
    const byAdmin = await override('evt-not-sent-yet', {}, org.admin_key)
    const list = await pending(org.admin_key)
    expect(jtis(list)).toEqual([byAdmin.jti, byAgent.jti])
    expect(list.next_cursor).toBeNull()

    const [stored] = (await t.call('GET', `/v1/events?machine_id=${machine.id}`, { token: org.admin_key })).body.events
    const [minted] = await db.owner<{ issued_at: Date; expires_at: Date }[]>`
      select issued_at, expires_at from auth.issued_tokens where jti = ${byAgent.jti}`
    expect(list.pending[1]).toEqual({
      override_jti: byAgent.jti,
      event_id: eventId,
      allowed_decisions: ['approve'],
      reason: 'wants to push to main',
      requested_at: minted!.issued_at.toISOString(),
      expires_at: minted!.expires_at.toISOString(),
      requested_by: { kind: 'jwt', type: 'agent', id: agent.jti, name: null, agent_id: 'agent-1' },
      event: stored,
      machine: { id: machine.id, hostname: 'pend-laptop' },
    })
    const who = (await t.call('GET', '/v1/auth/whoami', { token: org.admin_key })).body
    expect(list.pending[0]).toMatchObject({
      event_id: 'evt-not-sent-yet',
      allowed_decisions: ['approve', 'reject'],
      reason: null,
      requested_by: { kind: 'opaque', type: 'api_key', id: who.token_id, name: expect.any(String), agent_id: null },
      event: null,
      machine: null,
    })
    // Never a secret: no token, no hash.
    expect(JSON.stringify(list)).not.toContain(byAgent.token.slice(12, 60))
  })

  test('used, expired and revoked requests (itself, the token that minted it, or one above that) are not listed', async () => {
    const { org } = await orgWithMachine('ended')
    const kept = await override('evt-kept', {}, org.admin_key)
    const decided = await override('evt-decided', {}, org.admin_key)
    expect(
      (await t.call('POST', '/overrides/evt-decided/decide', { token: decided.token, json: { decision: 'approve' } })).status,
    ).toBe(200)
    const revoked = await override('evt-revoked', {}, org.admin_key)
    expect((await t.call('DELETE', `/revocation/${revoked.jti}`, { token: org.admin_key })).status).toBe(200)
    const minter = await agentOf(org)
    const underMinter = await override('evt-minter', {}, minter.token)
    expect((await t.call('DELETE', `/revocation/${minter.jti}`, { token: org.admin_key })).status).toBe(200)
    // Revoking the app token two levels above (not cascading) ends the requests of its agents too.
    const app = await t.call('POST', '/tokens/app', { token: org.admin_key, json: { name: 'root', scopes: ['*'] } })
    const bearer = await t.call('POST', '/tokens/bearer', {
      token: org.admin_key,
      json: { app_token_hash: app.body.token_hash, environment: 'prod' },
    })
    const deep = await t.call('POST', '/tokens/agent', {
      token: org.admin_key,
      json: { bearer_jti: bearer.body.jti, agent_id: 'deep', rbac: RBAC },
    })
    const underApp = await override('evt-app', {}, deep.body.token)
    expect(jtis(await pending(org.admin_key))).toContain(underApp.jti)
    expect((await t.call('DELETE', `/revocation/${app.body.jti}`, { token: org.admin_key })).status).toBe(200)
    const short = await override('evt-short', { ttl_minutes: 1 / 60 }, org.admin_key)
    expect(jtis(await pending(org.admin_key))).toContain(short.jti)
    await Bun.sleep(1_100)
    const left = jtis(await pending(org.admin_key))
    expect(left).toEqual([kept.jti])
    expect(left).not.toContain(underMinter.jti)
  })

  test('pages newest first with the keyset cursor; a doctored cursor is a 400', async () => {
    const { org } = await orgWithMachine('pages')
    const minted: string[] = []
    for (let i = 0; i < 5; i++) minted.push((await override(`evt-page-${i}`, {}, org.admin_key)).jti)
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const page = await pending(org.admin_key, `?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      expect(page.pending.length).toBeLessThanOrEqual(2)
      seen.push(...jtis(page))
      cursor = page.next_cursor
    } while (cursor)
    expect(seen).toEqual(minted.reverse())
    const bad = await t.call('GET', '/v1/overrides/pending?cursor=nope', { token: org.admin_key })
    expectProblem(bad, 400)
    expectProblem(await t.call('GET', '/v1/overrides/pending?limit=0', { token: org.admin_key }), 400)
  })

  test("another org's requests are invisible: each org lists its own", async () => {
    const one = await orgWithMachine('iso-one')
    const two = await orgWithMachine('iso-two')
    const eventId = await storedEvent(one.machine.token)
    const mine = await override(eventId, { reason: 'one only' }, one.org.admin_key)
    const theirs = await override('evt-two', {}, two.org.admin_key)
    expect(jtis(await pending(one.org.admin_key))).toEqual([mine.jti])
    const seen = await pending(two.org.admin_key)
    expect(jtis(seen)).toEqual([theirs.jti])
    expect(JSON.stringify(seen)).not.toContain(eventId)
    expect(JSON.stringify(seen)).not.toContain(one.machine.id)
    // Under RLS as the app role, too: B's transaction sees no row of A's.
    const rows = await withOrg(db.app, two.org.org_id, (tx) => tx`select 1 from auth.issued_tokens where jti = ${mine.jti}`)
    expect(rows).toHaveLength(0)
  })

  test('read credentials list them (a viewer, a read-only app token, the admin key); machine credentials are 403', async () => {
    const { org, machine } = await orgWithMachine('access')
    const agent = await agentOf(org)
    const req = await override('evt-access', {}, org.admin_key)
    const idp = startIdp([IDP_KEY])
    try {
      const people = testApp(db, { OIDC_ISSUER: idp.issuer, OIDC_AUDIENCE: 'aud' })
      const email = `viewer-${crypto.randomUUID()}@example.com`
      expect((await people.call('POST', '/v1/team', { token: org.admin_key, json: { email, role: 'viewer' } })).status).toBe(201)
      const viewer = signJwt(idp.claims('aud', { sub: email, email, email_verified: true }), { key: IDP_KEY })
      const seen = await people.call('GET', '/v1/overrides/pending', { token: viewer })
      expect(seen.status).toBe(200)
      expect(seen.body.pending.map((p: { override_jti: string }) => p.override_jti)).toEqual([req.jti])
      // Seeing is not deciding: a viewer's role does not manage (admins and owners decide).
      expectProblem(
        await people.call('POST', '/overrides/evt-access/decide', {
          token: viewer,
          json: { override_jti: req.jti, decision: 'approve' },
        }),
        403,
      )
    } finally {
      idp.stop()
    }
    const reader = await t.call('POST', '/tokens/app', { token: org.admin_key, json: { name: 'wall', scopes: ['read'] } })
    expect(jtis(await pending(reader.body.token))).toEqual([req.jti])
    expect(jtis(await pending(org.admin_key))).toEqual([req.jti])
    for (const token of [org.deploy_token, machine.token, agent.token, req.token]) {
      expectProblem(await t.call('GET', '/v1/overrides/pending', { token }), 403, 'insufficient_permissions')
    }
    expectProblem(await t.call('GET', '/v1/overrides/pending'), 401)
  })
})
