/**
 * The human override flow (SPEC §16.7) on a real Postgres: decide with the override token as the
 * bearer and with a management credential naming it; single use (also under concurrency); event
 * binding, allowed decisions, revoked and expired tokens, other orgs; the cosignature; the durable
 * record, the listing, and the audit trail (never the token). Also SecretBox.derive, the source of
 * the cosignature key.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { verifyOverrideCosignature } from '../../src/auth/override-cosign.ts'
import { SecretBox } from '../../src/auth/secret-box.ts'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { withOrg } from '../../src/infra/db.ts'
import { testApp, testSecrets, twoOrgApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg
let agentA: { token: string; jti: string }

const RBAC = { allowed_actions: ['data:read:*'], denied_actions: [], max_sensitivity_level: 3 }

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
