/**
 * Retention (issue 9; docs/retention.md) on a real Postgres, with the purger's clock set by the
 * test: each org's actions, sessions, alerts, webhook deliveries and ledgers past its own window
 * are deleted and the rest kept; statements are bounded; a month partition is dropped only once
 * no org needs it; two purgers at once delete every expired row exactly once; the runtime role
 * cannot delete events itself; `GET`/`PATCH /v1/org` validate and audit; and a client retrying an
 * old event is answered as documented before and after its ledger key is pruned.
 */
import { afterAll, beforeAll, describe, expect, spyOn, test } from 'bun:test'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { normalizeIngestItem } from '../../src/features/ingest/events.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { loadConfig } from '../../src/config.ts'
import { purgeCommand, PurgeUsageError } from '../../src/cli/purge.ts'
import { RetentionPurger } from '../../src/features/retention/purger.ts'
import { withOrg } from '../../src/infra/db.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { databaseEnv, HOOK_TIMEOUT_MS, testLog, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'

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

/** The test's clock: data is placed relative to it, and the purger is handed it (or moved from it). */
const T0 = Date.now() - 60_000
const DAY = 24 * 3600 * 1000
const daysAgo = (d: number) => new Date(T0 - d * DAY)
const purger = (over: { now?: Date; batchRows?: number } = {}) =>
  new RetentionPurger({ sql: db.app, log: testLog, now: () => over.now ?? new Date(T0), batchRows: over.batchRows })

const partitionName = (at: Date) => `actions_${at.getUTCFullYear()}${String(at.getUTCMonth() + 1).padStart(2, '0')}`

/** Past months have no partition (the service creates current and ahead only): made as the owner. */
async function ensureMonth(at: Date): Promise<string> {
  const name = partitionName(at)
  const [row] = await db.owner<{ r: string | null }[]>`select to_regclass(${'public.' + name})::text as r`
  if (row?.r) return name
  const from = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1)).toISOString()
  const to = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1)).toISOString()
  await db.owner.unsafe(`create table public.${name} partition of public.actions for values from ('${from}') to ('${to}')`)
  await db.owner.unsafe(`revoke all on public.${name} from public, quint_app`)
  await db.owner`select quint_enable_tenant_rls(${'public.' + name}::regclass)`
  return name
}

/** An action received `age` days ago, with its pipeline and sessions ledger keys, as the consumers write them. */
async function action(org: string, age: number, key: string) {
  const at = daysAgo(age)
  await ensureMonth(at)
  const id = crypto.randomUUID()
  await db.owner`insert into actions (org_id, id, created_at, event_key, event_id, occurred_at)
                 values (${org}, ${id}, ${at}, ${key}, ${key}, ${at})`
  await db.owner`insert into event_keys (org_id, event_key, action_id, action_created_at) values (${org}, ${key}, ${id}, ${at})`
  await db.owner`insert into session_event_keys (org_id, event_key, created_at) values (${org}, ${key}, ${at})`
}

async function alert(org: string, age: number, key: string) {
  await db.owner`insert into alerts (org_id, rule_key, event_key, severity, title, created_at)
                 values (${org}, 'builtin:test', ${key}, 'high', ${key}, ${daysAgo(age)})`
}

async function session(org: string, key: string, o: { started: number; last?: number; ended?: number; parent?: string }) {
  const parent = o.parent
    ? (await db.owner<{ id: string }[]>`select id from sessions where org_id = ${org} and session_key = ${o.parent}`)[0]!.id
    : null
  const last = daysAgo(o.last ?? o.started)
  await db.owner`
    insert into sessions (org_id, session_key, parent_key, parent_id, started_at, last_event_at, ended_at, state,
                          created_at, updated_at)
    values (${org}, ${key}, ${o.parent ?? null}, ${parent}, ${daysAgo(o.started)}, ${last},
            ${o.ended === undefined ? null : daysAgo(o.ended)}, ${o.ended === undefined ? 'active' : 'ended'},
            ${daysAgo(o.started)}, ${last})`
}

/** A column of an org's rows, sorted in JS (not by the database's collation). */
const keysOf = async (table: string, org: string, column = 'event_key') =>
  (await db.owner.unsafe<{ k: string }[]>(`select ${column} as k from ${table} where org_id = $1`, [org])).map((r) => r.k).sort()

const setRetention = async (org: CreatedOrg, days: number) => {
  const res = await t.call('PATCH', '/v1/org', { token: org.admin_key, json: { retention_days: days } })
  expect(res.status).toBe(200)
}

