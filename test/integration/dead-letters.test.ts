/**
 * Dead letters on the local bus (issue 14), on real Postgres: a lifecycle report dated year 0 is
 * accepted and applied (clamped) instead of stalling the org's sessions forever; a batch that
 * keeps failing is set aside after BUS_MAX_ATTEMPTS attempts while the org's later batches go
 * on, in worker threads with a real poison batch and in the loop with a handler that fails until
 * fixed; the metrics count it; the admin routes and the CLI list and redrive it, org by org.
 * Every message can be set aside, a NUL in it included, and a move that fails never aborts the
 * org's round.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { createMetrics } from '../../src/infra/metrics.ts'
import { drainOnce, runConsumer, storableJson, type Handler } from '../../src/bus/consume-local.ts'
import { encodePayload, type BusMessage } from '../../src/bus/bus.ts'
import { HANDLERS } from '../../src/bus/handlers.ts'
import { ConsumerPool } from '../../src/bus/pool.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { databaseEnv, HOOK_TIMEOUT_MS, testLog, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'
import { ROOT } from '../helpers/process.ts'
import { eventually } from '../helpers/wait.ts'

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

const event = (session: string, over: Record<string, unknown> = {}) => v2Event({ session_id: session, ...over })

const n = async (sql: string, ...params: unknown[]): Promise<number> =>
  ((await db.owner.unsafe(sql, params as never[]))[0] as unknown as { n: number }).n

/** One consumer loop in this thread while `fn` runs. */
async function withConsumer(
  consumer: 'pipeline' | 'sessions',
  handle: Handler,
  fn: () => Promise<void>,
  o: { maxAttempts?: number; onDeadLetter?: () => void } = {},
) {
  const stop = new AbortController()
  const running = runConsumer({
    sql: db.app,
    consumer,
    handle,
    log: testLog,
    signal: stop.signal,
    pollMs: 50,
    maxAttempts: o.maxAttempts ?? 3,
    retryBaseMs: 20,
    ...(o.onDeadLetter ? { onDeadLetter: o.onDeadLetter } : {}),
  })
  try {
    await fn()
  } finally {
    stop.abort()
    await running
  }
}

const lifecycle = (session: string, timestamp: string, state = 'active') =>
  t.call('POST', '/v1/sessions/ingest', { token: a.deploy_token, json: { session_id: session, state, timestamp } })
const sessionState = async (session: string) =>
  (await db.owner`select state, started_at, ended_at from sessions where org_id = ${a.org_id} and session_key = ${session}`)[0]

describe('lifecycle timestamps', () => {
  test('year 0 is accepted and applied clamped to the clock window; later reports of the org still apply', async () => {
    const poison = `year0-${crypto.randomUUID()}`
    const later = `after-${crypto.randomUUID()}`
    expect((await lifecycle(poison, '0000-01-01T00:00:00Z')).status).toBe(200)
    expect((await lifecycle(later, new Date().toISOString())).status).toBe(200)
    await withConsumer('sessions', HANDLERS.sessions, async () => {
      await eventually(
        () => sessionState(later),
        (s) => s !== undefined,
      )
      await eventually(
        () => sessionState(poison),
        (s) => s !== undefined,
      )
    })
    const s = await sessionState(poison)
    // Clamped to 30 days before it was received, as an event's timestamp would be.
    const ageDays = (Date.now() - (s!.started_at as Date).getTime()) / 86_400_000
    expect(ageDays).toBeGreaterThan(29.9)
    expect(ageDays).toBeLessThan(30.1)
    expect(await n('select count(*)::int as n from bus_dead_letters where org_id = $1', a.org_id)).toBe(0)
  })

  test('a date that does not exist, or a non-RFC 3339 form, is a 422', async () => {
    for (const ts of ['2026-02-31T00:00:00Z', '2026-13-01T00:00:00Z', '2026-01-01', 'yesterday', '2026-01-01T00:00:00+99:99']) {
      const res = await lifecycle(`bad-${crypto.randomUUID()}`, ts)
      expect({ ts, status: res.status }).toEqual({ ts, status: 422 })
      expect(res.body.errors[0].path).toBe('/timestamp')
    }
    expect((await lifecycle(`ok-${crypto.randomUUID()}`, '2026-02-28T23:59:59.123456+02:00')).status).toBe(200)
  })
})

