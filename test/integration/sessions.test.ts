/**
 * The sessions consumer on real Postgres: sessions and agents derived from ingested events and
 * lifecycle reports, counting each event once across duplicate batches and replays, hierarchy in
 * both arrival orders, out-of-order lifecycle, and tenant separation. Lifecycle reports are
 * cleaned and redacted before they travel (issue 14).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { applySessions, parentKeyOf } from '../../src/features/sessions/consumer.ts'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { payloadJson, type BusMessage } from '../../src/bus/bus.ts'
import { withOrg } from '../../src/infra/db.ts'
import { wireEvents } from '../helpers/events.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

const event = (session: string, over: Record<string, unknown> = {}) => ({
  schema_version: 2,
  event_id: crypto.randomUUID(),
  timestamp: new Date().toISOString(),
  platform: 'claude-code',
  action_type: 'tools/call',
  session_id: session,
  agent_id: `agent-of-${session.split(':')[0]}`,
  tool_name: 'Bash',
  decision: 'allow',
  ...over,
})

const ingest = (token: string, events: unknown[]) => t.call('POST', '/v1/ingest', { token, json: { events } })
const lifecycle = (token: string, body: Record<string, unknown>) =>
  t.call('POST', '/v1/sessions/ingest', { token, json: { timestamp: new Date().toISOString(), ...body } })
/** The pipeline, then the sessions consumer (on the local bus it takes what the pipeline stored). */
const sessions = async () => {
  await drainOnce(db.app, 'pipeline', storeEvents)
  return drainOnce(db.app, 'sessions', applySessions)
}

async function session(org: string, key: string) {
  const [row] = await db.owner<Record<string, any>[]>`
    select s.*, p.session_key as parent_session_key from sessions s
      left join sessions p on p.org_id = s.org_id and p.id = s.parent_id
     where s.org_id = ${org} and s.session_key = ${key}`
  return row
}