describe('GET and PATCH /v1/org', () => {
  test('shows the org with retention_days (default 90) to its admin only', async () => {
    const res = await t.call('GET', '/v1/org', { token: a.admin_key })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ id: a.org_id, name: 'org A', retention_days: 90 })
    expect(Date.parse(res.body.created_at)).toBeGreaterThan(0)
    expect((await t.call('GET', '/v1/org', { token: a.deploy_token })).status).toBe(403)
    expect((await t.call('GET', '/v1/org')).status).toBe(401)
  })

  test('bad values answer 422 naming the field (or 400 for a body that is not JSON); nothing changes', async () => {
    for (const json of [
      { retention_days: 0 },
      { retention_days: 3651 },
      { retention_days: 1.5 },
      { retention_days: '30' },
      {},
      { name: 'x' },
    ]) {
      const res = await t.call('PATCH', '/v1/org', { token: a.admin_key, json })
      expect(res.status).toBe(422)
      expect(res.headers.get('content-type')).toContain('application/problem+json')
    }
    const bad = await t.call('PATCH', '/v1/org', { token: a.admin_key, json: { retention_days: 0 } })
    expect(bad.body.errors[0].path).toBe('/retention_days')
    const notJson = await t.call('PATCH', '/v1/org', {
      token: a.admin_key,
      body: '{',
      headers: { 'content-type': 'application/json' },
    })
    expect(notJson.status).toBe(400)
    expect((await t.call('PATCH', '/v1/org', { token: a.deploy_token, json: { retention_days: 5 } })).status).toBe(403)
    expect((await t.call('GET', '/v1/org', { token: a.admin_key })).body.retention_days).toBe(90)
  })

  test('a change is stored, audited once with its old and new value, and touches no other org', async () => {
    const res = await t.call('PATCH', '/v1/org', { token: a.admin_key, json: { retention_days: 30 } })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ id: a.org_id, retention_days: 30 })
    // The same value again changes nothing and records nothing.
    await setRetention(a, 30)
    const audit = await db.owner<{ action: string; details: any; target_id: string; actor_type: string }[]>`
      select action, details, target_id, actor_type from audit_log where org_id = ${a.org_id} and action = 'org.update'`
    expect([...audit]).toEqual([
      { action: 'org.update', details: { retention_days: { from: 90, to: 30 } }, target_id: a.org_id, actor_type: 'api_key' },
    ])
    expect((await t.call('GET', '/v1/org', { token: b.admin_key })).body.retention_days).toBe(90)
    const [row] = await db.owner<{ n: number }[]>`select retention_days as n from organizations where id = ${b.org_id}`
    expect(row!.n).toBe(90)
  })
})

describe('the runtime role cannot delete events itself', () => {
  test('no DELETE on actions or the ledgers; the purge function needs a tenant and refuses a clock ahead of the database', async () => {
    for (const table of ['actions', 'event_keys', 'session_event_keys']) {
      const err = await withOrg(db.app, a.org_id, (tx) => tx.unsafe(`delete from ${table}`)).catch((e: unknown) => e)
      expect((err as { code?: string }).code).toBe('42501')
    }
    const noOrg = await db.app`select quint_purge_expired('actions', now(), 10)`.catch((e: unknown) => e)
    expect((noOrg as { code?: string }).code).toBe('42501')
    const ahead = await withOrg(
      db.app,
      a.org_id,
      (tx) => tx`select quint_purge_expired('actions', now() + interval '1 day', 10)`,
    ).catch((e: unknown) => e)
    expect((ahead as { code?: string }).code).toBe('22023')
    // And so does the job: a clock ahead of the database's is an error, not a bigger purge.
    await expect(purger({ now: new Date(Date.now() + 2 * DAY) }).runOnce()).rejects.toMatchObject({ code: '22023' })
  })
})

