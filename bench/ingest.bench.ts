/**
 * ingest: events/s end to end (HTTP POST of 500-event batches → ack → committed rows in
 * `actions`) through the real `serve` process with its three consumer threads, beside the raw
 * rate of one client COPYing the same events into the same tables (`actions` and the dedupe
 * ledger) on the same Postgres in the same run. Then p50/p99 of the ack of a 500-event batch at
 * half the measured end-to-end rate (open loop: sends are scheduled, not waited for).
 *
 * The server runs on its own throw-away embedded Postgres (a benchmark never writes into a
 * DATABASE_URL); the raw COPY runs on that database after the server stopped.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { loadConfig } from '../src/config.ts'
import { openDatabase } from '../src/infra/database.ts'
import { createPool } from '../src/infra/db.ts'
import { createLogger } from '../src/infra/log.ts'
import { BATCH, batchBody, startServer } from './lib/ingest-server.ts'
import { percentile, round } from './lib/measure.ts'
import { removeDataDir } from '../src/infra/embedded-postgres.ts'

export const name = 'ingest'

const SENDERS = 8

export async function run(opts: { seconds: number }) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-bench-ingest-'))
  const server = await startServer(dataDir)
  const runId = crypto.randomUUID().slice(0, 8)
  const post = async (body: string) => {
    const t = performance.now()
    const res = await fetch(`${server.url}/v1/ingest`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
      body,
    })
    const out = (await res.json()) as { accepted?: number }
    if (res.status !== 200 || out.accepted !== BATCH)
      throw new Error(`ingest answered ${res.status}: ${JSON.stringify(out).slice(0, 300)}`)
    return performance.now() - t
  }
  // The backlog is read from the database, not from /metrics: a scrape every few milliseconds
  // (prom-client's default collectors) would itself take a good part of a core from the server.
  const log = createLogger('warn', 'stderr')
  const attached = await openDatabase(loadConfig({ QUINT_DATA_DIR: dataDir, QUINT_BOOTSTRAP_ORG: '' }), log)
  const probe = createPool(attached.ownerTarget, { max: 1 })
  const backlog = async (consumers: string[]) => {
    const [row] = await probe<{ n: number }[]>`select count(*)::int as n from bus_pending where consumer = any(${consumers})`
    return row!.n
  }
  const drained = async (consumers = ['pipeline']) => {
    while ((await backlog(consumers)) !== 0) await Bun.sleep(2)
  }

  let e2e: { events: number; seconds: number; ackSeconds: number; derivedSeconds: number }
  let half: { rate: number; latencies: number[]; late: number }
  let stored = 0
  try {
    // Warm-up: JIT, connections, plans.
    for (let i = 0; i < 10; i++) await post(batchBody(runId))
    await drained()

    // 1. Maximum rate, end to end: send for the measuring time, then wait for the last row.
    const measureMs = opts.seconds * 1000
    let events = 0
    const start = performance.now()
    const sender = async () => {
      while (performance.now() - start < measureMs) {
        await post(batchBody(runId))
        events += BATCH
      }
    }
    await Promise.all(Array.from({ length: SENDERS }, sender))
    const acked = performance.now()
    await drained()
    const stored = performance.now()
    // Sessions and alerts are not part of the figure (committed actions), but they ran during
    // it; when they caught up is reported beside it.
    await drained(['sessions', 'alerts'])
    e2e = {
      events,
      seconds: (stored - start) / 1000,
      ackSeconds: (acked - start) / 1000,
      derivedSeconds: (performance.now() - start) / 1000,
    }

    // 2. Half of that rate, open loop: each batch leaves on schedule whatever the others do.
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
      inflight.push(post(bodies[i]!).then((ms) => void latencies.push(ms)))
    }
    await Promise.all(inflight)
    await drained()
    latencies.sort((a, b) => a - b)
    half = { rate, latencies, late }
  } finally {
    await probe.end()
    await attached.close()
    server.proc.kill('SIGTERM')
    await server.proc.exited
  }

  // 3. Baseline on the same database: one client COPYing the same number of events into the
  // ledger and `actions`, in one transaction, as the owner (COPY FROM cannot run under RLS).
  const database = await openDatabase(loadConfig({ QUINT_DATA_DIR: dataDir, QUINT_BOOTSTRAP_ORG: '' }), log)
  const owner = createPool(database.ownerTarget, { max: 1 })
  let raw: { rows: number; seconds: number }
  try {
    const [counted] = await owner<{ org_id: string; n: number }[]>`
      select org_id, count(*)::int as n from actions group by org_id`
    if (!counted) throw new Error('the server stored nothing')
    const org_id = counted.org_id
    stored = counted.n
    const rows = e2e.events
    const now = new Date().toISOString()
    const ledger: string[] = []
    const actions: string[] = []
    for (let i = 0; i < rows; i++) {
      const id = crypto.randomUUID()
      const key = `e:raw-${runId}-${i}`
      ledger.push(`${org_id}\t${key}\t${id}\t${now}`)
      actions.push(
        [
          org_id,
          id,
          now,
          key,
          `raw-${runId}-${i}`,
          now,
          `raw-s${i % 64}`,
          `agent-${i % 16}`,
          '2',
          'proxy',
          'claude-code',
          'tools/call',
          'Read',
          `{"file_path": "/repo/src/module-${i % 997}.ts"}`,
          'allow',
          'f',
          String(i % 100),
          `{"process_name": "claude", "process_pid": "${40000 + (i % 16)}"}`,
          '{}',
          'f',
        ].join('\t'),
      )
    }
    const t = performance.now()
    await owner.begin(async (tx) => {
      for (const [sql, lines] of [
        [tx`copy event_keys (org_id, event_key, action_id, action_created_at) from stdin`, ledger],
        [
          tx`copy actions (org_id, id, created_at, event_key, event_id, occurred_at, session_key, agent_key, schema_version,
                          source, platform, action_type, tool_name, arguments, decision, blocked, risk_score, labels, extra,
                          redacted) from stdin`,
          actions,
        ],
      ] as const) {
        const stream = await sql.writable()
        await new Promise<void>((resolve, reject) => {
          stream.on('error', reject)
          stream.on('finish', resolve)
          stream.end(lines.join('\n') + '\n')
        })
      }
    })
    raw = { rows, seconds: (performance.now() - t) / 1000 }
  } finally {
    await owner.end()
    await database.close()
    removeDataDir(dataDir)
  }

  const e2eRate = e2e.events / e2e.seconds
  const rawRate = raw.rows / raw.seconds
  const p50 = percentile(half.latencies, 50)
  const p99 = percentile(half.latencies, 99)
  return {
    figures: {
      'ingest.events_per_s': round(e2eRate, 0),
      'ingest.raw_copy_rows_per_s': round(rawRate, 0),
      'ingest.ratio': round(e2eRate / rawRate, 3),
      'ingest.p50_ms_half_load': round(p50, 2),
      'ingest.p99_ms_half_load': round(p99, 2),
      'ingest.ack_events_per_s': round(e2e.events / e2e.ackSeconds, 0),
    },
    rows: [
      [
        'end to end: POST → committed actions',
        `${round(e2eRate, 0)} events/s`,
        `${e2e.events} events in ${round(e2e.seconds, 2)} s`,
        `${SENDERS} senders × ${BATCH}-event batches`,
      ],
      ['  acks alone', `${round(e2e.events / e2e.ackSeconds, 0)} events/s`, '', ''],
      ['  sessions and alerts caught up', `after ${round(e2e.derivedSeconds, 2)} s`, '', 'not part of the figure'],
      [
        'baseline: one client COPY, same tables',
        `${round(rawRate, 0)} rows/s`,
        `${raw.rows} rows in ${round(raw.seconds, 2)} s`,
        'ledger + actions, one transaction',
      ],
      ['ratio end-to-end/raw', `${round(e2eRate / rawRate, 3)}`, '', ''],
      [
        `ack latency at half load (${round(half.rate, 0)} events/s)`,
        `p50 ${round(p50, 2)} ms`,
        `p99 ${round(p99, 2)} ms`,
        `${half.latencies.length} batches, ${half.late} sent late`,
      ],
      ['rows stored by the server', `${stored}`, '', ''],
    ],
  }
}
