/**
 * The cluster-mode bus end to end: the real HTTP app publishes through the real @aws-sdk SNS
 * client to the fauxqs emulator (SNS FIFO topic → three SQS FIFO queues, raw delivery), and the
 * real consumer loop applies the real handlers to real Postgres. Proves: acked batches land once
 * and derive sessions and alerts (worker threads included); duplicates (a re-sent batch, a
 * redelivery after commit but before delete) are applied once; a request above SNS's 256 KiB is
 * split and stored whole; SNS unreachable is a 503 with Retry-After and nothing acked; two orgs
 * sending the same event ids never mix; a Postgres outage longer than maxReceiveCount visibility
 * periods sends nothing to the dead-letter queue; a message failing in its handler is set aside
 * in bus_dead_letters after BUS_MAX_ATTEMPTS receives while the org's later messages go on, and
 * its redrive goes back to that consumer's queue only.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { CONSUMERS, type ConsumerName } from '../../src/bus/bus.ts'
import { SnsBus } from '../../src/bus/sns.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import {
  createSnsClient,
  createSqsClient,
  ensureTopology,
  queueDepth,
  type SNSClient,
  type SQSClient,
  type Topology,
} from '../../src/infra/aws.ts'
import { createPool } from '../../src/infra/db.ts'
import { createMetrics } from '../../src/infra/metrics.ts'
import type { Handler } from '../../src/bus/consume-local.ts'
import { HANDLERS } from '../../src/bus/handlers.ts'
import { ConsumerPool } from '../../src/bus/pool.ts'
import { runSqsConsumer, sqsBacklog } from '../../src/bus/consume-sqs.ts'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, testLog, type TestDatabase } from '../helpers/db.ts'
import { startFauxqs, type Fauxqs } from '../helpers/fauxqs.ts'
import { freePort } from '../helpers/process.ts'
import { eventually } from '../helpers/wait.ts'

// The SDK wants credentials; the emulator accepts any. Worker threads inherit the environment.
process.env.AWS_ACCESS_KEY_ID ??= 'test'
process.env.AWS_SECRET_ACCESS_KEY ??= 'test'

const REGION = 'us-east-1'
/** Short, so that the redelivery test does not wait long; other runs receive with 30 s. */
const SHORT_VISIBILITY_S = 2

let fauxqs: Fauxqs
let db: TestDatabase
let sns: SNSClient
let sqs: SQSClient
let topo: Topology
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg

beforeAll(async () => {
  fauxqs = await startFauxqs()
  const target = { region: REGION, endpoint: fauxqs.endpoint }
  sns = createSnsClient(target)
  sqs = createSqsClient(target, 1)
  topo = await ensureTopology(sns, sqs, {
    prefix: `quint-test-${crypto.randomUUID().slice(0, 8)}`,
    queues: CONSUMERS,
    visibilityTimeoutS: SHORT_VISIBILITY_S,
    maxReceiveCount: 10,
  })
  db = await testDatabase()
  t = testApp(db, {}, new SnsBus(sns, topo.topicArn))
  a = await createOrg(db.app, 'org A', 'cli')
  b = await createOrg(db.app, 'org B', 'cli')
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  sns?.destroy()
  sqs?.destroy()
  await db?.drop()
  await fauxqs?.stop()
}, HOOK_TIMEOUT_MS)

