/**
 * Every AWS call is bounded (issue 14), proven against the fauxqs emulator frozen with SIGSTOP:
 * the socket connects and the request is sent, but no answer ever comes (an endpoint that hangs,
 * not one that refuses). Ingest answers 503 with Retry-After within the bound instead of holding
 * the request for the whole outage; an SQS receive is abandoned at its deadline, and the retry
 * carries the same ReceiveRequestAttemptId; deletes are bounded too.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { CONSUMERS } from '../../src/bus/bus.ts'
import { SnsBus } from '../../src/bus/sns.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import {
  AwsCallError,
  createSnsClient,
  createSqsClient,
  deleteMessages,
  ensureTopology,
  type SNSClient,
  type SQSClient,
  type Topology,
} from '../../src/infra/aws.ts'
import { HANDLERS } from '../../src/bus/handlers.ts'
import { runSqsConsumer, sqsRound } from '../../src/bus/consume-sqs.ts'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, testLog, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'
import { startFauxqs, type Fauxqs } from '../helpers/fauxqs.ts'

process.env.AWS_ACCESS_KEY_ID ??= 'test'
process.env.AWS_SECRET_ACCESS_KEY ??= 'test'

const REGION = 'us-east-1'

let fauxqs: Fauxqs
let db: TestDatabase
let sns: SNSClient
let sqs: SQSClient
let topo: Topology
let a: CreatedOrg

beforeAll(async () => {
  // Its own emulator: freezing it must not stall other files' tests.
  fauxqs = await startFauxqs()
  const target = { region: REGION, endpoint: fauxqs.endpoint }
  sns = createSnsClient(target)
  sqs = createSqsClient(target, 1)
  topo = await ensureTopology(sns, sqs, {
    prefix: `quint-frozen-${crypto.randomUUID().slice(0, 8)}`,
    queues: CONSUMERS,
    visibilityTimeoutS: 30,
    maxReceiveCount: 10,
  })
  db = await testDatabase()
  a = await createOrg(db.app, 'org A', 'cli')
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  fauxqs?.thaw()
  sns?.destroy()
  sqs?.destroy()
  await db?.drop()
  await fauxqs?.stop()
}, HOOK_TIMEOUT_MS)

/** Freezes the emulator for `ms` while `fn` runs, and thaws it whatever happens. */
async function frozen<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  fauxqs.freeze()
  const thaw = setTimeout(() => fauxqs.thaw(), ms)
  try {
    return await fn()
  } finally {
    clearTimeout(thaw)
    fauxqs.thaw()
  }
}

describe('AWS calls against a frozen emulator', () => {
  test('ingest answers 503 with Retry-After within the 5 s bound, not after the outage', async () => {
    const t = testApp(db, {}, new SnsBus(sns, topo.topicArn, sqs))
    // Warm: a pooled socket to the emulator, as a running service has.
    expect((await t.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events: [v2Event()] } })).status).toBe(200)
    const OUTAGE_MS = 20_000
    const answers = await frozen(OUTAGE_MS, async () => {
      const started = Date.now()
      const [batch, life] = await Promise.all([
        t.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events: [v2Event()] } }),
        t.call('POST', '/v1/sessions/ingest', {
          token: a.deploy_token,
          json: { session_id: 'frozen-session', state: 'active', timestamp: new Date().toISOString() },
        }),
      ])
      return { batch, life, ms: Date.now() - started }
    })
    for (const res of [answers.batch, answers.life]) {
      expect(res.status).toBe(503)
      expect(res.body.code).toBe('unavailable')
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0)
    }
    // Bounded at 5 s; the margin is for a loaded machine, far below the 20 s outage.
    expect(answers.ms).toBeLessThan(10_000)
    // Thawed: accepted again.
    expect((await t.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events: [v2Event()] } })).status).toBe(200)
  }, 40_000)

  test('an SQS receive is abandoned at its deadline and the retry reuses its ReceiveRequestAttemptId', async () => {
    const seen: string[] = []
    const client = createSqsClient({ region: REGION, endpoint: fauxqs.endpoint }, 1)
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'ReceiveMessageCommand') {
          seen.push((args.input as { ReceiveRequestAttemptId?: string }).ReceiveRequestAttemptId ?? '')
        }
        return next(args)
      },
      { step: 'initialize', name: 'recordAttemptIds' },
    )
    const o = {
      sql: db.app,
      sqs: client,
      queueUrl: topo.queueUrls.pipeline!,
      consumer: 'pipeline' as const,
      handle: HANDLERS.pipeline,
      log: testLog,
      waitTimeS: 1,
      visibilityTimeoutS: 30,
    }
    try {
      // One round alone: a receive with a 1 s long poll gives up within its deadline (1 s + 5 s +
      // one retry's 2 s), as an AwsCallError.
      const err = await frozen(30_000, async () => {
        const started = Date.now()
        const e = await sqsRound(o).then(
          () => null,
          (x: unknown) => x,
        )
        return { e, ms: Date.now() - started }
      })
      expect(err.e).toBeInstanceOf(AwsCallError)
      expect(err.ms).toBeLessThan(15_000)

      // The loop: the first receive is abandoned while frozen; the next one carries the same id;
      // once a receive has answered, the next round gets a new one.
      seen.length = 0
      const stop = new AbortController()
      fauxqs.freeze()
      const loop = runSqsConsumer({ ...o, signal: stop.signal })
      try {
        const until = Date.now() + 20_000
        while (seen.length < 1 && Date.now() < until) await Bun.sleep(50)
        // Thawed after the first receive was given up (8 s), before the retry's answer is due.
        await Bun.sleep(9_000)
        fauxqs.thaw()
        while (seen.length < 4 && Date.now() < until + 10_000) await Bun.sleep(50)
      } finally {
        fauxqs.thaw()
        stop.abort()
        await loop
      }
      const ids = [...seen]
      expect(ids.length).toBeGreaterThanOrEqual(3)
      expect(ids[0]).not.toBe('')
      expect(ids[1]).toBe(ids[0]!)
      expect(ids.at(-1)).not.toBe(ids[0]!)
    } finally {
      client.destroy()
    }
  }, 60_000)

  test('a delete is bounded as well', async () => {
    const { e, ms } = await frozen(20_000, async () => {
      const started = Date.now()
      const x = await deleteMessages(sqs, topo.queueUrls.alerts!, ['not-a-real-handle']).then(
        () => null,
        (y: unknown) => y,
      )
      return { e: x, ms: Date.now() - started }
    })
    expect(e).toBeInstanceOf(AwsCallError)
    expect(ms).toBeLessThan(10_000)
  }, 30_000)
})
