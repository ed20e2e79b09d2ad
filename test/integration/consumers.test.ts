/**
 * The consumer loop and its worker threads on real Postgres: NOTIFY wakes an idle consumer, a
 * failing org is retried without stalling the others, the database going away is survived, and
 * the thread pool derives actions, sessions and alerts from ingested events and stops cleanly.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { createMetrics } from '../../src/infra/metrics.ts'
import { drainOnce, runConsumer, type Claimed, type DrainOptions, type Handler } from '../../src/bus/consume-local.ts'
import { withOrg } from '../../src/infra/db.ts'
import { wireEvents } from '../helpers/events.ts'
import { ConsumerPool } from '../../src/bus/pool.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testLog, type TestDatabase } from '../helpers/db.ts'
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

const event = (session = 's-1', over: Record<string, unknown> = {}) => ({
  schema_version: 2,
  event_id: crypto.randomUUID(),
  timestamp: new Date().toISOString(),
  action_type: 'tools/call',
  session_id: session,
  agent_id: 'agent-1',
  tool_name: 'Bash',
  arguments_json: '{"command":"ls"}',
  decision: 'allow',
  ...over,
})
/** Sends like a daemon: a 503 (database unavailable) is retried with the same events. */
const ingest = async (token: string, events: unknown[]) => {
  for (let attempt = 0; ; attempt++) {
    const res = await t.call('POST', '/v1/ingest', { token, json: { events } })
    if (res.status === 503 && attempt < 5) {
      expect(res.headers.get('retry-after')).not.toBeNull()
      await Bun.sleep(100)
      continue
    }
    expect(res.status).toBe(200)
    return
  }
}
const count = async (sql: string, org: string): Promise<number> =>
  ((await db.owner.unsafe(sql, [org]))[0] as unknown as { n: number }).n

/** Runs a consumer while `fn` runs; it is stopped whatever `fn` does. */
async function withConsumer(handle: Handler, pollMs: number, fn: () => Promise<void>) {
  const stop = new AbortController()
  const running = runConsumer({ sql: db.app, consumer: 'pipeline', handle, log: testLog, signal: stop.signal, pollMs })
  try {
    await fn()
  } finally {
    stop.abort()
    await running
  }
}

const stored = (org: string) => count('select count(*)::int as n from actions where org_id = $1', org)

describe('runConsumer', () => {
  test('an idle consumer is woken by NOTIFY, not by its poll', async () => {
    // A one-minute poll: only the notification can make this test pass in time.
    await withConsumer(storeEvents, 60_000, async () => {
      await Bun.sleep(200) // let it reach its idle wait
      const before = await stored(a.org_id)
      await ingest(a.deploy_token, [event(), event()])
      await eventually(
        () => stored(a.org_id),
        (n) => n === before + 2,
        10_000,
      )
    })
  })

  test('a failing org is retried with backoff while the other orgs go on; nothing it claimed is lost', async () => {
    let failA = true
    const flaky: Handler = async (tx, batches) => {
      const [{ org }] = (await tx`select app_current_org()::text as org`) as any
      if (org === a.org_id && failA) throw new Error('simulated handler failure')
      return storeEvents(tx, batches)
    }
    await withConsumer(flaky, 50, async () => {
      const [beforeA, beforeB] = [await stored(a.org_id), await stored(b.org_id)]
      await ingest(a.deploy_token, [event()])
      await ingest(b.deploy_token, [event(), event()])
      await eventually(
        () => stored(b.org_id),
        (n) => n === beforeB + 2,
      )
      expect(await stored(a.org_id)).toBe(beforeA)
      failA = false
      await eventually(
        () => stored(a.org_id),
        (n) => n === beforeA + 1,
      )
    })
  })

  test('connections killed under it: the loop recovers and applies the work', async () => {
    // Reserved connections whose backend dies used to crash the process from a timer inside
    // postgres.js (porsager/postgres#1208), hang, or go back to the pool dead and fail every later
    // query; patches/postgres@3.4.9.patch fixes all three. Two rounds of kills, every connection.
    await withConsumer(storeEvents, 50, async () => {
      for (let round = 0; round < 2; round++) {
        await Bun.sleep(100 + round * 50)
        await db.owner`select pg_terminate_backend(pid) from pg_stat_activity where usename = 'quint_app' and datname = ${db.name}`
        const before = await stored(a.org_id)
        // The request path shares the pool whose connections just died: 503, then fine on retry.
        await ingest(a.deploy_token, [event()])
        await eventually(
          () => stored(a.org_id),
          (n) => n === before + 1,
        )
      }
    })
  })
})

