/**
 * The local bus hands batches on from the pipeline to sessions and alerts (issue 13): what was
 * published before sql/0033 (to every consumer), dead letters and redrives across the change,
 * undecodable payloads, backlog and lag, and the skipped keys.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { applySessions } from '../../src/features/sessions/consumer.ts'
import { drainOnce, busBacklog, oldestPending } from '../../src/bus/consume-local.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { evaluateAlerts } from '../../src/features/alerts/consumer.ts'
import { LocalBus, type BusMessage } from '../../src/bus/bus.ts'
import { redriveOne } from '../../src/features/dead-letters/repo.ts'
import { withOrg } from '../../src/infra/db.ts'
import { wireEvents } from '../helpers/events.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg

beforeAll(async () => {
  ;({ db, t, a } = await twoOrgApp())
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

const pipeline = (o: Parameters<typeof drainOnce>[3] = {}) => drainOnce(db.app, 'pipeline', storeEvents, o)
const sessions = () => drainOnce(db.app, 'sessions', applySessions)
const alerts = () => drainOnce(db.app, 'alerts', evaluateAlerts)

async function eventCount(key: string): Promise<string | undefined> {
  const [row] = await db.owner<{ event_count: string }[]>`
    select event_count::text from sessions where org_id = ${a.org_id} and session_key = ${key}`
  return row?.event_count
}
const stored = async (key: string) =>
  (
    await db.owner<{ n: number }[]>`select count(*)::int as n from actions where org_id = ${a.org_id} and session_key = ${key}`
  )[0]!.n

/**
 * A batch as it is after sql/0033 converted a row written before it: its JSON text as bytes, and a
 * pending row for every consumer (the old LocalBus.publish).
 */
async function preMigrationBatch(message: BusMessage): Promise<string> {
  const [row] = await db.owner<{ id: string }[]>`
    insert into bus_batches (org_id, kind, payload)
    values (${a.org_id}, ${message.kind}, convert_to(${JSON.stringify(message)}::text::json::text, 'UTF8')) returning id::text as id`
  await db.owner`
    insert into bus_pending (org_id, consumer, batch_id)
    select ${a.org_id}, c, ${row!.id}::bigint from unnest(array['pipeline', 'sessions', 'alerts']) c`
  return row!.id
}

const eventsMessage = (session: string, n: number): BusMessage => ({
  kind: 'events',
  receivedAt: new Date().toISOString(),
  machineId: null,
  events: Array.from({ length: n }, () => wireEvents.v2({ session_id: session })),
})

describe('upgrade: batches pending before sql/0033', () => {
  beforeEach(async () => {
    await db.owner`delete from bus_pending where org_id = ${a.org_id}`
    await db.owner`delete from bus_dead_letters where org_id = ${a.org_id}`
  })
  test('pipeline first (sessions and alerts still pending): the events are stored', async () => {
    const s = `up-a-${crypto.randomUUID()}`
    await preMigrationBatch(eventsMessage(s, 2))
    const errors: unknown[] = []
    await pipeline({ onBatchError: (_o, _b, _n, err) => errors.push(err) })
    expect(errors.map((e) => String((e as Error).message))).toEqual([])
    expect(await stored(s)).toBe(2)
  })

  test('pipeline first, run again and again before sessions: never dead-lettered, stored once', async () => {
    const s = `up-a2-${crypto.randomUUID()}`
    await preMigrationBatch(eventsMessage(s, 2))
    let dead = 0
    for (let i = 0; i < 3; i++) await pipeline({ maxAttempts: 3, retryBaseMs: 0, onDeadLetter: () => dead++ })
    const [dl] = await db.owner<
      { n: number }[]
    >`select count(*)::int as n from bus_dead_letters where org_id = ${a.org_id} and consumer = 'pipeline'`
    expect({ dead, deadLetters: dl!.n, stored: await stored(s) }).toEqual({ dead: 0, deadLetters: 0, stored: 2 })
  })

  test('sessions first, then the pipeline: the session counts each event once', async () => {
    const s = `up-b-${crypto.randomUUID()}`
    await preMigrationBatch(eventsMessage(s, 2))
    await sessions()
    await alerts()
    expect(await eventCount(s)).toBe('2')
    await pipeline()
    await sessions()
    await alerts()
    expect(await stored(s)).toBe(2)
    expect(await eventCount(s)).toBe('2')
  })

  test('a pipeline dead letter written before the upgrade, redriven after: counted once', async () => {
    // Before the upgrade: sessions applied the batch (its own ledger); the pipeline dead-lettered it.
    await deadLetterRedrivenCountedOnce(`up-c-${crypto.randomUUID()}`, 'local', '999999')
  })
})

describe('BUS=sns then BUS=local', () => {
  test('a pipeline dead letter from an SQS queue, redriven on the local bus: sessions count it once', async () => {
    // On SNS the sessions queue got the same message and counted it (its own ledger).
    await deadLetterRedrivenCountedOnce(`sqs-${crypto.randomUUID()}`, 'https://sqs.example/quint-pipeline.fifo', 'm-1')
  })
})

