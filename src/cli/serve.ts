/**
 * @module cli/serve
 * `quint-cloud serve`: bind the port (a port in use fails before any database work) → database
 * (embedded or external; a read replica when DATABASE_READ_URL is set) → migrations → the composed
 * app (src/app.ts) behind the listener → consumer threads → retention purge (issue 9) →
 * first-start org → ready. Until then every request but /health answers 503 `starting`.
 *
 * On SIGTERM/SIGINT: not ready → (drain delay) → stop accepting and finish in-flight requests →
 * consumers finish their round → webhook attempts aborted → retention purge (after its batch in
 * flight) → revocation poll and filter → Redis → bus clients → timers → the pools → embedded
 * Postgres → exit. The listener closes first, and each step has its share of SHUTDOWN_TIMEOUT_MS
 * (src/lifecycle.ts), so a dead database cannot hold the others (issue 14).
 */
import { composeApp } from '../app.ts'
import { loadMasterKey, SecretBox } from '../auth/secret-box.ts'
import type { Config } from '../config.ts'
import { bootstrapFirstOrg, type CreatedOrg } from '../features/orgs/service.ts'
import { RetentionPurger } from '../features/retention/purger.ts'
import { WebhookDispatcher } from '../features/webhooks/dispatcher.ts'
import { closeUnreadBodies } from '../http/body.ts'
import { problem } from '../http/problem.ts'
import { ensurePartitions, openDatabase, OpenAbortedError, type Database } from '../infra/database.ts'
import type { Logger } from '../infra/log.ts'
import { createMetrics } from '../infra/metrics.ts'
import { RedisStateStore } from '../infra/redis.ts'
import { Lifecycle } from '../lifecycle.ts'
import { ConsumerPool } from '../bus/pool.ts'
import { wireBus } from './bus.ts'

/** Bun's own cap, above the largest route limit; routes enforce their own (10 MiB ingest). */
const MAX_REQUEST_BYTES = 16 * 1024 * 1024
const PARTITION_CHECK_MS = 6 * 3600 * 1000

/** The port is taken: reported before the embedded Postgres is initialised (issue 14). */
export class PortInUseError extends Error {
  override name = 'PortInUseError'
}

