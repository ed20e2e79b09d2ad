/**
 * Issue 14, item 4: text Postgres cannot store (a NUL, an unpaired surrogate, a date it refuses)
 * answered 500 on every route outside ingest. This walks the route registry itself: for every
 * route, every string its params, query or body schema declares (through objects, arrays, unions
 * and the recursive alert condition) is sent, in an otherwise valid request, as "a\u0000b", as a
 * lone surrogate, and for date-time fields as dates Postgres refuses or that do not exist. Each
 * must be a 400/422 problem naming that field by its JSON Pointer. The same request without the
 * bad value must succeed (2xx), so no case passes because the request was wrong for another reason.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Kind, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { withOrg } from '../../src/infra/db.ts'
import { DATE_TIME_MESSAGE, type RouteSpec } from '../../src/http/openapi.ts'
import { testApp } from '../helpers/app.ts'
import { v2Event } from '../helpers/events.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'

type Spec = RouteSpec<TSchema | undefined, TSchema | undefined, TSchema | undefined>
type Where = 'params' | 'query' | 'body'

interface Example {
  token?: string
  params?: Record<string, string>
  query?: Record<string, string>
  body?: unknown
}

interface Field {
  where: Where
  pointer: string
  dateTime: boolean
}

let db: TestDatabase
let t: ReturnType<typeof testApp>
let org: CreatedOrg

const NUL = 'a\u0000b'
const LONE = 'a\ud800b'
const BAD_DATES = ['0000-01-01T00:00:00Z', '2026-02-31T00:00:00Z', '1969-06-01T00:00:00Z']
const soon = () => new Date(Date.now() + 86_400_000).toISOString()
const now = () => new Date().toISOString()

beforeAll(async () => {
  db = await testDatabase()
  t = testApp(db)
  org = await createOrg(db.app, 'text fields', 'cli')
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

/** Every string position a schema declares, as a JSON Pointer into an instance (arrays at index 0). */
function stringFields(schema: TSchema | undefined, where: Where): Field[] {
  const out: Field[] = []
  const refs = new Map<string, TSchema>()
  const expanded = new Map<string, number>()
  const visit = (s: TSchema, pointer: string) => {
    if (typeof s.$id === 'string') refs.set(s.$id, s)
    switch (s[Kind]) {
      case 'String':
        out.push({ where, pointer, dateTime: s.format === 'date-time' })
        return
      case 'Object':
        for (const [k, child] of Object.entries((s.properties ?? {}) as Record<string, TSchema>)) visit(child, `${pointer}/${k}`)
        return
      case 'Array':
        return visit(s.items as TSchema, `${pointer}/0`)
      case 'Record':
        return visit(Object.values(s.patternProperties as Record<string, TSchema>)[0]!, `${pointer}/key`)
      case 'Union':
        for (const v of s.anyOf as TSchema[]) visit(v, pointer)
        return
      case 'This':
      case 'Ref': {
        // A recursive schema is followed one level deep: nested nodes are checked like the root.
        const n = expanded.get(s.$ref as string) ?? 0
        if (n >= 1) return
        expanded.set(s.$ref as string, n + 1)
        visit(refs.get(s.$ref as string)!, pointer)
        expanded.set(s.$ref as string, n)
        return
      }
      default:
    }
  }
  if (schema) visit(schema, '')
  // A union of strings lists the same position more than once.
  return out.filter((f, i) => out.findIndex((g) => g.pointer === f.pointer) === i)
}

/** Sets `value` at `pointer`, creating objects and arrays on the way. */
function setAt(root: unknown, pointer: string, value: unknown): unknown {
  const parts = pointer.split('/').slice(1)
  const copy = structuredClone(root ?? {}) as Record<string, unknown>
  let node: Record<string, unknown> = copy
  parts.forEach((part, i) => {
    if (i === parts.length - 1) {
      node[part] = value
      return
    }
    const wantArray = /^\d+$/.test(parts[i + 1]!)
    const next = node[part]
    if (wantArray ? !Array.isArray(next) : next === null || typeof next !== 'object' || Array.isArray(next))
      node[part] = wantArray ? [] : {}
    node = node[part] as Record<string, unknown>
  })
  return copy
}