describe('purge', () => {
  test("each org's data past its own window goes, the rest stays; the clock decides what is past", async () => {
    // Org A keeps 30 days (set above), org B 90. Ledger keys outlive their actions by 30 days.
    for (const [org, p] of [
      [a.org_id, 'a'],
      [b.org_id, 'b'],
    ] as const) {
      for (const age of [20, 40, 70, 100, 130]) {
        await action(org, age, `${p}-${age}`)
        await alert(org, age, `${p}-${age}`)
      }
    }
    await session(a.org_id, 'a-recent', { started: 25, last: 20 })
    await session(a.org_id, 'a-ended-old', { started: 50, last: 45, ended: 40 })
    // Started long ago, still active: its last activity counts, not its start.
    await session(a.org_id, 'a-long-running', { started: 200, last: 5 })
    // A parent idle past the window with a live child: the parent goes, the child keeps its parent_key.
    await session(a.org_id, 'a-parent', { started: 60, last: 50 })
    await session(a.org_id, 'a-parent:sub:1', { started: 10, last: 2, parent: 'a-parent' })
    await session(b.org_id, 'b-old', { started: 60, last: 50 })

    // An earlier clock first: for org A (30 days) the cutoff is then 45 days before T0.
    await purger({ now: daysAgo(15) }).runOnce()
    expect(await keysOf('actions', a.org_id)).toEqual(['a-20', 'a-40'])
    expect(await keysOf('sessions', a.org_id, 'session_key')).toContain('a-ended-old')

    const report = await purger().runOnce()
    expect(report.now).toBe(new Date(T0).toISOString())
    expect(await keysOf('actions', a.org_id)).toEqual(['a-20'])
    expect(await keysOf('actions', b.org_id)).toEqual(['b-20', 'b-40', 'b-70'])
    expect(await keysOf('alerts', a.org_id)).toEqual(['a-20'])
    expect(await keysOf('alerts', b.org_id)).toEqual(['b-20', 'b-40', 'b-70'])
    // Ledgers: kept until retention + 30 days (A: 60, B: 120).
    expect(await keysOf('event_keys', a.org_id)).toEqual(['a-20', 'a-40'])
    expect(await keysOf('event_keys', b.org_id)).toEqual(['b-100', 'b-20', 'b-40', 'b-70'])
    expect(await keysOf('session_event_keys', a.org_id)).toEqual(['a-20', 'a-40'])
    expect(await keysOf('session_event_keys', b.org_id)).toEqual(['b-100', 'b-20', 'b-40', 'b-70'])
    expect(await keysOf('sessions', a.org_id, 'session_key')).toEqual(['a-long-running', 'a-parent:sub:1', 'a-recent'])
    expect(await keysOf('sessions', b.org_id, 'session_key')).toEqual(['b-old'])
    const [child] = await db.owner<{ parent_id: string | null; parent_key: string }[]>`
      select parent_id, parent_key from sessions where org_id = ${a.org_id} and session_key = 'a-parent:sub:1'`
    expect(child).toEqual({ parent_id: null, parent_key: 'a-parent' })
    // Partitions entirely older than the longest retention (90 days) are gone whole.
    for (const name of report.partitions) expect(name < partitionName(daysAgo(90))).toBe(true)

    // A second run finds nothing more.
    const again = await purger().runOnce()
    expect(Object.values(again.deleted).every((n) => n === 0)).toBe(true)
  })

  test('settled webhook deliveries and credential-read state past the window go; pending deliveries stay', async () => {
    const [hook] = await db.owner<{ id: string }[]>`
      insert into webhooks (org_id, url, secret_ciphertext) values (${a.org_id}, 'https://example.com/h', '\\x00'::bytea)
      returning id`
    for (const [id, status, age] of [
      ['old-done', 'succeeded', 40],
      ['old-dead', 'dead', 40],
      ['old-pending', 'pending', 40],
      ['new-done', 'succeeded', 10],
    ] as const) {
      await db.owner`insert into webhook_deliveries (org_id, webhook_id, message_id, event_type, payload, status, created_at)
                     values (${a.org_id}, ${hook!.id}, ${id}, 'alert.created', '{}', ${status}, ${daysAgo(age)})`
    }
    await db.owner`insert into alert_session_state (org_id, session_key, credential_read_at)
                   values (${a.org_id}, 'read-old', ${daysAgo(40)}), (${a.org_id}, 'read-new', ${daysAgo(10)})`
    const report = await purger().runOnce()
    expect(report.deleted.webhook_deliveries).toBe(2)
    expect(report.deleted.alert_session_state).toBe(1)
    expect(await keysOf('webhook_deliveries', a.org_id, 'message_id')).toEqual(['new-done', 'old-pending'])
    expect(await keysOf('alert_session_state', a.org_id, 'session_key')).toEqual(['read-new'])
  })

  test('a session flow not stepped since the window goes; a live one stays, with or without a credential read', async () => {
    await db.owner`insert into session_flows (org_id, session_key, flow, updated_at)
                   values (${a.org_id}, 'flow-old', '{}', ${daysAgo(40)}), (${a.org_id}, 'flow-live', '{}', ${daysAgo(1)})`
    const report = await purger().runOnce()
    expect(report.deleted.session_flows).toBe(1)
    expect(await keysOf('session_flows', a.org_id, 'session_key')).toEqual(['flow-live'])
  })

  test("the stats' hourly counts keep counting exactly the stored actions: purged ones leave, late uploads stay", async () => {
    const org = await createOrg(db.app, `rollups ${crypto.randomUUID()}`, 'cli')
    await db.owner`update organizations set retention_days = 7 where id = ${org.org_id}`
    await ensureMonth(daysAgo(10))
    const wire = (id: string, occurred: Date) => {
      const r = normalizeIngestItem(v2Event({ event_id: id, timestamp: occurred.toISOString() }), '', T0)
      if (!r.ok) throw new Error(r.reason)
      return { ...r.event, occurredAt: r.event.occurredAt.toISOString() }
    }
    const store = (receivedAt: Date, events: ReturnType<typeof wire>[]) =>
      withOrg(db.app, org.org_id, (tx) =>
        storeEvents(tx, [
          {
            batchId: crypto.randomUUID(),
            message: { kind: 'events', receivedAt: receivedAt.toISOString(), machineId: null, events },
          },
        ] as never),
      )
    // Received 10 days ago: past the window. Received now but dated 10 days ago: a late upload, kept.
    await store(daysAgo(10), [wire('expired', daysAgo(10))])
    await store(new Date(T0), [wire('late', daysAgo(10)), wire('fresh', new Date(T0))])
    await purger().runOnce()
    const [counts] = await db.owner<{ actions: number; hourly: number; tools: number }[]>`
      select (select count(*)::int from actions where org_id = ${org.org_id}) as actions,
             (select coalesce(sum(n), 0)::int from event_hourly where org_id = ${org.org_id}) as hourly,
             (select coalesce(sum(n), 0)::int from event_hourly_top where org_id = ${org.org_id} and dim = 'tool') as tools`
    expect(counts).toEqual({ actions: 2, hourly: 2, tools: 2 })
  })

  test('every statement deletes at most the batch size; the job loops until the org is clean', async () => {
    const c = await createOrg(db.app, 'org C', 'cli')
    await db.owner`update organizations set retention_days = 30 where id = ${c.org_id}`
    for (let i = 0; i < 25; i++) await action(c.org_id, 45, `c-${String(i).padStart(2, '0')}`)
    const batch = () =>
      withOrg(db.app, c.org_id, async (tx) => {
        const [row] = await tx<{ n: number }[]>`select quint_purge_expired('actions', ${new Date(T0)}, 10) as n`
        return row!.n
      })
    expect(await batch()).toBe(10)
    expect((await keysOf('actions', c.org_id)).length).toBe(15)
    const report = await purger({ batchRows: 4 }).runOnce()
    expect(report.deleted.actions).toBe(15)
    // 15 rows at 4 per statement: 4 statements for actions alone, one more per other table.
    expect(report.batches).toBeGreaterThanOrEqual(4 + 6)
    expect(await keysOf('actions', c.org_id)).toEqual([])
    // Within retention + margin: the keys stay to answer retries.
    expect((await keysOf('event_keys', c.org_id)).length).toBe(25)
  })

  test('a month partition is dropped only once no org needs it', async () => {
    const old = new Date(Date.UTC(new Date(T0).getUTCFullYear() - 3, 0, 15))
    const name = await ensureMonth(old)
    await db.owner`insert into actions (org_id, created_at, event_key, event_id, occurred_at)
                   values (${b.org_id}, ${old}, 'ancient', 'ancient', ${old})`
    const exists = async () =>
      (await db.owner<{ r: string | null }[]>`select to_regclass(${'public.' + name})::text as r`)[0]!.r !== null
    // Org B keeps ten years: the three-year-old month stays (its row too, still inside B's window).
    await setRetention(b, 3650)
    const kept = await purger().runOnce()
    expect(kept.partitions).not.toContain(name)
    expect(await exists()).toBe(true)
    expect(await keysOf('actions', b.org_id)).toContain('ancient')
    // Back to 90 days: now no org needs it, and the whole month goes in one statement.
    await setRetention(b, 90)
    const dropped = await purger().runOnce()
    expect(dropped.partitions).toContain(name)
    expect(await exists()).toBe(false)
    expect(await keysOf('actions', b.org_id)).not.toContain('ancient')
    // The current month and those ahead are never candidates.
    const [current] = await db.owner<
      { r: string | null }[]
    >`select to_regclass(${'public.' + partitionName(new Date())})::text as r`
    expect(current!.r).not.toBeNull()
  })

  test('two purgers at once: both finish, and every expired row is deleted exactly once', async () => {
    const orgs = await Promise.all(['org D', 'org E', 'org F'].map((n) => createOrg(db.app, n, 'cli')))
    let expired = 0
    for (const org of orgs) {
      await db.owner`update organizations set retention_days = 30 where id = ${org.org_id}`
      for (let i = 0; i < 20; i++) {
        await action(org.org_id, 40, `x-${i}`)
        await alert(org.org_id, 40, `x-${i}`)
        expired++
      }
      await action(org.org_id, 5, 'fresh')
    }
    const reports = await Promise.all([purger({ batchRows: 3 }).runOnce(), purger({ batchRows: 3 }).runOnce()])
    const sum = (target: 'actions' | 'alerts') => reports.reduce((n, r) => n + r.deleted[target], 0)
    expect(sum('actions')).toBe(expired)
    expect(sum('alerts')).toBe(expired)
    for (const org of orgs) {
      expect(await keysOf('actions', org.org_id)).toEqual(['fresh'])
      expect(await keysOf('alerts', org.org_id)).toEqual([])
    }
  })
})

