/**
 * @module cli/serve
 * `quint-cloud serve`: database (embedded or external) → migrations → HTTP listener → consumer
 * threads → first-start org → ready. On SIGTERM/SIGINT: not ready → (drain delay) → stop
 * accepting and finish in-flight requests → consumers finish their round → stop timers → close
 * the pool → stop embedded Postgres → exit, all under SHUTDOWN_TIMEOUT_MS.
 */
import { buildApp } from '../app.ts'
import { CredentialResolver } from '../auth/credentials.ts'
import { createRevocationFilter } from '../auth/revocation-filter.ts'
import { loadMasterKey, SecretBox } from '../auth/secret-box.ts'
import { revokedForFilter } from '../features/auth-tokens/repo.ts'
import { RevocationPoll } from '../features/auth-tokens/revocation-poll.ts'
import type { Config } from '../config.ts'
import type { Bus } from '../features/ingest/bus.ts'
import { bootstrapFirstOrg, type CreatedOrg } from '../features/orgs/service.ts'
import { WebhookDispatcher } from '../features/webhooks/dispatcher.ts'
import { problem } from '../http/problem.ts'
import { ensurePartitions, openDatabase } from '../infra/database.ts'
import type { Sql } from '../infra/db.ts'
import type { Logger } from '../infra/log.ts'
import { createMetrics, type Metrics } from '../infra/metrics.ts'
import { RedisStateStore } from '../infra/redis.ts'
import { Lifecycle } from '../lifecycle.ts'
import { ConsumerPool } from '../workers/pool.ts'
import { wireBus } from './bus.ts'

/** Bun's own cap, above the largest route limit; routes enforce their own (10 MiB ingest). */
const MAX_REQUEST_BYTES = 16 * 1024 * 1024
const PARTITION_CHECK_MS = 6 * 3600 * 1000

export async function serve(config: Config, log: Logger): Promise<void> {
  const lifecycle = new Lifecycle(log)
  // Signals are handled from the first moment: one arriving during start-up (initdb, migrations)
  // is acted on as soon as the steps registered so far can be unwound, never by dying mid-way.
  let starting = true
  let pendingSignal: NodeJS.Signals | null = null
  const stop = (signal: NodeJS.Signals) => {
    void lifecycle.shutdown(signal, config.SHUTDOWN_TIMEOUT_MS).then(async (clean) => {
      await new Promise<void>((resolve) => log.flush(() => resolve()))
      process.exit(clean ? 0 : 1)
    })
  }
  const onSignal = (signal: NodeJS.Signals) => {
    if (starting) {
      log.info({ signal }, 'signal during start-up; stopping once start-up steps are unwound')
      pendingSignal ??= signal
    } else stop(signal)
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)

  const db = await openDatabase(config, log, { serve: true })
  let dbStep = false
  try {
    lifecycle.onShutdown('drain delay', () => Bun.sleep(config.SHUTDOWN_DRAIN_DELAY_MS))
    // BUS=local: Postgres tables; BUS=sns: SNS FIFO → SQS FIFO (docs/cluster.md).
    const bus = wireBus(config, db.app)
    const metrics = createMetrics({ backlog: bus.backlog })
    // Cluster mode's shared state; closed after the listener, so in-flight requests still use it.
    const redis = config.REDIS_URL
      ? new RedisStateStore({ url: config.REDIS_URL, commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS, log, metrics })
      : null
    const secrets = new SecretBox(loadMasterKey(config, log))
    const server = await startListening(config, log, db.app, lifecycle, metrics, redis, bus.bus, secrets).catch(async (err: unknown) => {
      await redis?.close()
      bus.close()
      throw err
    })
    lifecycle.onShutdown('http listener', async () => {
      // Graceful: refuse new connections, let in-flight requests finish. A request that never
      // ends must not hold the exit hostage (Bun #40043): force-close after most of the budget.
      const budget = Math.floor(config.SHUTDOWN_TIMEOUT_MS * 0.6)
      const closed = await Promise.race([server.stop().then(() => true), Bun.sleep(budget).then(() => false)])
      if (!closed) {
        log.warn({ budget_ms: budget }, 'in-flight requests did not finish; closing connections')
        void server.stop(true)
      }
    })
    if (redis) lifecycle.onShutdown('redis', () => redis.close())
    const consumers = new ConsumerPool(
      config.consumers,
      {
        target: db.appTarget,
        statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
        logLevel: config.LOG_LEVEL,
        pollMs: config.CONSUMER_POLL_MS,
        sqs: bus.sqs,
      },
      log,
      metrics,
    )
    consumers.start()
    lifecycle.onShutdown('consumers', () => consumers.stop())
    // Webhook delivery: after the consumers (which enqueue), before the pool closes. In-flight
    // attempts are aborted and come back when their lease ends (docs/webhooks.md).
    if (config.WEBHOOK_DELIVERY) {
      const webhooks = new WebhookDispatcher({
        sql: db.app,
        secrets,
        log,
        policy: { allowInsecure: config.WEBHOOK_ALLOW_INSECURE, allowPrivate: config.WEBHOOK_ALLOW_PRIVATE_TARGETS },
        timeoutMs: config.WEBHOOK_TIMEOUT_MS,
        maxAttempts: config.WEBHOOK_MAX_ATTEMPTS,
        retryBaseMs: config.WEBHOOK_RETRY_BASE_MS,
        pollMs: config.WEBHOOK_POLL_MS,
      })
      webhooks.start()
      lifecycle.onShutdown('webhook delivery', () => webhooks.stop())
    }
    lifecycle.onShutdown('bus clients', () => bus.close())
    const partitions = setInterval(() => {
      ensurePartitions(db.app, config.PARTITION_MONTHS_AHEAD).catch((err) =>
        log.error({ err }, 'partition maintenance failed'),
      )
    }, PARTITION_CHECK_MS)
    partitions.unref()
    lifecycle.onShutdown('timers', () => clearInterval(partitions))
    lifecycle.onShutdown('database', () => db.close())
    dbStep = true

    if (config.bootstrapOrg) {
      const created = await bootstrapFirstOrg(db.app, config.bootstrapOrg)
      if (created) printFirstStart(created)
    }
    lifecycle.markReady()
    log.info(
      { port: server.port, host: config.HOST, database: config.DATABASE_URL ? 'external' : 'embedded', data_dir: config.dataDir },
      'quint-cloud ready',
    )
  } catch (err) {
    // Nothing may outlive a failed start: the listener, the pool, an embedded Postgres.
    await lifecycle.shutdown('start-up failed', config.SHUTDOWN_TIMEOUT_MS)
    if (!dbStep) await db.close().catch(() => {})
    throw err
  } finally {
    starting = false
  }
  if (pendingSignal) stop(pendingSignal)
}