/** A batch published before validation existed (or by any bug): a real poison for Postgres. */
async function insertPoisonBatch(org: string): Promise<string> {
  const e = {
    eventKey: `e:poison-${crypto.randomUUID()}`,
    eventId: `poison-${crypto.randomUUID()}`,
    occurredAt: '0000-01-01T00:00:00.000Z',
    clientTimestamp: null,
    sessionKey: `poison-session-${crypto.randomUUID()}`,
    agentKey: 'agent-poison',
    schemaVersion: 2,
    source: null,
    platform: null,
    actionType: 'tools/call',
    action: null,
    toolName: 'Bash',
    arguments: {},
    decision: 'allow',
    blocked: false,
    riskScore: null,
    labels: {},
    extra: {},
    redactions: 0,
  }
  const payload = { kind: 'events', receivedAt: new Date().toISOString(), machineId: null, events: [e] }
  const [row] = await db.owner<{ id: string }[]>`
    insert into bus_batches (org_id, kind, payload) values (${org}, 'events', ${encodePayload(payload as BusMessage)}) returning id::text as id`
  await db.owner`
    insert into bus_pending (org_id, consumer, batch_id)
    select ${org}, c, ${row!.id}::bigint from unnest(array['pipeline', 'sessions', 'alerts']) c`
  await db.owner`select pg_notify('quint_bus', '')`
  return row!.id
}

const metricText = async (registry: ReturnType<typeof createMetrics>['registry'], name: string) =>
  (await registry.getSingleMetricAsString(name)) ?? ''