async function send(spec: Spec, ex: Example, raw: { params?: Record<string, string>; query?: string } = {}) {
  const path = spec.path.replace(
    /:([A-Za-z_]+)/g,
    (_m, name: string) => raw.params?.[name] ?? encodeURIComponent(ex.params?.[name] ?? ''),
  )
  const query = raw.query ?? new URLSearchParams(ex.query ?? {}).toString()
  const withBody = spec.body !== undefined || (spec.rawBody !== undefined && ex.body !== undefined)
  return t.call(spec.method.toUpperCase(), query ? `${path}?${query}` : path, {
    token: ex.token,
    ...(withBody ? { json: ex.body ?? {} } : {}),
  })
}

// ---- fixtures: each call makes a fresh resource, so a baseline that consumes one harms no other route.

const admin = () => org.admin_key
const deploy = () => org.deploy_token

async function call(method: string, path: string, token: string, json?: unknown) {
  const res = await t.call(method, path, { token, ...(json === undefined ? {} : { json }) })
  if (res.status >= 300) throw new Error(`fixture ${method} ${path}: ${res.status} ${res.text}`)
  return res.body
}

const RBAC = { allowed_actions: ['data:read:*'] }
let chain: { app: any; bearer: any; agent: any } | null = null
async function tokens() {
  if (chain) return chain
  const app = await call('POST', '/tokens/app', admin(), { name: 'root' })
  const bearer = await call('POST', '/tokens/bearer', app.token, { environment: 'prod' })
  const agent = await call('POST', '/tokens/agent', bearer.token, { agent_id: 'agent-1', rbac: RBAC })
  chain = { app, bearer, agent }
  return chain
}
let machine: string | null = null
async function machineId() {
  machine ??= (await call('POST', '/v1/machines/register', deploy(), { machine_id: 'text-fields-host' })).machine_id as string
  return machine
}
const POLICY = {
  name: 'p',
  description: 'block rm',
  rules: [{ tool: 'Bash', agent: '*', action: 'block', conditions: ['rm -rf'] }],
  scope: { tags: ['laptops'] },
}
const newSignature = async () =>
  (
    await call('POST', '/v1/threat-signatures', admin(), {
      name: 's',
      kind: 'domain',
      value: `${crypto.randomUUID().slice(0, 8)}.example`,
      action: 'block',
      severity: 'high',
    })
  ).id as string
const newPolicy = async () => (await call('POST', '/v1/policies', admin(), POLICY)).id as string
/** A machine of its own, for the examples that disable one. */
const newMachine = async () =>
  (await call('POST', '/v1/machines/register', deploy(), { machine_id: `text-fields-${crypto.randomUUID()}` }))
    .machine_id as string
const condition = { field: 'tool_name', op: 'eq', value: 'Bash' }
const newRule = async () =>
  (await call('POST', '/v1/alert-rules', admin(), { name: 'r', severity: 'high', condition })).id as string
const newWebhook = async () => (await call('POST', '/v1/webhooks', admin(), { url: 'https://hooks.example.com/x' })).id as string
async function newDelivery() {
  const webhook = await newWebhook()
  const d = await call('POST', `/v1/webhooks/${webhook}/test`, admin())
  // A redelivery needs a finished delivery: this one is marked dead, as after its last attempt.
  await db.owner`update webhook_deliveries set status = 'dead' where id = ${d.delivery_id}`
  return { id: webhook, delivery_id: d.delivery_id as string }
}
async function newAlert() {
  const [row] = await withOrg(
    db.app,
    org.org_id,
    (tx) => tx<{ id: string }[]>`
    insert into alerts (org_id, rule_key, event_key, severity, title)
    values (app_current_org(), 'builtin:fixture', ${crypto.randomUUID()}, 'high', 't') returning id`,
  )
  return row!.id
}
/** An action, its session and its agent, inserted as the pipeline and sessions consumer would. */
async function newEvent() {
  const key = `tf-${crypto.randomUUID()}`
  return withOrg(db.app, org.org_id, async (tx) => {
    const [a] = await tx<{ id: string }[]>`
      insert into actions (org_id, event_key, event_id, occurred_at, session_key, agent_key, action_type)
      values (app_current_org(), ${key}, ${key}, now(), ${key}, ${key}, 'PROCESS_EXEC') returning id`
    const [g] = await tx<{ id: string }[]>`insert into agents (org_id, agent_key) values (app_current_org(), ${key}) returning id`
    await tx`insert into sessions (org_id, session_key, agent_id) values (app_current_org(), ${key}, ${g!.id})`
    return { action: a!.id, session: key, agent: key }
  })
}
const newOverride = async (eventId: string) =>
  (await call('POST', '/tokens/override', admin(), { event_id: eventId, allowed_decisions: ['approve'] })).jti as string
