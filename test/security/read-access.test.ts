/**
 * Who may read (issue 9): reading the org's events, sessions, agents, machines, alerts and ingest
 * statistics needs the `read` scope, held by credentials meant for reading (the admin key, an app
 * JWT or a personal token granted `read`), never by a machine's (deploy, enrollment and machine
 * service tokens, and the data-plane JWTs: bearer, agent, sub-agent, session, override).
 *
 * The routes are taken from the route registry, so a read route added later is covered without
 * touching this file: every GET under /v1 except a machine's own (`/v1/machines/{id}/policies`)
 * and `whoami` (the caller about itself) must refuse every machine credential with 403. Also: the
 * migration that took `read` away from tokens minted before the change (sql/0021_machine_read.sql).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { randomBytes } from 'node:crypto'
import { hashToken } from '../../src/auth/opaque/format.ts'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let machine: string
/** Credentials of org A, by who holds them. */
const machineCreds: Record<string, string> = {}
const readerCreds: Record<string, string> = {}

/** The read routes issue 9 names (and issue 12's): all must be mounted (and so checked below). */
const ISSUE_9_READ_ROUTES = [
  '/v1/events',
  '/v1/events/:id',
  '/v1/events/stats',
  '/v1/events/:id/chain',
  '/v1/sessions',
  '/v1/sessions/:id',
  '/v1/sessions/:id/events',
  '/v1/sessions/:id/children',
  '/v1/sessions/:id/tree',
  '/v1/sessions/:id/timeline',
  '/v1/agents',
  '/v1/agents/:id',
  '/v1/machines',
  '/v1/machines/:id',
  '/v1/alerts',
  '/v1/alerts/:id',
  '/v1/ingest/stats',
  // The console's live stream (issue 12): the same data, pushed.
  '/v1/live',
  // Approval requests agents wait on (issue 12): seeing them is reading; deciding is not.
  '/v1/overrides/pending',
]
/**
 * A machine's own reads: its policies and what the fleet stream pushes it, itself, and the local
 * proxy config the CLI pulls (SPEC §7.2).
 */
const MACHINE_OWN = new Set([
  '/v1/machines/:id/policies',
  '/v1/machines/:id/stream',
  '/v1/machines/:id/updates',
  '/v1/auth/whoami',
  '/v1/policies/active',
])
/** GET routes for managing the org (admin scope): refused to read credentials too. */
const MANAGEMENT = [
  /^\/v1\/deploy-tokens/,
  /^\/v1\/tokens/,
  /^\/v1\/alert-rules/,
  /^\/v1\/dead-letters/,
  /^\/v1\/webhooks/,
  /^\/v1\/org(\/|$)/,
  /^\/v1\/audit-log/,
]

const readRoutesOf = (paths: string[]) => paths.filter((p) => !MANAGEMENT.some((r) => r.test(p)))

/** A token row inserted as the owner, as an older release (or another tool) would have left it. */
async function insertToken(org: string, kind: string, prefix: string, scopes: string[], machineId: string | null = null) {
  const raw = prefix + randomBytes(32).toString('hex')
  const [row] = await db.owner<{ id: string }[]>`
    insert into api_tokens (org_id, kind, name, token_prefix, token_hash, scopes, machine_id)
    values (${org}, ${kind}, ${`legacy ${kind}`}, ${raw.slice(0, prefix.length + 4)}, ${hashToken(raw)}, ${scopes}, ${machineId})
    returning id`
  return { raw, id: row!.id }
}

async function mint(path: string, json: Record<string, unknown>) {
  const res = await t.call('POST', path, { token: a.admin_key, json: { customer_id: a.org_id, ...json } })
  expect(res.status).toBe(201)
  return res.body as { token: string; jti: string }
}