const event = (session: string, over: Record<string, unknown> = {}) => ({
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

const ingest = (token: string, events: unknown[]) => t.call('POST', '/v1/ingest', { token, json: { events } })

const n = async (sql: string, ...params: unknown[]): Promise<number> =>
  ((await db.owner.unsafe(sql, params as never[]))[0] as unknown as { n: number }).n

const backlog = () => sqsBacklog(sqs, topo.queueUrls)
const drained = (d: Record<string, number>) => CONSUMERS.every((c) => d[c] === 0)

/** The three consumer loops (in this thread) while `fn` runs; stopped whatever `fn` does. */
async function withConsumers(
  fn: () => Promise<void>,
  o: {
    client?: SQSClient
    visibilityTimeoutS?: number
    wrap?: (c: ConsumerName, h: Handler) => Handler
    maxAttempts?: number
    onDeadLetter?: (c: ConsumerName) => void
  } = {},
) {
  const stop = new AbortController()
  const runs = CONSUMERS.map((c) =>
    runSqsConsumer({
      sql: db.app,
      sqs: o.client ?? sqs,
      queueUrl: topo.queueUrls[c]!,
      consumer: c,
      handle: o.wrap ? o.wrap(c, HANDLERS[c]) : HANDLERS[c],
      log: testLog,
      signal: stop.signal,
      waitTimeS: 1,
      visibilityTimeoutS: o.visibilityTimeoutS ?? 30,
      ...(o.maxAttempts ? { maxAttempts: o.maxAttempts, retryBaseMs: 200 } : {}),
      ...(o.onDeadLetter ? { onDeadLetter: () => o.onDeadLetter!(c) } : {}),
    }),
  )
  try {
    await fn()
  } finally {
    stop.abort()
    await Promise.all(runs)
  }
}

const actions = (org: string) => n('select count(*)::int as n from actions where org_id = $1', org)
const sessionCount = (org: string, session: string) =>
  n('select coalesce(max(event_count), 0)::int as n from sessions where org_id = $1 and session_key = $2', org, session)
const alertCount = (org: string, session: string) =>
  n('select count(*)::int as n from alerts where org_id = $1 and session_key = $2', org, session)

describe('cluster bus (SNS FIFO → SQS FIFO, fauxqs)', () => {
  test('an acked batch lands once in actions; worker threads derive sessions and alerts', async () => {
    const metrics = createMetrics({ backlog })
    const pool = new ConsumerPool(
      ['pipeline', 'sessions', 'alerts'],
      {
        target: db.appTarget,
        statementTimeoutMs: 30_000,
        acquireTimeoutMs: 5_000,
        logLevel: 'silent',
        pollMs: 100,
        maxAttempts: 5,
        sqs: {
          target: { region: REGION, endpoint: fauxqs.endpoint },
          queueUrls: topo.queueUrls,
          waitTimeS: 1,
          visibilityTimeoutS: 30,
        },
      },
      testLog,
      metrics,
    )
    const session = `pool-${crypto.randomUUID()}`
    const before = await actions(a.org_id)
    const res = await ingest(a.deploy_token, [
      event(session),
      event(session, { risk_score: 95 }),
      event(session, { decision: 'block' }),
    ])
    expect(res.status).toBe(200)
    expect(res.body.accepted).toBe(3)
    // Acked means published: every consumer's queue holds the batch before any consumer runs.
    expect(await backlog()).toEqual({ pipeline: 1, sessions: 1, alerts: 1 })
    expect(await metrics.registry.getSingleMetricAsString('quint_bus_pending_batches')).toContain('consumer="pipeline"} 1')
    pool.start()
    try {
      await eventually(
        () => actions(a.org_id),
        (v) => v === before + 3,
      )
      await eventually(
        () => sessionCount(a.org_id, session),
        (v) => v === 3,
      )
      await eventually(
        () => alertCount(a.org_id, session),
        (v) => v >= 2,
      )
      await eventually(backlog, drained)
      expect(await actions(a.org_id)).toBe(before + 3)
    } finally {
      await pool.stop()
    }
  })

  test('the same batch published twice is stored and counted once', async () => {
    const session = `twice-${crypto.randomUUID()}`
    const events = [event(session), event(session, { risk_score: 90 })]
    const before = await actions(a.org_id)
    // Nothing consumed yet, so the ledger cannot answer "duplicate": both requests publish.
    for (let i = 0; i < 2; i++) {
      const res = await ingest(a.deploy_token, events)
      expect(res.status).toBe(200)
      expect(res.body.accepted).toBe(2)
    }
    // Same org and content → same MessageDeduplicationId → one message per queue.
    expect(await backlog()).toEqual({ pipeline: 1, sessions: 1, alerts: 1 })
    await withConsumers(async () => {
      await eventually(backlog, drained)
    })
    expect(await actions(a.org_id)).toBe(before + 2)
    expect(await sessionCount(a.org_id, session)).toBe(2)
  })

  test('a redelivery after commit but before delete changes nothing', async () => {
    const session = `redeliver-${crypto.randomUUID()}`
    const stats = () => n('select coalesce(sum(stored), 0)::int as n from org_ingest_stats where org_id = $1', a.org_id)
    const [beforeActions, beforeStats] = [await actions(a.org_id), await stats()]
    const res = await ingest(a.deploy_token, [
      event(session),
      event(session, { risk_score: 95 }),
      event(session, { decision: 'block' }),
    ])
    expect(res.status).toBe(200)

    // A consumer that dies between commit and delete, as SQS sees it: every delete fails.
    const failing = createSqsClient({ region: REGION, endpoint: fauxqs.endpoint }, 1)
    failing.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'DeleteMessageBatchCommand') throw new Error('injected: connection reset before delete')
        return next(args)
      },
      { step: 'initialize', name: 'failDeletes' },
    )
    try {
      await withConsumers(
        async () => {
          await eventually(
            () => actions(a.org_id),
            (v) => v === beforeActions + 3,
          )
          await eventually(
            () => sessionCount(a.org_id, session),
            (v) => v === 3,
          )
          await eventually(
            () => alertCount(a.org_id, session),
            (v) => v >= 2,
          )
        },
        { client: failing, visibilityTimeoutS: SHORT_VISIBILITY_S },
      )
    } finally {
      failing.destroy()
    }
    const alertsAfterFirst = await alertCount(a.org_id, session)
    // Committed but not deleted: still in every queue.
    expect(await backlog()).toEqual({ pipeline: 1, sessions: 1, alerts: 1 })

    // The messages come back after the visibility timeout and are applied again, as no-ops.
    const seen: Record<string, number> = { pipeline: 0, sessions: 0, alerts: 0 }
    await withConsumers(
      async () => {
        await eventually(backlog, drained)
      },
      {
        wrap: (c, h) => async (tx, batches) => {
          seen[c]! += batches.length
          return h(tx, batches)
        },
      },
    )
    expect(seen).toEqual({ pipeline: 1, sessions: 1, alerts: 1 })
    expect(await actions(a.org_id)).toBe(beforeActions + 3)
    expect(await stats()).toBe(beforeStats + 3)
    expect(await sessionCount(a.org_id, session)).toBe(3)
    expect(await alertCount(a.org_id, session)).toBe(alertsAfterFirst)
    expect(
      await n(
        'select coalesce(max(event_count), 0)::int as n from agents where org_id = $1 and agent_key = $2',
        a.org_id,
        'agent-1',
      ),
    ).toBe(await n(`select count(*)::int as n from actions where org_id = $1 and agent_key = 'agent-1'`, a.org_id))
  })

  test('a request above 256 KiB is split into parts and stored whole', async () => {
    const session = `big-${crypto.randomUUID()}`
    const filler = 'x'.repeat(3000)
    const events = Array.from({ length: 250 }, (_, i) => event(session, { arguments_json: JSON.stringify({ i, filler }) }))
    const bytes = JSON.stringify({ events }).length
    expect(bytes).toBeGreaterThan(700 * 1024)
    const before = await actions(a.org_id)
    const res = await ingest(a.deploy_token, events)
    expect(res.status).toBe(200)
    expect(res.body.accepted).toBe(250)
    const parts = (await backlog()).pipeline!
    expect(parts).toBeGreaterThanOrEqual(3)

    // One event too big for a part on its own travels compressed; an incompressible one is refused.
    const huge = event(session, { arguments_json: JSON.stringify({ blob: 'ab'.repeat(200_000) }) })
    expect((await ingest(a.deploy_token, [huge])).status).toBe(200)
    const random = Buffer.from(crypto.getRandomValues(new Uint8Array(300_000))).toString('hex')
    const refused = await ingest(a.deploy_token, [event(session, { arguments_json: JSON.stringify({ random }) })])
    expect(refused.status).toBe(413)
    expect(refused.body.code).toBe('event_too_large')

    await withConsumers(async () => {
      await eventually(
        () => actions(a.org_id),
        (v) => v === before + 251,
      )
      await eventually(backlog, drained)
    })
    expect(await actions(a.org_id)).toBe(before + 251)
    expect(await sessionCount(a.org_id, session)).toBe(251)
    const [row] = await db.owner`select arguments from actions where org_id = ${a.org_id} and event_id = ${huge.event_id}`
    expect((row!.arguments as { blob: string }).blob.length).toBe(400_000)
    const same = await n(
      `select count(*)::int as n from actions where org_id = $1 and session_key = $2 and arguments->>'filler' = $3`,
      a.org_id,
      session,
      filler,
    )
    expect(same).toBe(250)
  })

  test('SNS unreachable: 503 with Retry-After, nothing acked', async () => {
    const dead = createSnsClient({ region: REGION, endpoint: `http://127.0.0.1:${await freePort()}` })
    const down = testApp(db, {}, new SnsBus(dead, topo.topicArn))
    try {
      const e = event(`down-${crypto.randomUUID()}`)
      const started = Date.now()
      const res = await down.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events: [e] } })
      expect(res.status).toBe(503)
      expect(res.body.code).toBe('unavailable')
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0)
      expect(Date.now() - started).toBeLessThan(15_000)
      const life = await down.call('POST', '/v1/sessions/ingest', {
        token: a.deploy_token,
        json: { session_id: 'down-session', state: 'active', timestamp: new Date().toISOString() },
      })
      expect(life.status).toBe(503)
      // Nothing reached the queues; the retry to the working bus is accepted, not "duplicate".
      expect(await backlog()).toEqual({ pipeline: 0, sessions: 0, alerts: 0 })
      const retry = await ingest(a.deploy_token, [e])
      expect(retry.body.results[0].status).toBe('accepted')
      await withConsumers(async () => {
        await eventually(backlog, drained)
      })
      expect(await n('select count(*)::int as n from actions where org_id = $1 and event_id = $2', a.org_id, e.event_id)).toBe(1)
    } finally {
      dead.destroy()
    }
  })

  test('two orgs sending the same event ids at once never mix', async () => {
    const ids = Array.from({ length: 40 }, () => crypto.randomUUID())
    const session = `shared-${crypto.randomUUID()}`
    const batch = (tool: string) => ids.map((event_id) => event(session, { event_id, tool_name: tool }))
    const [beforeA, beforeB] = [await actions(a.org_id), await actions(b.org_id)]
    const [ra, rb] = await Promise.all([ingest(a.deploy_token, batch('tool-of-A')), ingest(b.deploy_token, batch('tool-of-B'))])
    expect([ra.status, rb.status]).toEqual([200, 200])
    expect([ra.body.accepted, rb.body.accepted]).toEqual([40, 40])
    // Same event keys, different orgs: different dedupe ids, so neither suppresses the other.
    expect(await backlog()).toEqual({ pipeline: 2, sessions: 2, alerts: 2 })
    await withConsumers(async () => {
      await eventually(backlog, drained)
    })
    expect(await actions(a.org_id)).toBe(beforeA + 40)
    expect(await actions(b.org_id)).toBe(beforeB + 40)
    const tools = async (org: string) =>
      (await db.owner`select distinct tool_name from actions where org_id = ${org} and event_id = any(${ids})`).map(
        (r) => r.tool_name,
      )
    expect(await tools(a.org_id)).toEqual(['tool-of-A'])
    expect(await tools(b.org_id)).toEqual(['tool-of-B'])
    expect(await sessionCount(a.org_id, session)).toBe(40)
    expect(await sessionCount(b.org_id, session)).toBe(40)
  })

  test('a Postgres outage of many visibility periods sends nothing to the dead-letter queue', async () => {
    // Its own queues: one visibility second and a DLQ after 2 receives, so that receiving during
    // the outage would move the message within a few seconds.
    const small = await ensureTopology(sns, sqs, {
      prefix: `quint-outage-${crypto.randomUUID().slice(0, 8)}`,
      queues: CONSUMERS,
      visibilityTimeoutS: 1,
      maxReceiveCount: 2,
    })
    const dlq = small.queueUrls.pipeline!.replace(/-pipeline\.fifo$/, '-pipeline-dlq.fifo')
    const app = testApp(db, {}, new SnsBus(sns, small.topicArn))
    const e = event(`outage-${crypto.randomUUID()}`)
    const res = await app.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events: [e] } })
    expect(res.status).toBe(200)
    expect(res.body.accepted).toBe(1)

    const run = async (sql: typeof db.app, ms: number) => {
      const stop = new AbortController()
      let applied = 0
      const loop = runSqsConsumer({
        sql,
        sqs,
        queueUrl: small.queueUrls.pipeline!,
        consumer: 'pipeline',
        handle: HANDLERS.pipeline,
        log: testLog,
        signal: stop.signal,
        waitTimeS: 1,
        visibilityTimeoutS: 1,
        onApplied: (k) => (applied += k),
      })
      await Bun.sleep(ms)
      stop.abort()
      await loop
      return applied
    }
    // Postgres down: nobody listens on this port. Six visibility periods, three times the DLQ's count.
    const down = createPool({ url: `postgres://quint_app@127.0.0.1:${await freePort()}/quint` }, { max: 2 })
    try {
      expect(await run(down, 6_000)).toBe(0)
    } finally {
      await down.end({ timeout: 1 })
    }
    expect(await queueDepth(sqs, dlq)).toBe(0)
    // Postgres back: the event is applied, nothing is dead-lettered.
    const stored = () => n('select count(*)::int as n from actions where org_id = $1 and event_id = $2', a.org_id, e.event_id)
    const stop = new AbortController()
    const loop = runSqsConsumer({
      sql: db.app,
      sqs,
      queueUrl: small.queueUrls.pipeline!,
      consumer: 'pipeline',
      handle: HANDLERS.pipeline,
      log: testLog,
      signal: stop.signal,
      waitTimeS: 1,
      visibilityTimeoutS: 30,
    })
    try {
      await eventually(stored, (v) => v === 1, 10_000)
      await eventually(
        () => queueDepth(sqs, small.queueUrls.pipeline!),
        (v) => v === 0,
        10_000,
      )
    } finally {
      stop.abort()
      await loop
    }
    expect(await queueDepth(sqs, dlq)).toBe(0)
  }, 30_000)

  test('a stalling SNS holds no database connection: the pool still answers at once', async () => {
    const STALL_MS = 1_500
    // SNS that answers every request late, with a 500 (the SDK retries it: 3 attempts).
    const stalling = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      async fetch() {
        await Bun.sleep(STALL_MS)
        return new Response('stalled', { status: 500 })
      },
    })
    const slowSns = createSnsClient({ region: REGION, endpoint: `http://127.0.0.1:${stalling.port}` })
    const small = createPool(db.appTarget, { max: 2 })
    const app = testApp({ ...db, app: small }, {}, new SnsBus(slowSns, topo.topicArn))
    try {
      const send = (s: string) => app.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events: [event(s)] } })
      const life = app.call('POST', '/v1/sessions/ingest', {
        token: a.deploy_token,
        json: { session_id: 'stall-session', state: 'active', timestamp: new Date().toISOString() },
      })
      const pending = [send(`stall-1-${crypto.randomUUID()}`), send(`stall-2-${crypto.randomUUID()}`), life]
      await Bun.sleep(400) // authenticated, ledger checked, now waiting on SNS
      const started = performance.now()
      await small`select 1`
      const waited = performance.now() - started
      expect(waited).toBeLessThan(STALL_MS / 3)
      const statuses = (await Promise.all(pending)).map((r) => r.status)
      expect(statuses).toEqual([503, 503, 503])
    } finally {
      slowSns.destroy()
      stalling.stop(true)
      await small.end({ timeout: 1 })
    }
  }, 30_000)
  test('a failing message is dead-lettered after BUS_MAX_ATTEMPTS receives; later ones go on; redrive re-applies it once fixed', async () => {
    const app = testApp(db, {}, new SnsBus(sns, topo.topicArn, sqs))
    let broken = true
    const wrap =
      (c: ConsumerName, h: Handler): Handler =>
      async (tx, batches) => {
        const poisoned = batches.some(
          (x) => x.message.kind === 'events' && x.message.events.some((e) => e.toolName === 'needs-fix'),
        )
        if (c === 'pipeline' && broken && poisoned) throw new Error('simulated bug in the pipeline handler')
        return h(tx, batches)
      }
    const stored = (tool: string) =>
      n('select count(*)::int as n from actions where org_id = $1 and tool_name = $2', a.org_id, tool)
    const session = `dl-${crypto.randomUUID()}`
    expect((await ingest(a.deploy_token, [event(session, { tool_name: 'needs-fix' })])).status).toBe(200)
    expect((await ingest(a.deploy_token, [event(session, { tool_name: 'behind-it' })])).status).toBe(200)
    const dead: string[] = []
    await withConsumers(
      async () => {
        // Same org, same FIFO group: the later message is applied while the failing one backs off.
        await eventually(
          () => stored('behind-it'),
          (v) => v === 1,
        )
        await eventually(
          async () => dead.length,
          (v) => v === 1,
          30_000,
        )
        await eventually(backlog, drained)
      },
      { wrap, maxAttempts: 2, onDeadLetter: (c) => dead.push(c) },
    )
    expect(dead).toEqual(['pipeline'])
    expect(await stored('needs-fix')).toBe(0)
    expect(await sessionCount(a.org_id, session)).toBe(2)
    const list = await app.call('GET', '/v1/dead-letters?consumer=pipeline', { token: a.admin_key })
    const dl = list.body.dead_letters.find(
      (d: { error_message: string }) => d.error_message === 'simulated bug in the pipeline handler',
    )
    expect(dl).toMatchObject({
      source: 'sqs',
      consumer: 'pipeline',
      kind: 'events',
      events: 1,
      attempts: 2,
      error_class: 'Error',
    })
    expect((await app.call('GET', '/v1/dead-letters', { token: b.admin_key })).body.dead_letters).toEqual([])

    // Fixed; the redrive goes back to the pipeline's queue only, and is applied once.
    broken = false
    const res = await app.call('POST', `/v1/dead-letters/${dl.id}/redrive`, { token: a.admin_key })
    expect(res.status).toBe(200)
    expect(await backlog()).toEqual({ pipeline: 1, sessions: 0, alerts: 0 })
    await withConsumers(
      async () => {
        await eventually(
          () => stored('needs-fix'),
          (v) => v === 1,
        )
        await eventually(backlog, drained)
      },
      { wrap, maxAttempts: 2 },
    )
    expect(await stored('needs-fix')).toBe(1)
    expect(await sessionCount(a.org_id, session)).toBe(2)
    expect(await n('select count(*)::int as n from bus_dead_letters where org_id = $1 and id = $2', a.org_id, dl.id)).toBe(0)
  }, 60_000)
})
