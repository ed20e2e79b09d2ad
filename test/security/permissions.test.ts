/**
 * Every route declares the permission it needs, in one place (issue 10, src/http/permissions.ts),
 * and the registry enforces it. Walked from the route registry: a route added later is covered
 * without touching this file. Per permission, a credential that lacks it is refused (401 without
 * one, 403 with the wrong one) before the route reads anything, and one that holds it gets past
 * the guard (whatever the route then answers: 400 for no body, 404 for an unknown id…).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { PERMISSIONS, type Permission } from '../../src/http/permissions.ts'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
/** An app JWT holding only `read`: a dashboard's credential. */
let reader: string

beforeAll(async () => {
  ;({ db, t, a } = await twoOrgApp())
  const minted = await t.call('POST', '/tokens/app', {
    token: a.admin_key,
    json: { customer_id: a.org_id, name: 'dashboard', scopes: ['read'] },
  })
  expect(minted.status).toBe(201)
  reader = minted.body.token
}, HOOK_TIMEOUT_MS)
afterAll(() => db.drop(), HOOK_TIMEOUT_MS)

const routesWith = (permissions: Permission[]) =>
  t.routes.specs
    .filter((s) => permissions.includes(s.permission))
    .map((s) => ({
      what: `${s.method.toUpperCase()} ${s.path}`,
      method: s.method.toUpperCase(),
      url: s.path.replace(/:[a-z_]+/g, () => crypto.randomUUID()),
    }))

const statusOf = async (r: { method: string; url: string }, token?: string) => (await t.call(r.method, r.url, { token })).status

describe('declared', () => {
  test('every route declares one permission of the closed set, and the OpenAPI document says which', async () => {
    const doc = (await t.call('GET', '/openapi.json')).body as {
      paths: Record<string, Record<string, { 'x-permission'?: string; security?: unknown[] }>>
    }
    expect(t.routes.specs.length).toBeGreaterThan(50)
    for (const spec of t.routes.specs) {
      const what = `${spec.method.toUpperCase()} ${spec.path}`
      expect({ what, known: PERMISSIONS.includes(spec.permission) }).toEqual({ what, known: true })
      const op = doc.paths[spec.path.replace(/:([a-z_]+)/g, '{$1}')]![spec.method]!
      expect({ what, permission: op['x-permission'] }).toEqual({ what, permission: spec.permission })
      expect({ what, secured: op.security!.length > 0 }).toEqual({ what, secured: spec.permission !== 'public' })
    }
    // Each permission but `members` (people, next) guards at least one route.
    for (const p of PERMISSIONS) expect({ p, used: t.routes.specs.some((s) => s.permission === p) }).toEqual({ p, used: true })
  })
})

describe('enforced', () => {
  test('without a credential: 401 on every route but the public ones', async () => {
    for (const r of routesWith(PERMISSIONS.filter((p) => p !== 'public'))) {
      expect({ what: r.what, status: await statusOf(r) }).toEqual({ what: r.what, status: 401 })
    }
    for (const r of routesWith(['public'])) expect(await statusOf(r)).not.toBe(401)
  })

  test('a machine credential (ingest only) passes the ingest guard and is refused read, triage and manage', async () => {
    for (const r of routesWith(['ingest'])) {
      expect({ what: r.what, refused: [401, 403].includes(await statusOf(r, a.deploy_token)) }).toEqual({
        what: r.what,
        refused: false,
      })
    }
    for (const r of routesWith(['read', 'triage', 'manage'])) {
      expect({ what: r.what, status: await statusOf(r, a.deploy_token) }).toEqual({ what: r.what, status: 403 })
    }
  })

  test('a reading credential passes the read guard and is refused ingest, triage and manage', async () => {
    for (const r of routesWith(['read'])) {
      expect({ what: r.what, refused: [401, 403].includes(await statusOf(r, reader)) }).toEqual({ what: r.what, refused: false })
    }
    for (const r of routesWith(['ingest', 'triage', 'manage'])) {
      expect({ what: r.what, status: await statusOf(r, reader) }).toEqual({ what: r.what, status: 403 })
    }
  })

  test('the admin key passes every guard', async () => {
    for (const r of routesWith(['ingest', 'read', 'triage', 'manage', 'authenticated'])) {
      expect({ what: r.what, refused: [401, 403].includes(await statusOf(r, a.admin_key)) }).toEqual({
        what: r.what,
        refused: false,
      })
    }
  })
})