/** A dead letter as the alerts consumer sets one aside (sql/0015_dead_letters.sql). */
async function newDeadLetter() {
  const payload = { kind: 'lifecycle', receivedAt: now(), lifecycle: { session_id: 's-dl', state: 'active', timestamp: now() } }
  const [row] = await withOrg(
    db.app,
    org.org_id,
    (tx) => tx<{ id: string }[]>`
    insert into bus_dead_letters (org_id, consumer, source, message_id, kind, payload, attempts, error_class, error_message,
                                  first_failed_at, last_failed_at)
    values (app_current_org(), 'alerts', 'local', ${crypto.randomUUID()}, 'lifecycle', ${tx.json(payload)}, 5, 'Error', 'fixture',
            now(), now()) returning id`,
  )
  return row!.id
}
const activeKid = async () => (await call('POST', '/keys/signing', admin(), {})).kid as string
const newJti = async () => (await call('POST', '/tokens/app', admin(), { name: 'to revoke' })).jti as string

/** A valid request per operation (aliases share their operation's example). */
const EXAMPLES: Record<string, () => Promise<Example>> = {
  mintAppToken: async () => ({ token: admin(), body: { customer_id: org.org_id, name: 'n', scopes: ['*'] } }),
  mintBearerToken: async () => ({ token: (await tokens()).app.token, body: { customer_id: org.org_id, environment: 'prod' } }),
  mintAgentToken: async () => ({
    token: (await tokens()).bearer.token,
    body: { customer_id: org.org_id, agent_id: 'a', agent_name: 'A', rbac: RBAC },
  }),
  mintSubagentToken: async () => ({
    token: (await tokens()).agent.token,
    body: { customer_id: org.org_id, agent_id: 'c', agent_name: 'C' },
  }),
  mintSessionToken: async () => ({ token: (await tokens()).agent.token, body: { customer_id: org.org_id, session_id: 's' } }),
  mintOverrideToken: async () => ({
    token: admin(),
    body: { customer_id: org.org_id, event_id: 'evt', allowed_decisions: ['approve'], reason: 'why' },
  }),
  ensureSigningKey: async () => ({ token: admin(), body: { customer_id: org.org_id } }),
  rotateSigningKey: async () => ({ token: admin(), params: { kid: await activeKid() }, body: { customer_id: org.org_id } }),
  publicSigningKeys: async () => ({ params: { org_id: org.org_id } }),
  revokeToken: async () => ({
    token: admin(),
    params: { jti: await newJti() },
    body: { token_type: 'app', customer_id: org.org_id, reason: 'r' },
  }),
  revokeTokenClient: async () => ({
    token: admin(),
    params: { jti: await newJti() },
    body: { token_type: 'app', customer_id: org.org_id, reason: 'r' },
  }),
  revokeTokenCascade: async () => ({
    token: admin(),
    params: { jti: await newJti() },
    body: { token_type: 'app', customer_id: org.org_id, reason: 'r' },
  }),
  revokeTokenCascadeClient: async () => ({
    token: admin(),
    params: { jti: await newJti() },
    body: { token_type: 'app', customer_id: org.org_id, reason: 'r' },
  }),
  whoami: async () => ({ token: admin() }),
  checkRbac: async () => ({ token: admin(), body: { action: 'data:read:x', resource: 'repo:x' } }),
  rebuildRevocationFilter: async () => ({ token: admin() }),
  decideOverride: async () => ({
    token: admin(),
    params: { event_id: 'evt-decide' },
    body: { override_jti: await newOverride('evt-decide'), customer_id: org.org_id, decision: 'approve', reason: 'ok' },
  }),
  listOverrideDecisions: async () => ({ token: admin(), params: { event_id: 'evt-decide' } }),
  listPendingOverrides: async () => {
    await newOverride('evt-pending')
    return { token: admin(), query: { limit: '10' } }
  },
  createDeployToken: async () => ({ token: admin(), body: { name: 'd', expires_at: soon() } }),
  listDeployTokens: async () => ({ token: admin() }),
  revokeDeployToken: async () => ({
    token: admin(),
    params: { id: (await call('POST', '/v1/deploy-tokens', admin(), { name: 'x' })).id },
  }),
  createApiToken: async () => ({ token: admin(), body: { kind: 'service', name: 'ci', scopes: ['read'], expires_at: soon() } }),
  listApiTokens: async () => ({ token: admin(), query: { kind: 'service', active: 'true' } }),
  revokeApiToken: async () => ({
    token: admin(),
    params: { id: (await call('POST', '/v1/tokens', admin(), { kind: 'service', name: 'x', scopes: ['read'] })).id },
  }),
  rotateApiToken: async () => ({
    token: admin(),
    params: { id: (await call('POST', '/v1/tokens', admin(), { kind: 'service', name: 'x', scopes: ['read'] })).id },
    body: { overlap_seconds: 60 },
  }),
  updateMachine: async () => ({
    token: admin(),
    params: { id: await newMachine() },
    body: { status: 'disabled', tags: ['laptops'] },
  }),
  createPolicy: async () => ({ token: admin(), body: POLICY }),
  simulatePolicy: async () => ({ token: admin(), body: { policy: POLICY, days: 1, samples: 5 } }),
  backfillAlertRule: async () => ({ token: admin(), params: { id: await newRule() }, body: { days: 1 } }),
  backfillThreatSignature: async () => ({ token: admin(), params: { id: await newSignature() }, body: { days: 1 } }),
  listPolicies: async () => ({ token: admin(), query: { enabled: 'true' } }),
  getPolicy: async () => ({ token: admin(), params: { id: await newPolicy() } }),
  updatePolicy: async () => ({
    token: admin(),
    params: { id: await newPolicy() },
    body: { description: 'd', rules: POLICY.rules },
  }),
  deletePolicy: async () => ({ token: admin(), params: { id: await newPolicy() } }),
  listPolicyVersions: async () => ({ token: admin(), params: { id: await newPolicy() } }),
  daemonLatestVersion: async () => ({ token: admin() }),
  createThreatSignature: async () => ({
    token: admin(),
    body: {
      name: 's',
      kind: 'domain',
      value: `${crypto.randomUUID().slice(0, 8)}.example`,
      action: 'block',
      severity: 'high',
      description: 'd',
      expires_at: soon(),
    },
  }),
  listThreatSignatures: async () => ({ token: admin(), query: { status: 'active', kind: 'domain' } }),
  getThreatSignature: async () => ({ token: admin(), params: { id: await newSignature() } }),
  updateThreatSignature: async () => ({
    token: admin(),
    params: { id: await newSignature() },
    body: { status: 'resolved', name: 'n', description: 'd', expires_at: soon() },
  }),
  syncAuditEntries: async () => ({ token: deploy(), body: { entries: [] } }),
  listSyncedAuditEntries: async () => ({ token: admin(), query: { chain_verified: 'true' } }),
  getActivePolicyConfig: async () => {
    await call('PUT', '/v1/policies/active', admin(), { name: 'p', config_json: { log_level: 'info' } })
    return { token: deploy() }
  },
  putActivePolicyConfig: async () => ({ token: admin(), body: { name: 'p', config_json: { log_level: 'info' } } }),
  deleteMachine: async () => ({ token: admin(), params: { id: await newMachine() } }),
  ingest: async () => ({ token: deploy(), body: { events: [v2Event()] } }),
  ingestEvents: async () => ({ token: deploy(), body: { events: [v2Event()] } }),
  ingestSessionLifecycle: async () => ({
    token: deploy(),
    body: {
      session_id: 's-1',
      state: 'active',
      timestamp: now(),
      session_name: 'n',
      model: 'm',
      signing_id: 'k',
      platform: 'p',
      parent_id: 's-0',
    },
  }),
  registerMachine: async () => ({
    token: deploy(),
    body: { machine_id: 'm-1', hostname: 'h', os: 'linux', arch: 'amd64', agent_version: '1.0' },
  }),
  machineHeartbeat: async () => ({ token: deploy(), params: { id: await machineId() }, body: { agent_version: '1.0' } }),
  machinePolicies: async () => ({ token: deploy(), params: { id: await machineId() } }),
  machineStream: async () => ({ token: deploy(), params: { id: await machineId() }, query: { last_event_id: '0' } }),
  machineUpdates: async () => ({ token: deploy(), params: { id: await machineId() }, query: { after: '0' } }),
  machineEvents: async () => ({
    token: deploy(),
    params: { id: await machineId() },
    body: {
      events: [{ event_id: crypto.randomUUID(), action: 'tool:Read', agent: 'claude', timestamp: now(), metadata: { k: 'v' } }],
    },
  }),
  machineAgents: async () => ({
    token: deploy(),
    params: { id: await machineId() },
    body: { agents: [{ platform: 'claude-code', pid: 1, state: 'running', binary_path: '/bin/claude', started_at: now() }] },
  }),
  machineGraphs: async () => ({
    token: deploy(),
    params: { id: await machineId() },
    body: {
      graphs: [
        { id: 'g-1', root_agent_id: 'r', root_agent_name: 'root', status: 'running', started_at: now(), completed_at: now() },
      ],
    },
  }),
  createAlertRule: async () => ({ token: admin(), body: { name: 'r', description: 'd', severity: 'high', condition } }),
  listAlertRules: async () => ({ token: admin() }),
  getAlertRule: async () => ({ token: admin(), params: { id: await newRule() } }),
  updateAlertRule: async () => ({
    token: admin(),
    params: { id: await newRule() },
    body: { name: 'r2', description: 'd2', condition },
  }),
  deleteAlertRule: async () => ({ token: admin(), params: { id: await newRule() } }),
  listAlerts: async () => ({ token: admin() }),
  getAlert: async () => ({ token: admin(), params: { id: await newAlert() } }),
  listEvents: async () => ({ token: admin() }),
  getEventStats: async () => ({ token: admin() }),
  getEvent: async () => ({ token: admin(), params: { id: (await newEvent()).action } }),
  getEventChain: async () => ({ token: admin(), params: { id: (await newEvent()).action } }),
  listSessions: async () => ({ token: admin() }),
  getSession: async () => ({ token: admin(), params: { id: (await newEvent()).session } }),
  listSessionEvents: async () => ({ token: admin(), params: { id: (await newEvent()).session } }),
  listSessionChildren: async () => ({ token: admin(), params: { id: (await newEvent()).session } }),
  getSessionTree: async () => ({ token: admin(), params: { id: (await newEvent()).session } }),
  getSessionTimeline: async () => ({ token: admin(), params: { id: (await newEvent()).session } }),
  listAgents: async () => ({ token: admin() }),
  getAgent: async () => ({ token: admin(), params: { id: (await newEvent()).agent } }),
  listMachines: async () => ({ token: admin() }),
  liveStream: async () => ({ token: admin(), query: { topics: 'events,alerts' } }),
  getMachine: async () => ({ token: admin(), params: { id: await machineId() } }),
  getIngestStats: async () => ({ token: admin() }),
  getOrg: async () => ({ token: admin() }),
  listTeam: async () => ({ token: admin() }),
  listAuditLog: async () => ({ token: admin(), query: { action: 'member.*', since: '2026-01-01T00:00:00Z' } }),
  inviteMember: async () => ({ token: admin(), body: { email: `${crypto.randomUUID()}@example.com`, role: 'viewer' } }),
  setMemberRole: async () => ({
    token: admin(),
    params: { id: (await call('POST', '/v1/team', admin(), { email: `${crypto.randomUUID()}@example.com`, role: 'viewer' })).id },
    body: { role: 'analyst' },
  }),
  removeMember: async () => ({
    token: admin(),
    params: { id: (await call('POST', '/v1/team', admin(), { email: `${crypto.randomUUID()}@example.com`, role: 'viewer' })).id },
  }),
  updateOrg: async () => ({ token: admin(), body: { retention_days: 90, proxy_domains: ['api.example.com'] } }),
  updateAlert: async () => ({ token: admin(), params: { id: await newAlert() }, body: { status: 'acknowledged' } }),
  createWebhook: async () => ({ token: admin(), body: { url: 'https://hooks.example.com/a', description: 'd' } }),
  registerWebhook: async () => ({
    token: admin(),
    body: { customer_id: org.org_id, endpoint_url: 'https://hooks.example.com/b' },
  }),
  listWebhooks: async () => ({ token: admin() }),
  getWebhook: async () => ({ token: admin(), params: { id: await newWebhook() } }),
  updateWebhook: async () => ({
    token: admin(),
    params: { id: await newWebhook() },
    body: { url: 'https://hooks.example.com/c', description: 'd' },
  }),
  deleteWebhook: async () => ({ token: admin(), params: { id: await newWebhook() } }),
  rotateWebhookSecret: async () => ({ token: admin(), params: { id: await newWebhook() }, body: {} }),
  listWebhookDeliveries: async () => ({ token: admin(), params: { id: await newWebhook() } }),
  getWebhookDelivery: async () => ({ token: admin(), params: await newDelivery() }),
  redeliverWebhookDelivery: async () => ({ token: admin(), params: await newDelivery() }),
  testWebhook: async () => ({ token: admin(), params: { id: await newWebhook() } }),
  listDeadLetters: async () => ({ token: admin() }),
  getDeadLetter: async () => ({ token: admin(), params: { id: await newDeadLetter() } }),
  redriveDeadLetter: async () => ({ token: admin(), params: { id: await newDeadLetter() } }),
  redriveDeadLetters: async () => ({ token: admin(), body: {} }),
}