describe('a client retrying an old event (docs/retention.md)', () => {
  test('answered duplicate while its ledger key lives; stored once more only after the original is long gone', async () => {
    const e = v2Event({ session_id: 'retry-s', timestamp: daysAgo(2).toISOString() })
    const ingest = () => t.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events: [e] } })
    const stored = async () => [
      ...(await db.owner<{ id: string }[]>`select id from actions where org_id = ${a.org_id} and event_id = ${e.event_id}`),
    ]
    expect((await ingest()).body.accepted).toBe(1)
    await drainOnce(db.app, 'pipeline', storeEvents)
    const [first] = await stored()
    expect(first).toBeDefined()

    // Received 40 days ago (org A keeps 30): the action is purged, its key is kept (30 + 30 days).
    await ensureMonth(daysAgo(40))
    await db.owner`update actions set created_at = ${daysAgo(40)} where org_id = ${a.org_id} and id = ${first!.id}`
    await db.owner`update event_keys set action_created_at = ${daysAgo(40)} where org_id = ${a.org_id} and action_id = ${first!.id}`
    await purger().runOnce()
    expect(await stored()).toEqual([])
    const retried = await ingest()
    expect(retried.body).toMatchObject({ accepted: 0, duplicates: 1 })
    await drainOnce(db.app, 'pipeline', storeEvents)
    expect(await stored()).toEqual([])

    // Past retention + margin the key is pruned too; a retry then is a new event, the only copy.
    await db.owner`update event_keys set action_created_at = ${daysAgo(70)} where org_id = ${a.org_id} and action_id = ${first!.id}`
    const pruned = await purger().runOnce()
    expect(pruned.deleted.event_keys).toBeGreaterThanOrEqual(1)
    expect((await ingest()).body.accepted).toBe(1)
    await drainOnce(db.app, 'pipeline', storeEvents)
    const again = await stored()
    expect(again.length).toBe(1)
    expect(again[0]!.id).not.toBe(first!.id)
  })
})

describe('quint-cloud purge', () => {
  test('runs one pass with the configured batch size and prints its report', async () => {
    const c = await createOrg(db.app, 'org G', 'cli')
    await db.owner`update organizations set retention_days = 1 where id = ${c.org_id}`
    await alert(c.org_id, 3, 'g-old')
    const config = loadConfig({ ...databaseEnv(db), QUINT_BOOTSTRAP_ORG: '', RETENTION_BATCH_ROWS: '100' })
    await expect(purgeCommand(config, testLog, ['--force'])).rejects.toBeInstanceOf(PurgeUsageError)
    const log = spyOn(console, 'log').mockImplementation(() => {})
    try {
      expect(await purgeCommand(config, testLog, ['--json'])).toBe(0)
      const report = JSON.parse(String(log.mock.calls.at(-1)?.[0]))
      expect(report.deleted.alerts).toBe(1)
      expect(report.interrupted).toBe(false)
    } finally {
      log.mockRestore()
    }
    expect(await keysOf('alerts', c.org_id)).toEqual([])
  })
})
