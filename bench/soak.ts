/**
 * The ingest soak (issue 13): `bun bench/soak.ts [minutes=10]` runs the real `serve` process on a
 * throw-away embedded Postgres, measures its end-to-end maximum (8 senders of 500-event batches
 * for 5 s, until actions, sessions and alerts caught up), then sends at 80 % of it, open loop,
 * for the given minutes. It samples the server's resident memory (VmRSS of the `bun` process,
 * every thread) each second and prints it at the start, after the first minute, at the end and
 * at its peak, per minute beside the ack latency and the backlog, and each minute's level (the
 * median of its samples: one sample rides the collector's sawtooth). Targets: peak ≤ 256 MB, end
 * within 5 % of the level after the first minute, read both from single samples and from levels. Linux only (/proc). Not a suite of
 * `bun run bench`: it takes the minutes it is given.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { removeDataDir } from '../src/infra/embedded-postgres.ts'
import { attachOwner, BATCH, batchBody, postBatch, startServer } from './lib/ingest-server.ts'
import { percentile, round } from './lib/measure.ts'

const minutes = Number(Bun.argv[2] ?? 10)
if (!(minutes > 0)) throw new Error('minutes must be a positive number')
const SENDERS = 8
const LOAD = 0.8
const PEAK_MB = 256
const DRIFT = 0.05

/** Resident memory of a process in MB (VmRSS), null once it ended. */
function rssMb(pid: number): number | null {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
    return kb === undefined ? null : Number(kb) / 1024
  } catch {
    return null
  }
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-soak-'))
const server = await startServer(dataDir)
const { backlog, drained, close } = await attachOwner(dataDir)
const run = crypto.randomUUID().slice(0, 8)
try {
  for (let i = 0; i < 10; i++) await postBatch(server, batchBody(run))
  await drained()

  // The maximum, end to end (as the ingest suite measures it).
  const bodies = Array.from({ length: 400 }, () => batchBody(run))
  let sent = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: SENDERS }, async () => {
      while (performance.now() - t0 < 5_000 && bodies.length > 0) {
        await postBatch(server, bodies.pop()!)
        sent += BATCH
      }
    }),
  )
  await drained()
  const max = sent / ((performance.now() - t0) / 1000)
  const rate = max * LOAD
  const intervalMs = (BATCH / rate) * 1000
  console.log(`maximum end to end ${round(max, 0)} events/s; soaking at ${round(rate, 0)} events/s for ${minutes} min`)

  // The soak, open loop: a batch leaves every intervalMs whatever the others do.
  const rss: { at: number; mb: number }[] = []
  const sampler = setInterval(() => {
    const mb = rssMb(server.proc.pid)
    if (mb !== null) rss.push({ at: performance.now(), mb })
  }, 1_000)
  const latencies: number[][] = []
  // The backlog at each minute's turn, read beside the load.
  const backlogs: number[] = []
  const minuteTimer = setInterval(() => void backlog().then((n) => backlogs.push(n)), 60_000)
  const start = performance.now()
  const endAt = start + minutes * 60_000
  const inflight = new Set<Promise<void>>()
  let late = 0
  let failed = 0
  for (let i = 0; ; i++) {
    const due = start + i * intervalMs
    if (due >= endAt) break
    const wait = due - performance.now()
    if (wait > 0) await Bun.sleep(wait)
    else if (wait < -intervalMs) late++
    const bucket = (latencies[Math.floor((due - start) / 60_000)] ??= [])
    const p = postBatch(server, batchBody(run)).then(
      (ms) => void bucket.push(ms),
      () => void failed++,
    )
    inflight.add(p)
    void p.finally(() => inflight.delete(p))
  }
  await Promise.all(inflight)
  clearInterval(minuteTimer)
  clearInterval(sampler)
  const endBacklog = await backlog()
  const drainStart = performance.now()
  await drained()
  const drainS = (performance.now() - drainStart) / 1000

  const level = (fromMs: number) => rss.find((s) => s.at - start >= fromMs)?.mb ?? NaN
  const atStart = rss[0]!.mb
  const afterMinute = level(60_000)
  const atEnd = rss[rss.length - 1]!.mb
  const peak = Math.max(...rss.map((s) => s.mb))
  // One sample rides the collector's sawtooth (tens of MB within a minute): the median of a
  // minute's samples is its level, read beside the single samples.
  const minuteMedian = (i: number) =>
    percentile(
      rss
        .filter((s) => s.at - start >= i * 60_000 && s.at - start < (i + 1) * 60_000)
        .map((s) => s.mb)
        .sort((x, y) => x - y),
      50,
    )
  console.log('minute   ack p50 ms   ack p99 ms   batches   backlog at its end   RSS at its end (MB)   RSS median (MB)')
  latencies.forEach((m, i) => {
    const sorted = [...m].sort((x, y) => x - y)
    const mb = level((i + 1) * 60_000)
    const cells = [
      i + 1,
      round(percentile(sorted, 50), 1),
      round(percentile(sorted, 99), 1),
      sorted.length,
      backlogs[i] ?? endBacklog,
      round(Number.isNaN(mb) ? atEnd : mb, 1),
      round(minuteMedian(i), 1),
    ]
    console.log(cells.map((c, k) => String(c).padStart([6, 10, 10, 7, 18, 19, 15][k]!)).join('   '))
  })
  console.log(
    `${late} batches sent late, ${failed} failed; backlog at the end ${endBacklog} batches, drained in ${round(drainS, 1)} s`,
  )
  console.log(
    `server RSS: start ${round(atStart, 1)} MB, after the first minute ${round(afterMinute, 1)} MB, end ${round(atEnd, 1)} MB, peak ${round(peak, 1)} MB`,
  )
  const drift = (atEnd - afterMinute) / afterMinute
  console.log(`peak ${round(peak, 1)} MB ≤ ${PEAK_MB} MB: ${peak <= PEAK_MB ? 'met' : 'NOT met'}`)
  console.log(
    `end vs after the first minute: ${round(drift * 100, 1)} % (target within ±${DRIFT * 100} %): ${Math.abs(drift) <= DRIFT ? 'met' : 'NOT met'}`,
  )
  const firstLevel = minuteMedian(1)
  const lastLevel = minuteMedian(latencies.length - 1)
  const levelDrift = (lastLevel - firstLevel) / firstLevel
  console.log(
    `levels (median of a minute's samples): second minute ${round(firstLevel, 1)} MB, last ${round(lastLevel, 1)} MB: ${round(levelDrift * 100, 1)} % (within ±${DRIFT * 100} %: ${Math.abs(levelDrift) <= DRIFT ? 'met' : 'NOT met'})`,
  )
} finally {
  await close()
  server.proc.kill('SIGTERM')
  await server.proc.exited
  removeDataDir(dataDir)
}