describe('dead-lettering (worker threads, a real poison batch)', () => {
  test("set aside after BUS_MAX_ATTEMPTS, counted, listed for its org only; the org's later batches go on", async () => {
    const metrics = createMetrics()
    const pool = new ConsumerPool(
      ['pipeline', 'sessions', 'alerts'],
      {
        target: db.appTarget,
        statementTimeoutMs: 30_000,
        acquireTimeoutMs: 5_000,
        logLevel: 'silent',
        pollMs: 50,
        maxAttempts: 2,
        retryBaseMs: 50,
      },
      testLog,
      metrics,
    )
    const batchId = await insertPoisonBatch(a.org_id)
    pool.start()
    try {
      const session = `after-poison-${crypto.randomUUID()}`
      const res = await t.call('POST', '/v1/ingest', {
        token: a.deploy_token,
        json: { events: [event(session), event(session)] },
      })
      expect(res.status).toBe(200)
      // The later batch is applied by every consumer while the poison one is retried.
      await eventually(
        () =>
          n(
            'select coalesce(max(event_count), 0)::int as n from sessions where org_id = $1 and session_key = $2',
            a.org_id,
            session,
          ),
        (v) => v === 2,
      )
      await eventually(
        () => n('select count(*)::int as n from actions where org_id = $1 and session_key = $2', a.org_id, session),
        (v) => v === 2,
      )
      // Pipeline and sessions cannot store year 0: each dead-letters its own claim, after 2 attempts.
      const dead = await eventually(
        () =>
          db.owner`select consumer, message_id, attempts, error_class, error_message from bus_dead_letters where org_id = ${a.org_id} order by consumer`,
        (rows) => rows.length >= 2,
      )
      const byConsumer = Object.fromEntries(dead.map((r) => [r.consumer, r]))
      for (const c of ['pipeline', 'sessions']) {
        expect(byConsumer[c]).toMatchObject({ message_id: batchId, attempts: 2 })
        expect(byConsumer[c]!.error_class).toContain('22008')
      }
      // Nothing of that batch is left pending in the consumers that gave up on it.
      expect(
        await n(
          `select count(*)::int as n from bus_pending where org_id = $1 and batch_id = $2 and consumer <> 'alerts'`,
          a.org_id,
          batchId,
        ),
      ).toBe(0)
      await eventually(
        () => metricText(metrics.registry, 'quint_bus_dead_letters_total'),
        (s) =>
          s.includes('quint_bus_dead_letters_total{consumer="pipeline"} 1') &&
          s.includes('quint_bus_dead_letters_total{consumer="sessions"} 1'),
      )
      // Lag: the oldest waiting batch's age, per consumer; 0 once drained.
      await eventually(
        () => metricText(metrics.registry, 'quint_bus_consumer_lag_seconds'),
        (s) => s.includes('quint_bus_consumer_lag_seconds{consumer="pipeline"} 0'),
      )
    } finally {
      await pool.stop()
    }
    // The app's gauge of dead letters waiting (all orgs), and the admin view: org A sees its own, org B none.
    const waiting = await (await t.app.fetch(new Request('http://test/metrics'))).text()
    expect(waiting).toContain('quint_bus_dead_letters_waiting{consumer="pipeline"} 1')
    const listA = await t.call('GET', '/v1/dead-letters', { token: a.admin_key })
    expect(listA.status).toBe(200)
    expect(listA.body.dead_letters.map((d: { consumer: string }) => d.consumer).sort()).toEqual(['pipeline', 'sessions'])
    expect(listA.body.dead_letters[0]).toMatchObject({ source: 'local', kind: 'events', events: 1, message_id: batchId })
    const listB = await t.call('GET', '/v1/dead-letters', { token: b.admin_key })
    expect(listB.body.dead_letters).toEqual([])
    const id = listA.body.dead_letters[0].id
    expect((await t.call('GET', `/v1/dead-letters/${id}`, { token: b.admin_key })).status).toBe(404)
    expect((await t.call('POST', `/v1/dead-letters/${id}/redrive`, { token: b.admin_key })).status).toBe(404)
    expect((await t.call('GET', `/v1/dead-letters/${id}`, { token: a.deploy_token })).status).toBe(403)
    const one = await t.call('GET', `/v1/dead-letters/${id}`, { token: a.admin_key })
    expect(one.body.payload.events[0].occurredAt).toBe('0000-01-01T00:00:00.000Z')
    // Page by page with the cursor.
    const p1 = await t.call('GET', '/v1/dead-letters?limit=1', { token: a.admin_key })
    const p2 = await t.call('GET', `/v1/dead-letters?limit=1&cursor=${p1.body.next_cursor}`, { token: a.admin_key })
    expect([p1.body.dead_letters.length, p2.body.dead_letters.length, p2.body.next_cursor]).toEqual([1, 1, null])
    expect(p1.body.dead_letters[0].id).not.toBe(p2.body.dead_letters[0].id)
    expect((await t.call('GET', '/v1/dead-letters?consumer=nope', { token: a.admin_key })).status).toBe(400)
    expect((await t.call('GET', '/v1/dead-letters?cursor=garbage', { token: a.admin_key })).status).toBe(400)

    // Redrive of a message whose cause is not fixed: it goes back to its consumer only, fails
    // again and is set aside again (a new dead letter).
    const redrive = await t.call('POST', '/v1/dead-letters/redrive', { token: a.admin_key, json: { consumer: 'pipeline' } })
    expect(redrive.status).toBe(200)
    expect(redrive.body).toEqual({ redriven: 1, remaining: 0 })
    expect(await n(`select count(*)::int as n from bus_pending where org_id = $1 and consumer = 'pipeline'`, a.org_id)).toBe(1)
    expect(await n(`select count(*)::int as n from bus_pending where org_id = $1 and consumer = 'sessions'`, a.org_id)).toBe(0)
    let dead = 0
    await withConsumer(
      'pipeline',
      HANDLERS.pipeline,
      async () => {
        await eventually(
          async () => dead,
          (v) => v === 1,
        )
      },
      { maxAttempts: 2, onDeadLetter: () => dead++ },
    )
    expect(await n(`select count(*)::int as n from bus_dead_letters where org_id = $1 and consumer = 'pipeline'`, a.org_id)).toBe(
      1,
    )
  }, 60_000)

  test('two loops retrying poison batches at once: each is set aside after exactly its attempts, never more', async () => {
    // Issue 13 runs two pipeline loops. A batch counted to its last attempt used to stay claimable
    // until its move to the dead letters, in a transaction of its own: the other loop could try it
    // once more in between (a third attempt of two).
    const ids = new Set<string>()
    for (let i = 0; i < 12; i++) ids.add(await insertPoisonBatch(b.org_id))
    const stop = new AbortController()
    const loops = [1, 2].map(() =>
      runConsumer({
        sql: db.app,
        consumer: 'pipeline',
        handle: HANDLERS.pipeline,
        log: testLog,
        signal: stop.signal,
        pollMs: 20,
        maxAttempts: 2,
        retryBaseMs: 0,
      }),
    )
    try {
      const dead = await eventually(
        () =>
          db.owner<{ message_id: string; attempts: number }[]>`
            select message_id, attempts from bus_dead_letters where org_id = ${b.org_id} and consumer = 'pipeline'`,
        (rows) => rows.filter((r) => ids.has(r.message_id)).length === ids.size,
      )
      expect(dead.filter((r) => ids.has(r.message_id)).map((r) => r.attempts)).toEqual([...ids].map(() => 2))
    } finally {
      stop.abort()
      await Promise.all(loops)
      // The other consumers' claims and these dead letters are of this test alone.
      await db.owner`delete from bus_pending where batch_id = any(${[...ids]}::bigint[])`
      await db.owner`delete from bus_batches where id = any(${[...ids]}::bigint[])`
      await db.owner`delete from bus_dead_letters where org_id = ${b.org_id} and message_id = any(${[...ids]}::text[])`
    }
  })

  test('a batch failing until its cause is fixed: dead-lettered, then redriven and applied exactly once', async () => {
    let broken = true
    const flaky: Handler = async (tx, batches) => {
      if (
        broken &&
        batches.some((x) => x.message.kind === 'events' && x.message.events.some((e) => e.toolName === 'needs-fix'))
      ) {
        throw new Error('simulated bug in the handler')
      }
      return HANDLERS.pipeline(tx, batches)
    }
    const stored = (tool: string) =>
      n('select count(*)::int as n from actions where org_id = $1 and tool_name = $2', a.org_id, tool)
    let deadLettered = 0
    await withConsumer(
      'pipeline',
      flaky,
      async () => {
        expect(
          (
            await t.call('POST', '/v1/ingest', {
              token: a.deploy_token,
              json: { events: [event('s', { tool_name: 'needs-fix' })] },
            })
          ).status,
        ).toBe(200)
        expect(
          (
            await t.call('POST', '/v1/ingest', {
              token: a.deploy_token,
              json: { events: [event('s', { tool_name: 'behind-it' })] },
            })
          ).status,
        ).toBe(200)
        await eventually(
          () => stored('behind-it'),
          (v) => v === 1,
        )
        await eventually(
          async () => deadLettered,
          (v) => v === 1,
        )
        const [row] =
          await db.owner`select attempts, error_class, error_message from bus_dead_letters where org_id = ${a.org_id} and consumer = 'pipeline' and error_message like 'simulated%'`
        expect(row).toMatchObject({ attempts: 3, error_class: 'Error', error_message: 'simulated bug in the handler' })
        expect(await stored('needs-fix')).toBe(0)
        // The cause fixed: the redrive applies it, once.
        broken = false
        const [dl] =
          await db.owner`select id from bus_dead_letters where org_id = ${a.org_id} and error_message like 'simulated%'`
        const res = await t.call('POST', `/v1/dead-letters/${dl!.id}/redrive`, { token: a.admin_key })
        expect(res.status).toBe(200)
        await eventually(
          () => stored('needs-fix'),
          (v) => v === 1,
        )
        expect((await t.call('POST', `/v1/dead-letters/${dl!.id}/redrive`, { token: a.admin_key })).status).toBe(404)
        const audit = await n(
          `select count(*)::int as n from audit_log where org_id = $1 and action = 'dead_letter.redrive' and target_id = $2`,
          a.org_id,
          dl!.id,
        )
        expect(audit).toBe(1)
      },
      { onDeadLetter: () => deadLettered++ },
    )
    expect(await stored('needs-fix')).toBe(1)
  }, 30_000)
})