/**
 * Batch routes judge each item (ingest cleans or rejects it, with its pointer in `results`): a bad
 * item is a 207 (v2 API) or a 200 (the daemons' route, whose clients retry anything else).
 */
const PER_ITEM: Record<string, number[]> = {
  ingest: [200, 207],
  ingestEvents: [200, 207],
  machineEvents: [200],
  // The CLI's sync answers a bad entry as its client expects: 400 {error, index} (SPEC §7.2).
  syncAuditEntries: [400],
}

const example = (spec: Spec) => EXAMPLES[spec.operationId.replace(/Alias$/, '')]

function expectRefused(res: { status: number; headers: Headers; body: any }, field: Field, label: string) {
  const where = `${field.where} ${field.pointer} = ${label}`
  expect(res.status, where).toBe(field.where === 'body' ? 422 : 400)
  expect(res.headers.get('content-type'), where).toBe('application/problem+json')
  expect(
    (res.body.errors as { path: string }[] | undefined)?.map((e) => e.path),
    where,
  ).toContain(field.pointer)
}

describe('every text field of every route', () => {
  test('the registry lists every route, and every route has an example here', () => {
    expect(t.routes.specs.length).toBeGreaterThan(40)
    const missing = t.routes.specs.filter((s) => !example(s)).map((s) => s.operationId)
    expect(missing).toEqual([])
  })

  test('each route: NUL, lone surrogates and impossible dates are a 400/422 naming the field; the clean request is a 2xx', async () => {
    let checked = 0
    for (const spec of t.routes.specs) {
      const fields = [
        ...stringFields(spec.params, 'params'),
        ...stringFields(spec.query, 'query'),
        ...stringFields(spec.body ?? spec.rawBody, 'body'),
      ]
      if (fields.length === 0) continue
      const make = example(spec)!
      const perItem = PER_ITEM[spec.operationId.replace(/Alias$/, '')]
      const base = await make()
      if (spec.body && base.body !== undefined) {
        expect(Value.Check(spec.body, base.body), `${spec.operationId}: its example is valid`).toBe(true)
      }
      for (const field of fields) {
        const bad: [string, string][] = [['NUL', NUL]]
        if (field.where === 'body') bad.push(['lone surrogate', LONE])
        if (field.dateTime) for (const d of BAD_DATES) bad.push([d, d])
        for (const [label, value] of bad) {
          const ex = { ...base, [field.where]: setAt(base[field.where], field.pointer, value) } as Example
          const res = await send(spec, ex)
          const what = `${spec.method.toUpperCase()} ${spec.path} ${field.where} ${field.pointer} = ${label}`
          expect(res.status, `${what}: ${res.text}`).toBeLessThan(500)
          if (perItem && field.where === 'body') {
            expect(perItem, what).toContain(res.status)
          } else {
            expectRefused(res, field, label)
          }
          checked++
        }
        if (field.where !== 'body') {
          // A lone surrogate cannot be spelt in a URL: its UTF-8-like bytes do not decode and stay
          // as text; whatever the route makes of that, never a 500.
          const raw =
            field.where === 'params'
              ? { params: { [field.pointer.slice(1)]: '%ED%A0%80' } }
              : {
                  query: [new URLSearchParams(base.query ?? {}).toString(), `${field.pointer.slice(1)}=%ED%A0%80`]
                    .filter(Boolean)
                    .join('&'),
                }
          const res = await send(spec, base, raw)
          expect(res.status, `${spec.path} ${field.pointer} = %ED%A0%80: ${res.text}`).toBeLessThan(500)
        }
      }
      // The same request, clean, is accepted: the refusals above were about the one field. (A fresh
      // example: the requests above may have spent a single-use fixture; they must not have.)
      const clean = await send(spec, base)
      expect(clean.status, `${spec.method.toUpperCase()} ${spec.path} clean: ${clean.text}`).toBeGreaterThanOrEqual(200)
      expect(clean.status, `${spec.method.toUpperCase()} ${spec.path} clean: ${clean.text}`).toBeLessThan(300)
    }
    expect(checked).toBeGreaterThan(150)
  }, 120_000)

  test('date-time: a clear 400 for ?since= that does not exist or is outside 1970–9999; real instants pass', async () => {
    const bad = [
      '0000-01-01T00:00:00Z',
      '2026-02-31T00:00:00Z',
      '2025-02-29T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-01-01T24:00:00Z',
      '2026-01-01T00:00:60Z',
      '1969-12-31T23:59:59Z',
      '9999-12-31T23:59:59-01:00',
      '2026-01-01',
      '2026-01-01T00:00:00+24:00',
      // Offsets RFC 3339 allows but Postgres refuses (a 500 before the fix).
      '2026-01-01T00:00:00+16:00',
      '2026-01-01T00:00:00-23:59',
    ]
    for (const since of bad) {
      const res = await t.call('GET', `/v1/alerts?since=${encodeURIComponent(since)}`, { token: org.admin_key })
      expect(res.status, since).toBe(400)
      expect(res.body.errors, since).toEqual([{ path: '/since', message: DATE_TIME_MESSAGE }])
    }
    const good = [
      '1970-01-01T00:00:00Z',
      '2024-02-29T12:00:00+05:30',
      '2026-02-28T23:59:59.123456789Z',
      '1969-12-31T23:00:00-02:00',
      '2026-01-01t00:00:00z',
      '9999-12-31T23:59:59Z',
      '2026-01-01T00:00:00+15:59',
      '2026-01-01T00:00:00-14:00',
    ]
    for (const since of good) {
      const res = await t.call('GET', `/v1/alerts?since=${encodeURIComponent(since)}`, { token: org.admin_key })
      expect(res.status, `${since}: ${res.text}`).toBe(200)
    }
  })
})