export async function serve(config: Config, log: Logger): Promise<void> {
  const lifecycle = new Lifecycle(log)
  // Signals are handled from the first moment: one arriving during start-up (initdb, migrations)
  // is acted on as soon as the steps registered so far can be unwound, never by dying mid-way.
  let starting = true
  let pendingSignal: NodeJS.Signals | null = null
  // Set by a signal during start-up: the step in progress is abandoned (a migration waiting on
  // another instance's lock can wait forever) and no later step runs (issue 14).
  const interrupted = new AbortController()
  let db: Database | null = null
  let embedded: { signalStop(): void } | null = null
  let ready = false
  const exit = async (code: number) => {
    // A database step left behind, or a start-up cut short, must not leave an embedded Postgres
    // running without us.
    db?.abandon()
    embedded?.signalStop()
    await new Promise<void>((resolve) => log.flush(() => resolve()))
    process.exit(code)
  }
  const stop = (signal: NodeJS.Signals) => {
    void lifecycle.shutdown(signal, config.SHUTDOWN_TIMEOUT_MS).then((clean) => exit(clean ? 0 : 1))
  }
  const onSignal = (signal: NodeJS.Signals) => {
    if (!starting) return stop(signal)
    if (pendingSignal) {
      log.warn({ signal }, 'second signal during start-up; exiting now')
      return void exit(1)
    }
    log.info({ signal }, 'signal during start-up; abandoning start-up and stopping')
    pendingSignal = signal
    interrupted.abort()
  }
  /** Between start-up steps: a signal that arrived meanwhile ends start-up here. */
  const checkpoint = () => {
    if (pendingSignal) throw new OpenAbortedError('start-up interrupted by a signal')
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)

  const server = listen(config, log)
  // Load balancers only route to an instance that was ready: one that never was has nothing to drain.
  lifecycle.onShutdown('drain delay', () => (ready ? Bun.sleep(config.SHUTDOWN_DRAIN_DELAY_MS) : undefined), {
    budgetMs: config.SHUTDOWN_DRAIN_DELAY_MS + 1_000,
  })
  lifecycle.onShutdown(
    'http listener',
    async (budgetMs) => {
      // Graceful: refuse new connections, let in-flight requests finish. A request that never
      // ends must not hold the exit hostage (Bun #40043): force-close before the share runs out.
      const closed = await Promise.race([server.stop().then(() => true), Bun.sleep(budgetMs * 0.8).then(() => false)])
      if (!closed) {
        log.warn({ budget_ms: budgetMs }, 'in-flight requests did not finish; closing connections')
        void server.stop(true)
      }
    },
    { share: 6 },
  )

  let dbStep = false
  try {
    db = await openDatabase(config, log, {
      serve: true,
      signal: interrupted.signal,
      onEmbedded: (pg) => (embedded = pg),
    })
    checkpoint()
    const database = db
    // BUS=local: Postgres tables; BUS=sns: SNS FIFO → SQS FIFO (docs/cluster.md).
    const bus = wireBus(config, database.app)
    const metrics = createMetrics({ backlog: bus.backlog })
    // Cluster mode's shared state; closed after the listener, so in-flight requests still use it.
    const redis = config.REDIS_URL
      ? new RedisStateStore({ url: config.REDIS_URL, commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS, log, metrics })
      : null
    const secrets = new SecretBox(loadMasterKey(config, log))
    // Reads go to the replica when DATABASE_READ_URL is set (issue 9), under the same role and RLS.
    const composed = composeApp({
      config,
      sql: database.app,
      readSql: database.read ?? undefined,
      log,
      metrics,
      lifecycle,
      bus: bus.bus,
      redis,
      secrets,
    })
    server.reload({ fetch: closeUnreadBodies(composed.app.fetch), error: serverError(log) })
    void composed.start()
    checkpoint()

    const consumers = new ConsumerPool(
      config.consumers,
      {
        target: database.appTarget,
        statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
        acquireTimeoutMs: config.DATABASE_ACQUIRE_TIMEOUT_MS,
        logLevel: config.LOG_LEVEL,
        pollMs: config.CONSUMER_POLL_MS,
        nice: config.CONSUMER_THREAD_NICE,
        maxAttempts: config.BUS_MAX_ATTEMPTS,
        sqs: bus.sqs,
      },
      log,
      metrics,
      { fleet: (orgIds) => composed.fleet.ring(orgIds), live: (orgIds) => composed.live.ring(orgIds) },
    )
    consumers.start()
    lifecycle.onShutdown('consumers', () => consumers.stop(), { share: 3 })
    // Webhook delivery: after the consumers (which enqueue), before the pool closes. In-flight
    // attempts are aborted and come back when their lease ends (docs/webhooks.md).
    if (config.WEBHOOK_DELIVERY) {
      const webhooks = new WebhookDispatcher({
        sql: database.app,
        secrets,
        log,
        policy: { allowInsecure: config.WEBHOOK_ALLOW_INSECURE, allowPrivate: config.WEBHOOK_ALLOW_PRIVATE_TARGETS },
        timeoutMs: config.WEBHOOK_TIMEOUT_MS,
        maxAttempts: config.WEBHOOK_MAX_ATTEMPTS,
        retryBaseMs: config.WEBHOOK_RETRY_BASE_MS,
        pollMs: config.WEBHOOK_POLL_MS,
        concurrency: config.WEBHOOK_CONCURRENCY,
        concurrencyPerEndpoint: config.WEBHOOK_CONCURRENCY_PER_ENDPOINT,
        concurrencyPerOrg: config.WEBHOOK_CONCURRENCY_PER_ORG,
        metrics,
      })
      webhooks.start()
      lifecycle.onShutdown('webhook delivery', () => webhooks.stop())
    }
    // Retention (docs/retention.md): every instance may run it; per-org locks keep them from
    // doing the same work. On the primary: it deletes. Stopped before the pool closes; a batch in
    // flight is one short statement.
    if (config.RETENTION_INTERVAL_S > 0) {
      const purger = new RetentionPurger({ sql: database.app, log, batchRows: config.RETENTION_BATCH_ROWS })
      purger.start(config.RETENTION_INTERVAL_S * 1000)
      lifecycle.onShutdown('retention purge', () => purger.stop())
    }
    lifecycle.onShutdown('revocation', () => composed.stop())
    if (redis) lifecycle.onShutdown('redis', () => redis.close())
    lifecycle.onShutdown('bus clients', () => bus.close())
    const partitions = setInterval(() => {
      ensurePartitions(database.app, config.PARTITION_MONTHS_AHEAD).catch((err) =>
        log.error({ err }, 'partition maintenance failed'),
      )
    }, PARTITION_CHECK_MS)
    partitions.unref()
    lifecycle.onShutdown('timers', () => clearInterval(partitions))
    lifecycle.onShutdown('database', (budgetMs) => database.close(budgetMs), { share: 2 })
    dbStep = true

    checkpoint()
    if (config.bootstrapOrg) {
      const created = await bootstrapFirstOrg(database.app, config.bootstrapOrg, config.QUINT_BOOTSTRAP_OWNER_EMAIL)
      if (created) printFirstStart(created, consoleUrl(config.HOST, server.port ?? config.PORT))
    }
    checkpoint()
    lifecycle.markReady()
    ready = true
    log.info(
      {
        port: server.port,
        host: config.HOST,
        database: config.DATABASE_URL ? 'external' : 'embedded',
        read_replica: database.read !== null,
        data_dir: config.dataDir,
        console: consoleUrl(config.HOST, server.port ?? config.PORT),
      },
      'quint-cloud ready',
    )
  } catch (err) {
    // Nothing may outlive a failed or interrupted start: the listener, the pool, an embedded Postgres.
    const clean = await lifecycle.shutdown(pendingSignal ?? 'start-up failed', config.SHUTDOWN_TIMEOUT_MS)
    if (db && !dbStep) await db.close().catch(() => {})
    if (!pendingSignal) throw err
    // A real failure that happened to coincide with the signal is still told.
    if (!(err instanceof OpenAbortedError)) log.error({ err }, 'start-up failed while stopping on a signal')
    return void exit(clean ? 0 : 1)
  } finally {
    starting = false
  }
}