/**
 * A pipeline dead letter from `source` whose message sessions already counted, redriven on the
 * local bus: stored once, and counted once by sessions.
 */
async function deadLetterRedrivenCountedOnce(session: string, source: string, messageId: string) {
  const message = eventsMessage(session, 2)
  await db.owner`
    insert into bus_dead_letters (org_id, consumer, source, message_id, kind, payload, attempts, error_class,
                                  error_message, first_failed_at, last_failed_at)
    values (${a.org_id}, 'pipeline', ${source}, ${messageId}, 'events', ${db.owner.json(message as never)}, 5, 'Error', 'x', now(), now())`
  await withOrg(db.app, a.org_id, (tx) => applySessions(tx, [{ batchId: messageId, message }]))
  expect(await eventCount(session)).toBe('2')
  const [dl] = await db.owner<{ id: string }[]>`
    select id from bus_dead_letters where org_id = ${a.org_id} and message_id = ${messageId}`
  await redriveOne(db.app, new LocalBus(), a.org_id, dl!.id)
  await pipeline()
  await sessions()
  expect(await stored(session)).toBe(2)
  expect(await eventCount(session)).toBe('2')
}

describe('corrupt payload', () => {
  test('a batch whose payload does not decode is still set aside (issue 14: every message can be)', async () => {
    const [row] = await db.owner<{ id: string }[]>`
      insert into bus_batches (org_id, kind, payload) values (${a.org_id}, 'events', '\\x28b52ffd00deadbeef'::bytea)
      returning id::text as id`
    await db.owner`insert into bus_pending (org_id, consumer, batch_id) values (${a.org_id}, 'pipeline', ${row!.id}::bigint)`
    const moveErrors: unknown[] = []
    let dead = 0
    for (let i = 0; i < 3; i++) {
      await pipeline({
        maxAttempts: 1,
        retryBaseMs: 0,
        onDeadLetter: () => dead++,
        onDeadLetterError: (_o, _b, err) => moveErrors.push(err),
      })
    }
    expect(moveErrors.map((e) => String((e as Error).message))).toEqual([])
    expect(dead).toBe(1)
    await db.owner`delete from bus_batches where org_id = ${a.org_id} and id = ${row!.id}::bigint`
  })
})

describe('backlog and lag', () => {
  test('an event accepted but not yet stored is in the sessions backlog', async () => {
    const s = `bl-${crypto.randomUUID()}`
    // Nothing waiting for anyone.
    await db.owner`delete from bus_pending where org_id = ${a.org_id}`
    expect(await busBacklog(db.app)).toEqual({ pipeline: 0, sessions: 0, alerts: 0 })
    const res = await t.call('POST', '/v1/ingest', {
      token: a.deploy_token,
      json: {
        events: [
          {
            schema_version: 2,
            event_id: crypto.randomUUID(),
            action_type: 'tools/call',
            session_id: s,
            decision: 'allow',
            timestamp: new Date().toISOString(),
          },
        ],
      },
    })
    expect(res.status).toBe(200)
    const backlog = await busBacklog(db.app)
    // Sessions and alerts have not derived from this event yet: their backlog and lag should say so.
    expect({ backlog, sessionsOldest: (await oldestPending(db.app, 'sessions')) !== null }).toEqual({
      backlog: { pipeline: 1, sessions: 1, alerts: 1 },
      sessionsOldest: true,
    })
  })
})

describe('skip_keys round trip', () => {
  test('a repeat across batches claimed together, with an odd event id, is counted once', async () => {
    await db.owner`delete from bus_pending where org_id = ${a.org_id}`
    const s = `rt-${crypto.randomUUID()}`
    const [{ max }] = (await db.owner<{ max: string }[]>`select coalesce(max(id), 0)::text as max from bus_batches`) as any
    const ev = (id: string) => ({
      schema_version: 2,
      event_id: id,
      action_type: 'tools/call',
      session_id: s,
      decision: 'allow',
      timestamp: new Date().toISOString(),
    })
    const odd = `x,"y\\z{} NULL ' é😀 ${crypto.randomUUID()}`
    const send = (events: unknown[]) => t.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events } })
    expect((await send([ev(odd)])).body.accepted).toBe(1)
    expect((await send([ev(odd), ev(`other-${crypto.randomUUID()}`)])).body.accepted).toBe(2)
    await pipeline()
    const rows = await db.owner<{ skip_keys: string[] | null }[]>`
      select skip_keys from bus_batches where org_id = ${a.org_id} and skip_keys is not null and id > ${max}::bigint order by id`
    expect(rows.map((r) => r.skip_keys)).toEqual([[], [`e:${odd}`]])
    await sessions()
    await alerts()
    expect(await eventCount(s)).toBe('2')
  })
})