describe('two loops of one consumer (issue 13)', () => {
  /** Applies every pipeline batch waiting (of any org), so a test starts from an empty backlog. */
  const drainAll = async (o: DrainOptions = {}) => {
    while ((await drainOnce(db.app, 'pipeline', storeEvents, o)) > 0) {}
  }

  test('claims skip the batches another loop is applying: disjoint, in order, and the second never waits', async () => {
    const ids = async () =>
      (
        await db.owner<{ id: string }[]>`
        select batch_id::text as id from bus_pending where org_id = ${b.org_id} and consumer = 'pipeline' order by batch_id`
      ).map((r) => r.id)
    await drainAll()
    for (let i = 0; i < 6; i++) await ingest(b.deploy_token, [event()])
    const pending = await ids()
    expect(pending.length).toBeGreaterThanOrEqual(6)
    const gate = Promise.withResolvers<void>()
    const inFirst = Promise.withResolvers<void>()
    let first: string[] = []
    const holding = drainOnce(
      db.app,
      'pipeline',
      async (tx, batches) => {
        first = batches.map((x) => x.batchId)
        inFirst.resolve()
        await gate.promise
        await storeEvents(tx, batches)
      },
      { batches: 3 },
    )
    await inFirst.promise
    let second: string[] = []
    await drainOnce(
      db.app,
      'pipeline',
      async (tx, batches) => {
        second = batches.map((x) => x.batchId)
        await storeEvents(tx, batches)
      },
      { batches: 3 },
    )
    // The second round committed while the first still held its claim.
    gate.resolve()
    await holding
    expect(first).toEqual(pending.slice(0, 3))
    expect(second).toEqual(pending.slice(3, 6))
  })

  test('a batch one loop is retrying is skipped by the other: one attempt counted per try, not two', async () => {
    await drainAll()
    await ingest(b.deploy_token, [event()])
    const attempts = async () =>
      (
        await db.owner<{ n: number }[]>`
        select attempts as n from bus_pending where org_id = ${b.org_id} and consumer = 'pipeline'`
      ).map((r) => r.n)
    const failing: Handler = async () => {
      throw new Error('simulated handler failure')
    }
    const retryNow = { retryBaseMs: 0 }
    // The first try, not yet due again (a second of backoff); then each loop retries at once.
    await drainOnce(db.app, 'pipeline', failing)
    expect(await attempts()).toEqual([1])
    const gate = Promise.withResolvers<void>()
    const inFirst = Promise.withResolvers<void>()
    const first = drainOnce(
      db.app,
      'pipeline',
      async () => {
        inFirst.resolve()
        await gate.promise
        throw new Error('simulated handler failure')
      },
      retryNow,
    )
    await inFirst.promise
    let ran = false
    const second = await drainOnce(
      db.app,
      'pipeline',
      async () => {
        ran = true
      },
      retryNow,
    )
    gate.resolve()
    await first
    expect({ second, ran }).toEqual({ second: 0, ran: false })
    expect(await attempts()).toEqual([2])
    await drainAll(retryNow)
  })

  test('pipeline transactions of one org store side by side; the chain lock is taken to link, not to store', async () => {
    const claimed = (events: Record<string, unknown>[]): Claimed[] => [
      {
        batchId: '0',
        message: {
          kind: 'events',
          receivedAt: new Date().toISOString(),
          machineId: null,
          events: events.map((e) => wireEvents.v2(e)),
        },
      },
    ]
    const parents = (n: number) =>
      Array.from({ length: n }, (_, i) => ({
        session_id: 'lock-s',
        labels: { process_name: 'claude', process_pid: String(5000 + i) },
      }))
    const child = { session_id: 'lock-s', action_type: 'PROCESS_EXEC', tool_name: 'ls', labels: { pid: '6001', ppid: '5000' } }
    /** What a second transaction holds once it waits behind the first: the tables it wrote, and the lock it waits for. */
    const secondWaits = async (batch: Claimed[]) => {
      const gate = Promise.withResolvers<void>()
      const inFirst = Promise.withResolvers<void>()
      const first = withOrg(db.app, a.org_id, async (tx) => {
        await storeEvents(tx, claimed(parents(3)))
        inFirst.resolve()
        await gate.promise
      })
      await inFirst.promise
      let pid = 0
      const second = withOrg(db.app, a.org_id, async (tx) => {
        pid = (await tx<{ p: number }[]>`select pg_backend_pid() as p`)[0]!.p
        await storeEvents(tx, batch)
      })
      const locks = await eventually(
        () =>
          db.owner<{ what: string; granted: boolean }[]>`
            select coalesce(c.relname, l.locktype) as what, l.granted from pg_locks l left join pg_class c on c.oid = l.relation
             where l.pid = ${pid} and (not l.granted or c.relname in ('event_keys', 'actions'))`,
        (rows) => rows.some((r) => !r.granted),
      )
      gate.resolve()
      await Promise.all([first, second])
      return {
        waitsFor: locks.filter((r) => !r.granted).map((r) => r.what),
        wrote: locks
          .filter((r) => r.granted)
          .map((r) => r.what)
          .sort(),
      }
    }
    // Parents only: the ledger and the actions are written before the wait, which is for the chain
    // (to adopt) and no longer for the org as a whole.
    expect(await secondWaits(claimed(parents(2)))).toEqual({ waitsFor: ['advisory'], wrote: ['actions', 'event_keys'] })
    // A child to link: it waits for the chain before planning, so before its actions are written.
    expect(await secondWaits(claimed([child]))).toEqual({ waitsFor: ['advisory'], wrote: ['event_keys'] })
    const links = await db.owner<{ parent_link: string | null }[]>`
      select parent_link from actions where org_id = ${a.org_id} and session_key = 'lock-s' and action_type = 'PROCESS_EXEC'`
    expect(links.map((r) => r.parent_link)).toEqual(['time_window'])
  })
})

