/**
 * @module bus/pool
 * One long-lived worker thread runs the consumer loops (pipeline, sessions, alerts), so the
 * consumers never hold up the HTTP thread. They share it (issue 13): each loop waits on Postgres
 * most of its round, and every thread is a JavaScript heap of its own (at 10,000 events/s the
 * server peaked at 248–287 MB resident with a thread per consumer, 199–207 MB with one). Each loop keeps its own connection
 * pool, backoff and dead-letter accounting, so one consumer failing does not stall the others.
 * The thread is never terminated (Bun #15964, #41022): `stop` asks it to finish its rounds and
 * close its pools, then waits for it. A thread that dies unexpectedly is started again after a
 * backoff; what it had claimed rolled back with its transactions, so the new one resumes where it
 * stopped.
 */
import { Worker } from 'node:worker_threads'
import type { ConsumerName } from './bus.ts'
import type { AwsTarget } from '../infra/aws.ts'
import type { DbTarget } from '../infra/db.ts'
import type { Logger } from '../infra/log.ts'
import { registerConsumerLagGauge, type Metrics } from '../infra/metrics.ts'

/** `workerData` of a consumer thread (structured-cloned). */
export interface WorkerInit {
  consumers: ConsumerName[]
  target: DbTarget
  statementTimeoutMs: number
  /** Longest wait for a pooled connection (DATABASE_ACQUIRE_TIMEOUT_MS). */
  acquireTimeoutMs: number
  logLevel: string
  pollMs: number
  /** Nice value the thread gives itself (CONSUMER_THREAD_NICE). */
  nice?: number
  /** Failed attempts before a message is dead-lettered (BUS_MAX_ATTEMPTS). */
  maxAttempts: number
  /** First retry delay of a failed message (tests shorten it); doubles per attempt. */
  retryBaseMs?: number
  /** Cluster mode (BUS=sns): the thread consumes its SQS queue instead of the local tables. */
  sqs?: SqsWorkerInit
}

export interface SqsWorkerInit {
  target: AwsTarget
  queueUrls: Partial<Record<ConsumerName, string>>
  waitTimeS: number
  visibilityTimeoutS: number
}
export type ToWorker = { type: 'stop' }
export type FromWorker =
  | { type: 'started' }
  /**
   * `fleetOrgs`, `liveOrgs`: orgs whose fleet log and live log the batches wrote to (src/infra/rung.ts,
   * filled by src/features/fleet/repo.ts and src/features/live/repo.ts).
   */
  | { type: 'applied'; consumer: ConsumerName; batches: number; fleetOrgs: string[]; liveOrgs: string[] }
  | { type: 'dead_lettered'; consumer: ConsumerName }
  /** When the oldest message waiting for this consumer was sent (epoch ms), null: none waits. */
  | { type: 'lag'; consumer: ConsumerName; oldestMs: number | null }
  | { type: 'stopped' }

/**
 * The thread's entry. From a checkout this module is src/bus/pool.ts. In the compiled
 * executable (`bun run build` lists the worker as a second entrypoint) every bundled module's
 * `import.meta.url` is the executable's, at the root of the embedded tree that mirrors `src/`.
 */
const WORKER_ENTRY = import.meta.url.startsWith('file:///$bunfs/')
  ? new URL('./bus/consumer.worker.ts', import.meta.url)
  : new URL('./consumer.worker.ts', import.meta.url)

const RESTART_MIN_MS = 500
const RESTART_MAX_MS = 30_000
/** A thread that ran this long before dying starts again without backoff. */
const HEALTHY_RUN_MS = 60_000

/** Who the parent rings for what its threads committed (see the constructor). */
export interface PoolRings {
  fleet?(orgIds: readonly string[]): void
  live?(orgIds: readonly string[]): void
}

interface Slot {
  consumers: ConsumerName[]
  worker: Worker | null
  startedAt: number
  restarts: number
  exited: Promise<void>
  timer: ReturnType<typeof setTimeout> | null
}

export class ConsumerPool {
  readonly #slot: Slot
  /** Per consumer, the oldest waiting message its thread last reported (the lag gauge). */
  readonly #oldest: Record<string, number | null> = {}
  #stopping = false
  private readonly init: Omit<WorkerInit, 'consumers'>
  private readonly log: Logger
  private readonly metrics: Metrics
  private readonly rings: PoolRings

  /**
   * `rings`: a thread's committed batches wrote fleet events (a distilled signature) or live log
   * rows (stored actions, raised alerts: the console's live stream, issue 12) for these orgs; the
   * fleet and live hubs ring every instance for them (src/infra/bell.ts).
   */
  constructor(
    consumers: readonly ConsumerName[],
    init: Omit<WorkerInit, 'consumers'>,
    log: Logger,
    metrics: Metrics,
    rings: PoolRings = {},
  ) {
    this.init = init
    this.log = log
    this.metrics = metrics
    this.rings = rings
    this.#slot = { consumers: [...consumers], worker: null, startedAt: 0, restarts: 0, exited: Promise.resolve(), timer: null }
    registerConsumerLagGauge(metrics.registry, () => ({ ...this.#oldest }))
  }

  start(): void {
    if (this.#slot.consumers.length > 0) this.#spawn(this.#slot)
  }

  /** Asks the thread to finish its rounds and waits for it (bounded by the caller). */
  async stop(): Promise<void> {
    this.#stopping = true
    const slot = this.#slot
    if (slot.timer) clearTimeout(slot.timer)
    slot.worker?.postMessage({ type: 'stop' } satisfies ToWorker)
    await slot.exited
  }

  #spawn(slot: Slot): void {
    const worker = new Worker(WORKER_ENTRY, {
      workerData: { ...this.init, consumers: slot.consumers } satisfies WorkerInit,
    })
    slot.worker = worker
    slot.startedAt = Date.now()
    worker.on('message', (message: FromWorker) => {
      if (message.type === 'applied') {
        this.metrics.consumerBatches.inc({ consumer: message.consumer }, message.batches)
        if (message.fleetOrgs.length > 0) this.rings.fleet?.(message.fleetOrgs)
        if (message.liveOrgs.length > 0) this.rings.live?.(message.liveOrgs)
      } else if (message.type === 'dead_lettered') this.metrics.busDeadLetters.inc({ consumer: message.consumer })
      else if (message.type === 'lag') this.#oldest[message.consumer] = message.oldestMs
    })
    worker.on('error', (err) => this.log.error({ err, consumers: slot.consumers }, 'consumer thread failed'))
    slot.exited = new Promise<void>((resolve) => {
      worker.once('exit', (code) => {
        slot.worker = null
        resolve()
        if (this.#stopping) return
        const ranMs = Date.now() - slot.startedAt
        slot.restarts = ranMs >= HEALTHY_RUN_MS ? 0 : slot.restarts + 1
        const delay = slot.restarts === 0 ? 0 : Math.min(RESTART_MIN_MS * 2 ** (slot.restarts - 1), RESTART_MAX_MS)
        this.log.error(
          { consumers: slot.consumers, code, ran_ms: ranMs, restart_in_ms: delay },
          'consumer thread exited; restarting',
        )
        for (const consumer of slot.consumers) this.metrics.consumerRestarts.inc({ consumer })
        slot.timer = setTimeout(() => {
          slot.timer = null
          if (!this.#stopping) this.#spawn(slot)
        }, delay)
      })
    })
  }
}
