/**
 * @module bus/consumer.worker
 * Entry point of one consumer thread (see ./pool.ts). It opens its own small pool as the runtime
 * role, runs the consumer loop until the parent posts `stop`, then closes the pool and reports
 * `stopped`. The thread is long-lived: the parent never terminates it (Bun #15964).
 */
import fs from 'node:fs'
import os from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
import { createSqsClient } from '../infra/aws.ts'
import { createPool } from '../infra/db.ts'
import { createLogger } from '../infra/log.ts'
import { runConsumer } from './consume-local.ts'
import { HANDLERS } from './handlers.ts'
import type { FromWorker, ToWorker, WorkerInit } from './pool.ts'
import { runSqsConsumer } from './consume-sqs.ts'
import { takeRung as takeFleetRung } from '../features/fleet/repo.ts'
import { takeRung as takeLiveRung } from '../features/live/repo.ts'

const init = workerData as WorkerInit
const port = parentPort!
const send = (message: FromWorker) => port.postMessage(message)
const log = createLogger(init.logLevel, 'stdout').child({ worker: init.consumer })
lowerPriority(init.nice ?? 0)

/**
 * Derived work yields the CPU to the ack path (issue 13: with both at the same priority, a
 * consumer's round taking a core made the next ack wait for it, the p99 of the ack at half load
 * 32 ms). Linux names a thread by its id in /proc/thread-self, and setpriority takes it as a pid.
 * Best effort: elsewhere, or refused, the thread keeps its priority.
 */
function lowerPriority(nice: number): void {
  if (nice <= 0) return
  try {
    const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop())
    os.setPriority(tid, nice)
  } catch (err) {
    log.debug({ err }, 'consumer thread priority left as is')
  }
}
// One connection for LISTEN, one or two for rounds (one org transaction at a time).
const sql = createPool(init.target, {
  max: 3,
  statementTimeoutMs: init.statementTimeoutMs,
  acquireTimeoutMs: init.acquireTimeoutMs,
  applicationName: `quint-cloud:${init.consumer}`,
})
const stop = new AbortController()

port.on('message', (message: ToWorker) => {
  if (message.type === 'stop') stop.abort()
})

/**
 * A full collection at most once a second, after a round: each round leaves megabytes of parsed
 * messages and query text behind, and the collector's own pace let three threads' heaps grow to
 * a peak of 282 MB resident at 10,000 events/s (248–265 MB with this; issue 13's soak).
 */
let collectedAt = 0
const collect = () => {
  if (Date.now() - collectedAt < 1000) return
  collectedAt = Date.now()
  Bun.gc(true)
}
send({ type: 'started' })
const common = {
  maxAttempts: init.maxAttempts,
  ...(init.retryBaseMs !== undefined ? { retryBaseMs: init.retryBaseMs } : {}),
  // After the commit: the orgs its batches wrote fleet events or live log rows for are rung by the parent.
  onApplied: (batches: number) => (collect(), send)({ type: 'applied', batches, fleetOrgs: takeFleetRung(), liveOrgs: takeLiveRung() }),
  onDeadLetter: () => send({ type: 'dead_lettered' }),
  onLag: (oldestMs: number | null) => send({ type: 'lag', oldestMs }),
}
// Cluster mode (BUS=sns): the same handlers, fed from this consumer's SQS queue.
const sqs = init.sqs ? createSqsClient(init.sqs.target, init.sqs.waitTimeS) : null
try {
  if (init.sqs && sqs) {
    const queueUrl = init.sqs.queueUrls[init.consumer]
    if (!queueUrl) throw new Error(`no SQS queue configured for consumer ${init.consumer}`)
    await runSqsConsumer({
      sql,
      sqs,
      queueUrl,
      consumer: init.consumer,
      handle: HANDLERS[init.consumer],
      log,
      signal: stop.signal,
      waitTimeS: init.sqs.waitTimeS,
      visibilityTimeoutS: init.sqs.visibilityTimeoutS,
      ...common,
    })
  } else {
    await runConsumer({
      sql,
      consumer: init.consumer,
      handle: HANDLERS[init.consumer],
      log,
      signal: stop.signal,
      pollMs: init.pollMs,
      ...common,
    })
  }
} finally {
  sqs?.destroy()
  await sql.end({ timeout: 5 })
  send({ type: 'stopped' })
  // Let the thread end on its own once the port is closed (no terminate()).
  port.close()
}