describe('sessions consumer', () => {
  test('counts events, blocked events and risk per session; agents get event and session counts', async () => {
    const events = [
      event('s-count', { risk_score: 10 }),
      event('s-count', { risk_score: 90, decision: 'block' }),
      event('s-count'),
    ]
    expect((await ingest(a.deploy_token, events)).status).toBe(200)
    expect(await sessions()).toBe(1)
    const s = await session(a.org_id, 's-count')
    expect(s).toMatchObject({
      event_count: '3',
      blocked_count: '1',
      risk_max: 90,
      risk_sum: '100',
      risk_count: '2',
      state: 'active',
    })
    expect(s!.platform).toBe('claude-code')
    const [agent] = await db.owner<Record<string, any>[]>`
      select * from agents where org_id = ${a.org_id} and agent_key = 'agent-of-s-count'`
    expect(agent).toMatchObject({ event_count: '3', session_count: '1' })
    expect(s!.agent_id).toBe(agent!.id)
  })

  test('an event delivered again is counted once', async () => {
    const events = [event('s-dup'), event('s-dup')]
    await ingest(a.deploy_token, events)
    // Resent before the pipeline stored the first copy: ingest accepts it again (it cannot know
    // yet); the pipeline stores it once and hands only that copy on.
    const resend = await ingest(a.deploy_token, [events[0], event('s-dup')])
    expect(resend.body.accepted).toBe(2)
    await sessions()
    expect((await session(a.org_id, 's-dup'))!.event_count).toBe('3')
    // Resent after: a duplicate at the door.
    expect((await ingest(a.deploy_token, [events[1]])).body.duplicates).toBe(1)
    // On SNS this consumer gets what ingest published, retries included: delivered twice, its
    // own ledger counts the event once.
    const unledgered: BusMessage = {
      kind: 'events',
      receivedAt: new Date().toISOString(),
      machineId: null,
      events: [wireEvents.v2({ session_id: 's-dup' })],
    }
    for (let i = 0; i < 2; i++)
      await withOrg(db.app, a.org_id, (tx) => applySessions(tx, [{ batchId: String(i), message: unledgered }]))
    expect((await session(a.org_id, 's-dup'))!.event_count).toBe('4')
  })

  test('sub-agent sessions link to their parent whichever arrives first', async () => {
    // Child first (edge form {parent}:sub:{N}), parent later.
    await ingest(a.deploy_token, [event('root-1:sub:1')])
    await sessions()
    expect((await session(a.org_id, 'root-1:sub:1'))!.parent_id).toBeNull()
    await ingest(a.deploy_token, [event('root-1')])
    await sessions()
    expect((await session(a.org_id, 'root-1:sub:1'))!.parent_session_key).toBe('root-1')
    // Parent first, child named by an explicit parent_session_id.
    await ingest(a.deploy_token, [event('root-2'), event('child-x', { parent_session_id: 'root-2' })])
    await sessions()
    expect((await session(a.org_id, 'child-x'))!.parent_session_key).toBe('root-2')
    expect((await session(a.org_id, 'root-2'))!.parent_id).toBeNull()
  })

  test('lifecycle: start, update, end; a late "active" older than the end does not reopen', async () => {
    const t0 = Date.now() - 60_000
    const at = (ms: number) => new Date(t0 + ms).toISOString()
    const id = crypto.randomUUID()
    expect(
      (
        await lifecycle(a.deploy_token, {
          session_id: id,
          state: 'active',
          model: 'claude-sonnet-4',
          platform: 'cursor',
          timestamp: at(0),
        })
      ).body,
    ).toEqual({ ok: true })
    await lifecycle(a.deploy_token, { session_id: id, state: 'idle', session_name: 'refactor', timestamp: at(1000) })
    await lifecycle(a.deploy_token, { session_id: id, state: 'ended', timestamp: at(5000) })
    await sessions()
    await lifecycle(a.deploy_token, { session_id: id, state: 'active', timestamp: at(2000) })
    await sessions()
    const s = await session(a.org_id, id)
    expect(s).toMatchObject({ state: 'ended', model: 'claude-sonnet-4', platform: 'cursor', session_name: 'refactor' })
    expect(s!.started_at.toISOString()).toBe(at(0))
    expect(s!.ended_at.toISOString()).toBe(at(5000))
    // A newer report does reopen it.
    await lifecycle(a.deploy_token, { session_id: id, state: 'active', timestamp: at(9000) })
    await sessions()
    expect(await session(a.org_id, id)).toMatchObject({ state: 'active', ended_at: null })
  })

  test('lifecycle free-form and unknown fields are cleaned and redacted before the bus, counted per org and in the metrics (issue 14)', async () => {
    const id = crypto.randomUUID()
    const orgRedactions = async () =>
      Number(
        (
          await db.owner<
            { n: string | null }[]
          >`select sum(redactions)::text as n from org_ingest_stats where org_id = ${a.org_id}`
        )[0]!.n ?? 0,
      )
    const metric = async () => {
      const text = (await t.metrics.registry.getSingleMetricAsString('quint_ingest_redactions_total')) ?? ''
      const sum = (kind: string) => Number(new RegExp(`kind="${kind}"} (\\d+)`).exec(text)?.[1] ?? 0)
      return { assignment: sum('secret_assignment'), url: sum('url_password'), field: sum('secret_field') }
    }
    const before = { org: await orgRedactions(), metric: await metric() }
    const res = await lifecycle(a.deploy_token, {
      session_id: id,
      state: 'active',
      session_name: 'run DB_PASSWORD=hunter2xyz psql postgres://u:pw12345@h/db',
      model: 'claude-sonnet-4',
      platform: 'cursor',
      signing_id: 'api_key=ak-77xx88yy',
      api_key: 'sk_test_abcdef',
      env: { PGPASSWORD: 'pgsecret99', note: 'a\u0000b' },
      tags: ['token=tok-11aa22bb'],
    })
    expect(res.status).toBe(200)
    // The bus carries no secret and no NUL: the dead letters and every consumer see the same.
    const batch = (
      await db.owner<{ payload: Uint8Array }[]>`
      select payload from bus_batches where org_id = ${a.org_id} and kind = 'lifecycle'`
    )
      .map((r) => ({ payload: payloadJson(r.payload) }))
      .find((r) => r.payload.includes(id))
    for (const secret of ['hunter2xyz', 'pw12345', 'ak-77xx88yy', 'sk_test_abcdef', 'pgsecret99', 'tok-11aa22bb', '\\u0000']) {
      expect(batch!.payload).not.toContain(secret)
    }
    const sent = JSON.parse(batch!.payload).lifecycle
    expect(sent).toMatchObject({
      session_id: id,
      state: 'active',
      model: 'claude-sonnet-4',
      session_name: 'run DB_PASSWORD=[REDACTED:secret_assignment] psql postgres://u:[REDACTED:url_password]@h/db',
      signing_id: 'api_key=[REDACTED:secret_assignment]',
      api_key: '[REDACTED:secret_field]',
      env: { PGPASSWORD: '[REDACTED:secret_field]', note: 'a\uFFFDb' },
      tags: ['token=[REDACTED:secret_assignment]'],
    })
    await sessions()
    const s = await session(a.org_id, id)
    expect(s!.session_name).toBe('run DB_PASSWORD=[REDACTED:secret_assignment] psql postgres://u:[REDACTED:url_password]@h/db')
    // Six redactions, counted like an event's: per org and day, and per kind in the metrics.
    expect((await orgRedactions()) - before.org).toBe(6)
    const after = await metric()
    expect({
      assignment: after.assignment - before.metric.assignment,
      url: after.url - before.metric.url,
      field: after.field - before.metric.field,
    }).toEqual({ assignment: 3, url: 1, field: 2 })
  })

  test('a lifecycle report whose unknown fields are nested past the limit is a 422 naming where', async () => {
    let deep: unknown = 'x'
    for (let i = 0; i < 40; i++) deep = [deep]
    const res = await lifecycle(a.deploy_token, { session_id: crypto.randomUUID(), state: 'active', deep })
    expect(res.status).toBe(422)
    expect(res.body.errors[0].path).toStartWith('/deep')
  })

  test('lifecycle parent_id links the hierarchy; events then count on the lifecycle-created session', async () => {
    await lifecycle(a.deploy_token, { session_id: 'lc-parent', state: 'active' })
    await lifecycle(a.deploy_token, { session_id: 'lc-child', state: 'active', parent_id: 'lc-parent' })
    await ingest(a.deploy_token, [event('lc-child'), event('lc-child')])
    await sessions()
    const child = await session(a.org_id, 'lc-child')
    expect(child).toMatchObject({ parent_session_key: 'lc-parent', event_count: '2' })
  })

  test('tenants never share sessions: the same session key in two orgs is two sessions', async () => {
    await ingest(a.deploy_token, [event('shared-key')])
    await ingest(b.deploy_token, [event('shared-key'), event('shared-key'), event('shared-key:sub:1')])
    await sessions()
    expect((await session(a.org_id, 'shared-key'))!.event_count).toBe('1')
    expect((await session(b.org_id, 'shared-key'))!.event_count).toBe('2')
    expect((await session(b.org_id, 'shared-key:sub:1'))!.parent_session_key).toBe('shared-key')
    // Org A's session is not B's parent and vice versa.
    const [{ n }] = (await db.owner`
      select count(*)::int as n from sessions c join sessions p on p.id = c.parent_id where c.org_id <> p.org_id`) as any
    expect(n).toBe(0)
  })

  test('events without a session still count for their agent; without an agent they only count for the session', async () => {
    await ingest(a.deploy_token, [
      event('x', { session_id: undefined, agent_id: 'lonely-agent' }),
      event('no-agent', { agent_id: undefined }),
    ])
    await sessions()
    const [agent] = await db.owner<
      Record<string, any>[]
    >`select * from agents where org_id = ${a.org_id} and agent_key = 'lonely-agent'`
    expect(agent).toMatchObject({ event_count: '1', session_count: '0' })
    expect(await session(a.org_id, 'no-agent')).toMatchObject({ event_count: '1', agent_id: null })
  })

  test('over-long platform, parent key and lifecycle fields are clamped: the batch is derived, nothing dead-lettered', async () => {
    // Ingest accepts these (platform is descriptive text up to 1024 characters, parent_session_id
    // an unknown field, lifecycle text grows when redacted); sessions.platform / agents.platform
    // hold 64, parent_key 256, session_name 512. One such event used to fail the whole batch.
    const long = 'p'.repeat(200)
    const res = await ingest(a.deploy_token, [
      event('long-ok-1', { agent_id: 'long-ok-agent' }),
      event('long-platform', { agent_id: 'long-platform-agent', platform: long }),
      event('long-parent', { parent_session_id: 'q'.repeat(300) }),
      event('long-ok-2', { agent_id: 'long-ok-agent' }),
    ])
    expect(res.status).toBe(200)
    expect(res.body.accepted).toBe(4)
    const grows = 'DB_PASSWORD=ab12 '.repeat(3).trim() // 50 characters, 122 once redacted
    const lc = await lifecycle(a.deploy_token, {
      session_id: 'long-lifecycle',
      state: 'active',
      platform: grows,
      session_name: `${'n'.repeat(450)} ${grows}`,
      model: `${'m'.repeat(200)} ${grows}`,
    })
    expect(lc.status).toBe(200)
    await sessions()

    for (const key of ['long-ok-1', 'long-ok-2']) {
      expect(await session(a.org_id, key)).toMatchObject({ event_count: '1', platform: 'claude-code' })
    }
    expect(await session(a.org_id, 'long-platform')).toMatchObject({ event_count: '1', platform: 'p'.repeat(64) })
    expect(await session(a.org_id, 'long-parent')).toMatchObject({ event_count: '1', parent_key: null })
    const life = await session(a.org_id, 'long-lifecycle')
    expect(life!.platform).toHaveLength(64)
    expect(life!.platform).toStartWith('DB_PASSWORD=[REDACTED:')
    expect(life!.session_name).toHaveLength(512)
    expect(life!.model).toHaveLength(256)
    const agents = await db.owner<{ agent_key: string; platform: string; event_count: string }[]>`
      select agent_key, platform, event_count from agents
       where org_id = ${a.org_id} and agent_key in ('long-ok-agent', 'long-platform-agent') order by agent_key`
    expect([...agents]).toEqual([
      { agent_key: 'long-ok-agent', platform: 'claude-code', event_count: '2' },
      { agent_key: 'long-platform-agent', platform: 'p'.repeat(64), event_count: '1' },
    ])
    // Nothing held back for a retry, nothing dead-lettered.
    const [{ pending, dead }] = (await db.owner`
      select (select count(*)::int from bus_pending where org_id = ${a.org_id} and consumer = 'sessions') as pending,
             (select count(*)::int from bus_dead_letters where org_id = ${a.org_id}) as dead`) as any
    expect({ pending, dead }).toEqual({ pending: 0, dead: 0 })
  })
})

test('parentKeyOf: explicit parent, the sub-agent form, and never itself', () => {
  expect(parentKeyOf('a:sub:2', undefined)).toBe('a')
  expect(parentKeyOf('a:sub:2:sub:1', undefined)).toBe('a:sub:2')
  expect(parentKeyOf('a', 'p')).toBe('p')
  expect(parentKeyOf('a', 'a')).toBeNull()
  expect(parentKeyOf('a:sub:x', undefined)).toBeNull()
})
