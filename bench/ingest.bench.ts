/**
 * ingest (issue 13), three phases on one throw-away embedded Postgres (a benchmark never writes
 * into a DATABASE_URL):
 * 1. End to end through the real `serve` process and its three consumer threads: 8 senders POST
 *    500-event batches for the measuring time; the figure counts once actions, sessions and
 *    alerts have all caught up. Then p50/p99 of the ack of a 500-event batch at half that rate
 *    (open loop: sends are scheduled, not waited for).
 * 2. The front door alone: `serve` with QUINT_CONSUMERS=none (an API-only instance) on the same
 *    database; events durably acked per second.
 * 3. The baseline: one client COPYing as many events into the same tables (the ledger and
 *    `actions`) on the same Postgres, after the servers stopped.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { attachOwner, BATCH, batchBody, postBatch, rawCopy, startServer } from './lib/ingest-server.ts'
import { percentile, round } from './lib/measure.ts'
import { removeDataDir } from '../src/infra/embedded-postgres.ts'

export const name = 'ingest'

const SENDERS = 8

/** Most events/s a flood is expected to need bodies for (more are built while sending). */
const MAX_RATE = 60_000

/**
 * Sends from SENDERS loops until `ms` passed; the events sent. The bodies are built before the
 * clock starts: building one is a few ms of this process's CPU, taken from the server measured
 * on the same two cores.
 */
async function flood(server: { url: string; token: string }, runId: string, ms: number): Promise<number> {
  const ready = Array.from({ length: Math.ceil(((MAX_RATE * ms) / 1000 / BATCH) * 1.2) }, () => batchBody(runId))
  let events = 0
  const start = performance.now()
  await Promise.all(
    Array.from({ length: SENDERS }, async () => {
      while (performance.now() - start < ms) {
        await postBatch(server, ready.pop() ?? batchBody(runId))
        events += BATCH
      }
    }),
  )
  return events
}

export async function run(opts: { seconds: number }) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-bench-ingest-'))
  const runId = crypto.randomUUID().slice(0, 8)
  const measureMs = opts.seconds * 1000

  let server = await startServer(dataDir)
  const token = server.token
  const attached = await attachOwner(dataDir)
  const drained = attached.drained

  let e2e: { events: number; seconds: number; ackSeconds: number }
  let half: { rate: number; latencies: number[]; late: number }
  let door: { events: number; seconds: number }
  try {
    // Warm-up: JIT, connections, plans.
    for (let i = 0; i < 10; i++) await postBatch(server, batchBody(runId))
    await drained()

    // 1. Maximum rate, end to end: send for the measuring time, then wait until every consumer
    // (actions, sessions, alerts) has caught up.
    const start = performance.now()
    const events = await flood(server, runId, measureMs)
    const acked = performance.now()
    await drained()
    e2e = { events, seconds: (performance.now() - start) / 1000, ackSeconds: (acked - start) / 1000 }

    // Half of that rate, open loop: each batch leaves on schedule whatever the others do.
    const rate = e2e.events / e2e.seconds / 2
    const intervalMs = (BATCH / rate) * 1000
    // At least 200 batches: a p99 over fewer samples is just the maximum.
    const count = Math.max(200, Math.round(measureMs / intervalMs))
    const bodies = Array.from({ length: count }, () => batchBody(runId))
    const latencies: number[] = []
    let late = 0
    const t0 = performance.now()
    const inflight: Promise<void>[] = []
    for (let i = 0; i < count; i++) {
      const due = t0 + i * intervalMs
      const wait = due - performance.now()
      if (wait > 0) await Bun.sleep(wait)
      else if (wait < -intervalMs) late++
      inflight.push(postBatch(server, bodies[i]!).then((ms) => void latencies.push(ms)))
    }
    await Promise.all(inflight)
    await drained()
    latencies.sort((a, b) => a - b)
    half = { rate, latencies, late }

    // 2. The front door alone: an API-only instance on the same database.
    server.proc.kill('SIGTERM')
    await server.proc.exited
    server = await startServer(dataDir, { token, env: { QUINT_CONSUMERS: 'none' } })
    for (let i = 0; i < 10; i++) await postBatch(server, batchBody(runId))
    const doorStart = performance.now()
    door = { events: await flood(server, runId, measureMs), seconds: 0 }
    door.seconds = (performance.now() - doorStart) / 1000
  } finally {
    await attached.close()
    server.proc.kill('SIGTERM')
    await server.proc.exited
  }

  // 3. Baseline on the same database, the servers stopped.
  const { owner, close } = await attachOwner(dataDir)
  let raw: Awaited<ReturnType<typeof rawCopy>>
  try {
    const [org] = await owner<{ org_id: string }[]>`select org_id from actions limit 1`
    if (!org) throw new Error('the server stored nothing')
    raw = await rawCopy(owner, org.org_id, e2e.events, runId)
  } finally {
    await close()
    removeDataDir(dataDir)
  }

  const e2eRate = e2e.events / e2e.seconds
  const rawRate = raw.rows / raw.seconds
  const doorRate = door.events / door.seconds
  const p50 = percentile(half.latencies, 50)
  const p99 = percentile(half.latencies, 99)
  return {
    figures: {
      'ingest.events_per_s': round(e2eRate, 0),
      'ingest.raw_copy_rows_per_s': round(rawRate, 0),
      'ingest.ratio': round(e2eRate / rawRate, 3),
      'ingest.p50_ms_half_load': round(p50, 2),
      'ingest.p99_ms_half_load': round(p99, 2),
      'ingest.ack_events_per_s': round(doorRate, 0),
      'ingest.ack_events_per_s_with_consumers': round(e2e.events / e2e.ackSeconds, 0),
    },
    rows: [
      [
        'end to end: POST → actions, sessions, alerts caught up',
        `${round(e2eRate, 0)} events/s`,
        `${e2e.events} events in ${round(e2e.seconds, 2)} s`,
        `${SENDERS} senders × ${BATCH}-event batches`,
      ],
      ['  acks meanwhile (consumers running)', `${round(e2e.events / e2e.ackSeconds, 0)} events/s`, '', ''],
      [
        'baseline: one client COPY, same tables',
        `${round(rawRate, 0)} rows/s`,
        `${raw.rows} rows in ${round(raw.seconds, 2)} s`,
        'ledger + actions, one transaction',
      ],
      ['ratio end-to-end/raw', `${round(e2eRate / rawRate, 3)}`, '', 'target ≥ 0.6'],
      [
        'front door alone (QUINT_CONSUMERS=none), durably acked',
        `${round(doorRate, 0)} events/s`,
        `${door.events} events in ${round(door.seconds, 2)} s`,
        `${round(doorRate / rawRate, 2)} × raw COPY; target ≥ 50,000`,
      ],
      [
        `ack latency at half load (${round(half.rate, 0)} events/s)`,
        `p50 ${round(p50, 2)} ms`,
        `p99 ${round(p99, 2)} ms`,
        `${half.latencies.length} batches, ${half.late} sent late; target p99 ≤ 25 ms`,
      ],
    ],
  }
}
