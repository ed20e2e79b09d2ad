/**
 * Where the CPU of ingest goes: `bun bench/ingest-cpu.ts [batches=200]` runs the real `serve`
 * process, sends 500-event batches from 8 senders, waits until every consumer drained, and
 * prints CPU time per 1,000 events for each thread of the server and each Postgres backend
 * (named by application_name), read from /proc before and after; then, on the same database, one
 * client COPYs as many events into the same tables (the ledger and `actions`) and its CPU per row
 * (its backend and the client building the rows) is printed beside it with the ratio (issue 13:
 * target ≤ 2.5). Linux only. Not a suite of
 * `bun run bench`: CPU time shifts less than a rate with what else the machine is doing, so it
 * is the better tool for comparing changes on a noisy host, but not immune: measure the two
 * versions back to back (the same commit read 73.7 and 82.6 µs/event an hour apart here).
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { removeDataDir } from '../src/infra/embedded-postgres.ts'
import { attachOwner, BATCH, batchBody, postBatch, rawCopy, startServer } from './lib/ingest-server.ts'

const batches = Number(Bun.argv[2] ?? 200)
const SENDERS = 8
const TICK_MS = 1000 / 100 // USER_HZ

/** CPU ticks (user + system) per thread name of one process. */
function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>()
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out.set(comm, (out.get(comm) ?? 0) + Number(f[11]) + Number(f[12]))
    }
  } catch {
    // the process ended
  }
  return out
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-bench-cpu-'))
const server = await startServer(dataDir)
const { owner, drained, close } = await attachOwner(dataDir)
try {
  const post = (body: string) => postBatch(server, body)
  const run = crypto.randomUUID().slice(0, 8)
  // Warm-up at full concurrency, so every pool connection exists before the backends are listed.
  for (let i = 0; i < 2; i++) await Promise.all(Array.from({ length: SENDERS }, () => post(batchBody(run))))
  await drained()

  const backends = await owner<{ pid: number; name: string }[]>`
    select pid, coalesce(nullif(application_name, ''), backend_type) as name from pg_stat_activity where pid <> pg_backend_pid()`
  const snapshot = () => {
    const rows = new Map<string, number>()
    for (const [thread, t] of threadTicks(server.proc.pid)) rows.set(`server ${thread}`, t)
    for (const b of backends) {
      const t = [...threadTicks(b.pid).values()].reduce((a, v) => a + v, 0)
      rows.set(`postgres ${b.name}`, (rows.get(`postgres ${b.name}`) ?? 0) + t)
    }
    return rows
  }
  // Built before the clock starts: this process shares the machine with the server.
  const bodies = Array.from({ length: batches }, () => batchBody(run))
  const before = snapshot()
  const start = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: SENDERS }, async () => {
      while (next < batches) await post(bodies[next++]!)
    }),
  )
  await drained()
  const seconds = (performance.now() - start) / 1000
  const after = snapshot()

  const events = batches * BATCH
  const perK = (ticks: number) => ((ticks * TICK_MS) / (events / 1000)).toFixed(1)
  let total = 0
  const rows: [string, number][] = []
  for (const [k, t] of after) {
    const d = t - (before.get(k) ?? 0)
    if (d > 0) rows.push([k, d])
    total += Math.max(0, d)
  }
  rows.sort((a, b) => b[1] - a[1])
  console.log(`${events} events, all consumers drained in ${seconds.toFixed(2)} s (${Math.round(events / seconds)} events/s)`)
  console.log('CPU ms per 1,000 events (= µs per event):')
  for (const [k, d] of rows) console.log(`  ${perK(d).padStart(6)}  ${k}`)
  console.log(`  ${perK(total).padStart(6)}  total`)

  // The baseline, with the server idle (everything drained).
  const [org] = await owner<{ org_id: string }[]>`select org_id from actions limit 1`
  const raw = await rawCopy(owner, org!.org_id, events, run)
  const perRow = (ms: number) => (ms / (events / 1000)).toFixed(1)
  const rawTotal = raw.backendMs + raw.clientMs
  console.log(`baseline: one client COPY of ${events} rows into the ledger and actions, ${raw.seconds.toFixed(2)} s`)
  console.log(`  ${perRow(raw.backendMs).padStart(6)}  its backend`)
  console.log(`  ${perRow(raw.clientMs).padStart(6)}  the client building the rows`)
  console.log(`  ${perRow(rawTotal).padStart(6)}  total µs per row`)
  console.log(`ratio ingest/COPY CPU per event: ${((total * TICK_MS) / rawTotal).toFixed(2)} (target ≤ 2.5)`)
} finally {
  await close()
  server.proc.kill('SIGTERM')
  await server.proc.exited
  removeDataDir(dataDir)
}