async function startListening(
  config: Config,
  log: Logger,
  sql: Sql,
  lifecycle: Lifecycle,
  metrics: Metrics,
  redis: RedisStateStore | null,
  bus: Bus,
  secrets: SecretBox,
) {
  const resolver = new CredentialResolver(sql, log, { shared: redis, metrics })
  // JWT revocation filter (docs/auth.md): filled from Postgres; with Redis shared by every
  // instance, which rebuilds it from the same source when the shared generation is lost.
  const revokedList = () => (async function* () {
    yield* await revokedForFilter(sql, config.AUTH_CLOCK_SKEW_S)
  })()
  const revocationFilter = createRevocationFilter({ redis, log, metrics, source: revokedList })
  lifecycle.onShutdown('revocation filter', () => revocationFilter.close())
  if (!redis) {
    // Until this finishes the filter answers 'unknown' and every check goes to Postgres. Other
    // instances' revocations reach this one through the poll (no Redis to carry them).
    const poll = new RevocationPoll({ sql, filter: revocationFilter, log })
    const ready = poll.start().then(() => revocationFilter.rebuild(revokedList()))
    ready.catch((err: unknown) => log.error({ err }, 'revocation filter rebuild failed; revocation checks use Postgres'))
    lifecycle.onShutdown('revocation poll', () => poll.stop())
  }
  const { app } = buildApp({ config, sql, log, metrics, lifecycle, resolver, bus, redis, secrets, revocationFilter })
  return Bun.serve({
    hostname: config.HOST,
    port: config.PORT,
    fetch: app.fetch,
    // Above a typical load balancer's 60 s idle timeout, so the balancer closes first.
    idleTimeout: 65,
    maxRequestBodySize: MAX_REQUEST_BYTES,
    error(err) {
      log.error({ err }, 'request failed outside the app')
      return problem({ status: 500, code: 'internal_error', detail: 'An internal error occurred.' })
    },
  })
}

/**
 * The only time the raw credentials exist outside the caller's hands: written once to stderr
 * as plain text (the JSON logs on stdout redact tokens by design).
 */
function printFirstStart(org: CreatedOrg): void {
  process.stderr.write(
    [
      '',
      '================================================================',
      ` First start: created org "${org.name}" (${org.org_id})`,
      ' Save these now; they are not shown again.',
      '',
      `   admin API key : ${org.admin_key}`,
      `   deploy token  : ${org.deploy_token}`,
      '================================================================',
      '',
    ].join('\n') + '\n',
  )
}