describe('doctored cursors', () => {
  test('an offset Postgres cannot take is a 400 on every paginated list, never a 500', async () => {
    // Every paginated list without a path parameter, from the registry: a new list is covered.
    const lists = t.routes.specs
      .filter((s) => s.method === 'get' && !s.path.includes(':'))
      .filter((s) => (s.query as { properties?: Record<string, unknown> } | undefined)?.properties?.cursor)
      .map((s) => s.path)
    expect(lists).toEqual(expect.arrayContaining(['/v1/alerts', '/v1/events', '/v1/sessions', '/v1/agents', '/v1/machines']))
    for (const offset of ['+16', '+99', '+05:99', '+05:30:99', '-16']) {
      const cursor = Buffer.from(
        JSON.stringify([`2026-01-01 00:00:00${offset}`, '00000000-0000-4000-8000-000000000001']),
      ).toString('base64url')
      for (const list of lists) {
        const res = await t.call('GET', `${list}?cursor=${cursor}`, { token: org.admin_key })
        expect({ list, offset, status: res.status }).toEqual({ list, offset, status: 400 })
      }
    }
    const fine = Buffer.from(JSON.stringify(['2026-01-01 00:00:00+05:30', '00000000-0000-4000-8000-000000000001'])).toString(
      'base64url',
    )
    expect((await t.call('GET', `/v1/alerts?cursor=${fine}`, { token: org.admin_key })).status).toBe(200)
  })
})