/**
 * Binds the port before anything else, answering 503 `starting` (and /health 200) until the
 * composed app replaces the handler, so a port in use is reported at once.
 */
function listen(config: Config, log: Logger) {
  try {
    return Bun.serve({
      hostname: config.HOST,
      port: config.PORT,
      fetch: closeUnreadBodies((req: Request) =>
        new URL(req.url).pathname === '/health'
          ? Response.json({ status: 'starting' })
          : problem({ status: 503, code: 'starting', detail: 'The service is starting.', headers: { 'Retry-After': '2' } }),
      ),
      // Above a typical load balancer's 60 s idle timeout, so the balancer closes first.
      idleTimeout: 65,
      maxRequestBodySize: MAX_REQUEST_BYTES,
      error: serverError(log),
    })
  } catch (err) {
    if ((err as { code?: string }).code === 'EADDRINUSE' || /in use/i.test(String((err as Error).message))) {
      throw new PortInUseError(`Port ${config.PORT} on ${config.HOST} is already in use; set PORT to a free port.`)
    }
    throw err
  }
}

function serverError(log: Logger) {
  return (err: Error) => {
    log.error({ err }, 'request failed outside the app')
    return problem({ status: 500, code: 'internal_error', detail: 'An internal error occurred.' })
  }
}

/**
 * The only time the raw credentials exist outside the caller's hands: written once to stderr
 * as plain text (the JSON logs on stdout redact tokens by design).
 */
/** Where a person on this machine opens the console (issue 12): a wildcard bind is reached on localhost. */
export function consoleUrl(host: string, port: number): string {
  const name = host === '0.0.0.0' || host === '::' || host === '' ? 'localhost' : host.includes(':') ? `[${host}]` : host
  return `http://${name}:${port}/`
}

function printFirstStart(org: CreatedOrg, console: string): void {
  process.stderr.write(
    [
      '',
      '================================================================',
      ` First start: created org "${org.name}" (${org.org_id})`,
      ' Save these now; they are not shown again.',
      '',
      `   admin API key : ${org.admin_key}`,
      `   deploy token  : ${org.deploy_token}`,
      ...(org.owner_invited ? [`   owner invited : ${org.owner_invited} (claimed at their first sign-in)`] : []),
      '',
      ` Open the console at ${console} and paste the admin API key.`,
      '================================================================',
      '',
    ].join('\n') + '\n',
  )
}
