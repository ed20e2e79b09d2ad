/**
 * @module bus/consumer.worker
 * Entry point of the consumer thread (see ./pool.ts). Each consumer it runs gets a small pool of
 * its own as the runtime role and its loop, until the parent posts `stop`; then the pools close
 * and it reports `stopped`. The thread is long-lived: the parent never terminates it (Bun #15964).
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
import { inRungScope, takeRung } from '../infra/rung.ts'
import type { ConsumerName } from './bus.ts'

const init = workerData as WorkerInit
const port = parentPort!
const send = (message: FromWorker) => port.postMessage(message)
const log = createLogger(init.logLevel, 'stdout').child({ worker: 'consumers' })
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
const stop = new AbortController()

port.on('message', (message: ToWorker) => {
  if (message.type === 'stop') stop.abort()
})

/**
 * A full collection at most once a second, after a round: each round leaves megabytes of parsed
 * messages and query text behind, and the collector's own pace let the heap grow (issue 13's
 * soak, at 10,000 events/s: server peak 222 MB resident without it, 199–207 MB with it).
 */
let collectedAt = 0
const collect = () => {
  if (Date.now() - collectedAt < 1000) return
  collectedAt = Date.now()
  Bun.gc(true)
}
send({ type: 'started' })

/**
 * Loops per consumer on the local bus. The pipeline runs two (issue 13): with one, its backend and
 * this thread took turns, and the machine sat a third idle while a backlog drained; two let one
 * transaction's statements run while the other's are built here. Their claims skip each other's
 * batches (./consume-local.ts `claim`); what must stay serial in the pipeline takes the org's
 * chain lock (src/features/chain/linker.ts). Measured, a backlog drained 33–36 % faster.
 */
const LOCAL_LOOPS: Record<ConsumerName, number> = { pipeline: 2, sessions: 1, alerts: 1 }

/**
 * Waits for every run; the first to fail asks the others to stop, and its error is thrown once
 * all of them have ended (so no pool closes under a loop still finishing its round).
 */
async function untilAllEnd(runs: Promise<void>[]): Promise<void> {
  const ended = await Promise.allSettled(
    runs.map((run) =>
      run.catch((err) => {
        stop.abort()
        throw err
      }),
    ),
  )
  for (const r of ended) if (r.status === 'rejected') throw r.reason
}

/**
 * One consumer's loops, with their own pool (its backends named after it). Each loop has its own
 * rung scope: the orgs a loop's round recorded are rung after that round's commit, never by a
 * sibling loop whose round committed first (src/infra/rung.ts).
 */
async function consume(consumer: ConsumerName): Promise<void> {
  const loops = init.sqs ? 1 : LOCAL_LOOPS[consumer]
  // One connection for LISTEN, one per loop for its rounds (one org transaction at a time), one spare.
  const sql = createPool(init.target, {
    max: 2 + loops,
    statementTimeoutMs: init.statementTimeoutMs,
    acquireTimeoutMs: init.acquireTimeoutMs,
    applicationName: `quint-cloud:${consumer}`,
  })
  const common = {
    sql,
    consumer,
    handle: HANDLERS[consumer],
    log: log.child({ consumer }),
    signal: stop.signal,
    maxAttempts: init.maxAttempts,
    ...(init.retryBaseMs !== undefined ? { retryBaseMs: init.retryBaseMs } : {}),
    // After the commit: the orgs its batches wrote fleet events or live log rows for are rung by the parent.
    onApplied: (batches: number) => {
      collect()
      send({ type: 'applied', consumer, batches, fleetOrgs: takeRung('fleet'), liveOrgs: takeRung('live') })
    },
    onDeadLetter: () => send({ type: 'dead_lettered', consumer }),
    onLag: (oldestMs: number | null) => send({ type: 'lag', consumer, oldestMs }),
  }
  // Cluster mode (BUS=sns): the same handlers, fed from this consumer's SQS queue.
  const sqs = init.sqs ? createSqsClient(init.sqs.target, init.sqs.waitTimeS) : null
  try {
    if (init.sqs && sqs) {
      const queueUrl = init.sqs.queueUrls[consumer]
      if (!queueUrl) throw new Error(`no SQS queue configured for consumer ${consumer}`)
      const { waitTimeS, visibilityTimeoutS } = init.sqs
      await inRungScope(() =>
        runSqsConsumer({
          ...common,
          sqs,
          queueUrl,
          waitTimeS,
          visibilityTimeoutS,
        }),
      )
    } else {
      await untilAllEnd(Array.from({ length: loops }, () => inRungScope(() => runConsumer({ ...common, pollMs: init.pollMs }))))
    }
  } finally {
    sqs?.destroy()
    await sql.end({ timeout: 5 })
  }
}

try {
  // A loop that throws ends the thread (the pool restarts it), once the others have stopped.
  await untilAllEnd(init.consumers.map(consume))
} finally {
  send({ type: 'stopped' })
  // Let the thread end on its own once the port is closed (no terminate()).
  port.close()
}