describe('ConsumerPool (worker threads)', () => {
  test('three threads derive actions, sessions and alerts; stop() waits for them', async () => {
    const metrics = createMetrics()
    const pool = new ConsumerPool(
      ['pipeline', 'sessions', 'alerts'],
      {
        target: db.appTarget,
        statementTimeoutMs: 30_000,
        acquireTimeoutMs: 5_000,
        logLevel: 'silent',
        pollMs: 100,
        maxAttempts: 5,
      },
      testLog,
      metrics,
    )
    pool.start()
    try {
      const session = `pool-${crypto.randomUUID()}`
      const before = await stored(a.org_id)
      await ingest(a.deploy_token, [event(session), event(session, { risk_score: 95 }), event(session, { decision: 'block' })])
      await eventually(
        () => stored(a.org_id),
        (n) => n === before + 3,
      )
      await eventually(
        () =>
          count(
            `select coalesce(max(event_count), 0)::int as n from sessions where org_id = $1 and session_key = '${session}'`,
            a.org_id,
          ),
        (n) => n === 3,
      )
      await eventually(
        () => count(`select count(*)::int as n from alerts where org_id = $1 and session_key = '${session}'`, a.org_id),
        (n) => n >= 2,
      )
      // Every batch was taken by all three consumers and then removed.
      await eventually(
        () => count('select count(*)::int as n from bus_batches where org_id = $1', a.org_id),
        (n) => n === 0,
      )
      // Threads report what they applied by message, a moment after committing it.
      await eventually(
        async () =>
          (await metrics.registry.getSingleMetric('quint_consumer_batches_total')!.get()).values
            .map((v) => v.labels.consumer)
            .sort(),
        (consumers) => consumers.join() === 'alerts,pipeline,sessions',
      )
    } finally {
      await pool.stop()
    }
    // Stopped threads closed their connections.
    await eventually(
      () =>
        count(
          `select count(*)::int as n from pg_stat_activity where application_name like 'quint-cloud:%' and datname = $1`,
          db.name,
        ),
      (n) => n === 0,
    )
  })
})