describe('quint-cloud dead-letters (CLI, across orgs)', () => {
  const cli = async (...args: string[]) => {
    const proc = Bun.spawn([process.execPath, 'src/main.ts', 'dead-letters', ...args], {
      cwd: ROOT,
      env: { ...process.env, ...databaseEnv(db), LOG_LEVEL: 'warn', BUS: 'local' },
      stdout: 'pipe',
      stderr: 'pipe',
    })
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
    return { out, err, code }
  }

  test("lists every org's dead letters, redrives one by id and all of one org; bad usage exits 2", async () => {
    await insertPoisonBatch(b.org_id)
    await withConsumer(
      'sessions',
      HANDLERS.sessions,
      async () => {
        await eventually(
          () => n(`select count(*)::int as n from bus_dead_letters where org_id = $1`, b.org_id),
          (v) => v === 1,
        )
      },
      { maxAttempts: 1 },
    )
    const list = await cli('list', '--json')
    expect({ code: list.code, err: list.err }).toEqual({ code: 0, err: '' })
    const rows = JSON.parse(list.out) as { id: string; org_id: string; consumer: string }[]
    expect(new Set(rows.map((r) => r.org_id))).toEqual(new Set([a.org_id, b.org_id]))
    const onlyB = JSON.parse((await cli('list', '--org', b.org_id, '--json')).out) as { id: string }[]
    expect(onlyB.length).toBe(1)
    const one = await cli('redrive', '--id', onlyB[0]!.id, '--json')
    expect(one.code).toBe(0)
    expect(JSON.parse(one.out)).toMatchObject({ redriven: 1 })
    expect(await n(`select count(*)::int as n from bus_pending where org_id = $1 and consumer = 'sessions'`, b.org_id)).toBe(1)
    const all = await cli('redrive', '--all', '--org', a.org_id, '--json')
    expect(all.code).toBe(0)
    expect(JSON.parse(all.out)).toEqual({ redriven: rows.filter((r) => r.org_id === a.org_id).length, remaining: 0 })
    expect((await cli('redrive', '--id', crypto.randomUUID())).code).toBe(1)
    for (const bad of [
      ['redrive'],
      ['redrive', '--id', 'x'],
      ['list', '--org', 'nope'],
      ['purge'],
      ['list', '--consumer', 'x'],
    ]) {
      expect({ bad, code: (await cli(...bad)).code }).toEqual({ bad, code: 2 })
    }
  }, 60_000)
})