beforeAll(async () => {
  ;({ db, t, a } = await twoOrgApp())
  const reg = await t.call('POST', '/v1/machines/register', {
    token: a.deploy_token,
    json: { machine_id: 'e'.repeat(32), hostname: 'erin-laptop' },
  })
  machine = reg.body.machine_id
  machineCreds['deploy token'] = a.deploy_token
  machineCreds['machine service token'] = reg.body.service_token
  machineCreds['enrollment token'] = (await insertToken(a.org_id, 'enrollment', 'qt_dk_', ['ingest'])).raw

  const app = await mint('/tokens/app', { name: 'root', scopes: ['*'] })
  const appHash = hashToken(app.token).toString('hex')
  const bearer = await mint('/tokens/bearer', { app_token_hash: appHash, environment: 'production' })
  const rbac = {
    allowed_actions: ['*'],
    denied_actions: [],
    allowed_resources: ['*'],
    denied_resources: [],
    max_sensitivity_level: 3,
  }
  const agent = await mint('/tokens/agent', { bearer_jti: bearer.jti, agent_id: 'agent-1', agent_name: 'Agent', rbac })
  const sub = await mint('/tokens/subagent', { parent_agent_jti: agent.jti, agent_id: 'sub-1' })
  const session = await mint('/tokens/session', { parent_jti: sub.jti, parent_type: 'subagent', session_id: 's-1' })
  const override = await mint('/tokens/override', { event_id: 'evt-1', reason: 'flagged' })
  machineCreds['bearer JWT'] = bearer.token
  machineCreds['agent JWT'] = agent.token
  machineCreds['subagent JWT'] = sub.token
  machineCreds['session JWT'] = session.token
  machineCreds['override JWT'] = override.token

  readerCreds['admin key'] = a.admin_key
  readerCreds['app JWT with scopes [read]'] = (await mint('/tokens/app', { name: 'dashboard', scopes: ['read'] })).token
  readerCreds['personal token with scope read'] = (await insertToken(a.org_id, 'personal', 'qt_pk_', ['read'])).raw
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

/** Every registered GET route under /v1 a machine must not call, path parameters filled in. */
function guardedGets(): { route: string; url: string }[] {
  const out: { route: string; url: string }[] = []
  for (const spec of t.routes.specs) {
    if (spec.method !== 'get' || !spec.path.startsWith('/v1/') || MACHINE_OWN.has(spec.path)) continue
    out.push({ route: spec.path, url: spec.path.replace(/:[a-z_]+/g, () => crypto.randomUUID()) })
  }
  return out
}

function expectForbidden(res: Awaited<ReturnType<typeof t.call>>, what: string) {
  expect({ what, status: res.status }).toEqual({ what, status: 403 })
  expect(res.headers.get('content-type')).toBe('application/problem+json')
  expect(res.body.code).toBe('insufficient_permissions')
}

describe('read routes', () => {
  test('every read route issue 9 names is registered (and so checked below)', () => {
    const gets = guardedGets().map((r) => r.route)
    for (const route of ISSUE_9_READ_ROUTES) expect(gets).toContain(route)
    expect(readRoutesOf(gets).length).toBeGreaterThanOrEqual(ISSUE_9_READ_ROUTES.length)
  })

  test("a machine's credentials are refused every GET under /v1 but their own (403 problem+json)", async () => {
    const routes = guardedGets()
    for (const [who, token] of Object.entries(machineCreds)) {
      for (const { route, url } of routes) expectForbidden(await t.call('GET', url, { token }), `${who} GET ${route}`)
    }
  })

  test('read credentials may call every read route: never 401, 403 or 5xx (a random id is a 404)', async () => {
    const routes = guardedGets().filter((r) => readRoutesOf([r.route]).length === 1)
    for (const [who, token] of Object.entries(readerCreds)) {
      for (const { route, url } of routes) {
        const res = await t.call('GET', url, { token })
        const status = res.status === 401 || res.status === 403 || res.status >= 500 ? res.status : 'ok'
        expect({ who, route, status }).toEqual({ who, route, status: 'ok' })
      }
    }
  })

  test('management routes stay with management credentials: the admin key yes, a read credential no', async () => {
    const routes = guardedGets().filter((r) => readRoutesOf([r.route]).length === 0)
    expect(routes.length).toBeGreaterThan(0)
    for (const { route, url } of routes) {
      const admin = await t.call('GET', url, { token: a.admin_key })
      expect({ route, status: admin.status === 401 || admin.status === 403 ? admin.status : 'ok' }).toEqual({
        route,
        status: 'ok',
      })
      expectForbidden(
        await t.call('GET', url, { token: readerCreds['app JWT with scopes [read]']! }),
        `read app JWT GET ${route}`,
      )
    }
  })

  test('no credential → 401 on every read route', async () => {
    for (const { route, url } of guardedGets())
      expect({ route, status: (await t.call('GET', url)).status }).toEqual({ route, status: 401 })
  })
})

describe('a machine keeps what it needs', () => {
  test('deploy and service tokens still ingest, register, heartbeat and fetch their own policies', async () => {
    for (const token of [machineCreds['deploy token']!, machineCreds['machine service token']!]) {
      expect((await t.call('POST', '/v1/ingest', { token, json: { events: [v2Event()] } })).status).toBe(200)
      expect((await t.call('POST', `/v1/machines/${machine}/heartbeat`, { token, json: {} })).status).toBe(200)
      expect((await t.call('GET', `/v1/machines/${machine}/policies`, { token })).status).toBe(200)
      expect((await t.call('GET', '/v1/auth/whoami', { token })).body.scopes).toEqual(['ingest'])
    }
    const enrolled = await t.call('POST', '/v1/machines/register', {
      token: machineCreds['enrollment token']!,
      json: { machine_id: 'f'.repeat(32) },
    })
    expect(enrolled.status).toBe(201)
    const [row] = await db.owner<{ scopes: string[] }[]>`
      select scopes from api_tokens where machine_id = ${enrolled.body.machine_id} and kind = 'service'`
    expect(row!.scopes).toEqual(['ingest'])
  })
})

describe('tokens minted before the change lose read (sql/0021_machine_read.sql)', () => {
  test("deploy, enrollment and machine-bound service tokens lose read; people's and unbound tokens keep it", async () => {
    const old = {
      deploy: await insertToken(a.org_id, 'install', 'qt_deploy_', ['ingest', 'read']),
      enrollment: await insertToken(a.org_id, 'enrollment', 'qt_dk_', ['ingest', 'read']),
      bound: await insertToken(a.org_id, 'service', 'qt_sk_', ['ingest', 'read'], machine),
      unbound: await insertToken(a.org_id, 'service', 'qt_sk_', ['ingest', 'read']),
      personal: await insertToken(a.org_id, 'personal', 'qt_pk_', ['read']),
    }
    const migration = await Bun.file(new URL('../../sql/0021_machine_read.sql', import.meta.url)).text()
    await db.owner.begin((tx) => tx.unsafe(migration))
    const rows = await db.owner<{ id: string; scopes: string[] }[]>`
      select id, scopes from api_tokens where id = any(${Object.values(old).map((o) => o.id)}::uuid[])`
    const scopes = Object.fromEntries(rows.map((r) => [r.id, r.scopes]))
    expect(Object.fromEntries(Object.entries(old).map(([k, v]) => [k, scopes[v.id]]))).toEqual({
      deploy: ['ingest'],
      enrollment: ['ingest'],
      bound: ['ingest'],
      unbound: ['ingest', 'read'],
      personal: ['read'],
    })
    for (const k of ['deploy', 'enrollment', 'bound'] as const) {
      expectForbidden(await t.call('GET', '/v1/alerts', { token: old[k].raw }), `pre-change ${k} token`)
    }
    for (const k of ['unbound', 'personal'] as const) {
      expect((await t.call('GET', '/v1/alerts', { token: old[k].raw })).status).toBe(200)
    }
  })
})