describe('every message can be set aside (issue 14, second review)', () => {
  /** A bus batch of `org` for one consumer, written as the bus writes it (its JSON keeps `\u0000`). */
  async function insertBatch(org: string, consumer: 'pipeline' | 'sessions', message: unknown): Promise<string> {
    const [row] = await db.owner<{ id: string }[]>`
      insert into bus_batches (org_id, kind, payload)
      values (${org}, ${(message as { kind: string }).kind}, ${encodePayload(message as BusMessage)}) returning id::text as id`
    await db.owner`insert into bus_pending (org_id, consumer, batch_id) values (${org}, ${consumer}, ${row!.id}::bigint)`
    return row!.id
  }
  const lifecycleMessage = (session: string, extra: Record<string, unknown>) => ({
    kind: 'lifecycle',
    receivedAt: new Date().toISOString(),
    lifecycle: { session_id: session, state: 'active', timestamp: new Date().toISOString(), ...extra },
  })

  test('a message holding \\u0000 or a lone surrogate is dead-lettered (jsonb refuses them), not retried forever', async () => {
    const id = await insertBatch(
      b.org_id,
      'sessions',
      lifecycleMessage(`nul-${crypto.randomUUID()}`, { note: 'a\u0000b', odd: 'x\ud800y' }),
    )
    const failing: Handler = async (_tx, batches) => {
      if (batches.some((x) => x.batchId === id)) throw new Error('simulated failure of a message holding NUL')
    }
    const orgErrors: unknown[] = []
    const dead: string[] = []
    for (let round = 0; round < 3; round++) {
      await drainOnce(db.app, 'sessions', failing, {
        maxAttempts: 2,
        retryBaseMs: 0,
        onOrgError: (_org, err) => orgErrors.push(err),
        onDeadLetter: (_org, batchId) => dead.push(batchId),
      })
    }
    // Before the fix the move failed with 22P05 on every round and the attempts climbed past the maximum.
    expect(orgErrors).toEqual([])
    expect(dead).toEqual([id])
    const [row] = await db.owner<{ attempts: number; payload: { lifecycle: Record<string, string> } }[]>`
      select attempts, payload from bus_dead_letters where org_id = ${b.org_id} and message_id = ${id}`
    expect(row!.attempts).toBe(2)
    expect(row!.payload.lifecycle.note).toBe('a\uFFFDb')
    expect(row!.payload.lifecycle.odd).toBe('x\uFFFDy')
    expect(await n('select count(*)::int as n from bus_pending where org_id = $1 and batch_id = $2', b.org_id, id)).toBe(0)
  })

  test('storableJson: only NUL and lone-surrogate escapes change; the SQS insert form (::text::jsonb) accepts the result', async () => {
    const text = JSON.stringify({
      nul: 'a\u0000b',
      lone: '\udc00',
      pair: '😀',
      literal: '\\u0000',
      escaped: '\\\u0000',
      '\u0000key': 1,
    })
    const out = storableJson(text)
    expect(JSON.parse(out)).toEqual({
      nul: 'a\uFFFDb',
      lone: '\uFFFD',
      pair: '😀',
      literal: '\\u0000',
      escaped: '\\\uFFFD',
      '\uFFFDkey': 1,
    })
    const [row] = await db.owner<{ v: unknown }[]>`select ${out}::text::jsonb as v`
    expect(row!.v).toEqual(JSON.parse(out))
    const plain = JSON.stringify({ a: 'no escapes at all', b: 'tab\there' })
    expect(storableJson(plain)).toBe(plain)
  })

  test("a dead-letter move that fails is logged and leaves the batch pending; the org's other batches are still applied in that round", async () => {
    // A database refusing the move for this one message (a trigger in the test database): the
    // move fails for a reason that is not an outage.
    await db.owner.unsafe(`
      create or replace function test_refuse_dead_letter() returns trigger language plpgsql as $$
      begin
        if new.error_message like 'refuse-move%' then raise exception 'dead letter refused for the test'; end if;
        return new;
      end $$;
      drop trigger if exists test_refuse_dead_letter on bus_dead_letters;
      create trigger test_refuse_dead_letter before insert on bus_dead_letters
        for each row execute function test_refuse_dead_letter();`)
    try {
      const poison = await insertBatch(b.org_id, 'pipeline', {
        kind: 'events',
        receivedAt: new Date().toISOString(),
        machineId: null,
        events: [],
      })
      const fine = await insertBatch(b.org_id, 'pipeline', {
        kind: 'events',
        receivedAt: new Date().toISOString(),
        machineId: null,
        events: [],
      })
      const applied: string[] = []
      const handler: Handler = async (_tx, batches) => {
        if (batches.some((x) => x.batchId === poison)) throw new Error('refuse-move: simulated handler failure')
        applied.push(...batches.map((x) => x.batchId))
      }
      const orgErrors: unknown[] = []
      const moveErrors: string[] = []
      await drainOnce(db.app, 'pipeline', handler, {
        maxAttempts: 1,
        // Not retried again within this round: one attempt, one failed move.
        retryBaseMs: 60_000,
        onOrgError: (_org, err) => orgErrors.push(err),
        onDeadLetterError: (_org, batchId) => moveErrors.push(batchId),
      })
      expect(orgErrors).toEqual([])
      expect(moveErrors).toEqual([poison])
      expect(applied).toContain(fine)
      // Still pending, with its attempt counted: the move is tried again after its next attempt.
      const [pending] = await db.owner<{ attempts: number }[]>`
        select attempts from bus_pending where org_id = ${b.org_id} and consumer = 'pipeline' and batch_id = ${poison}`
      expect(pending!.attempts).toBe(1)
      expect(
        await n('select count(*)::int as n from bus_dead_letters where org_id = $1 and message_id = $2', b.org_id, poison),
      ).toBe(0)
    } finally {
      await db.owner.unsafe('drop trigger if exists test_refuse_dead_letter on bus_dead_letters')
      await db.owner`delete from bus_pending where org_id = ${b.org_id} and consumer = 'pipeline'`
    }
  })
})
