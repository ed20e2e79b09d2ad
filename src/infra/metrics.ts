/**
 * @module infra/metrics
 * Prometheus registry (prom-client): process metrics plus the service's own. One registry per
 * process, created by the composition root and passed down.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export interface Metrics {
  readonly registry: Registry
  readonly httpRequests: Counter<'method' | 'route' | 'status'>
  readonly httpDuration: Histogram<'method' | 'route'>
  readonly consumerBatches: Counter<'consumer'>
  readonly consumerRestarts: Counter<'consumer'>
  /** Redis operations that failed or timed out and were answered by the local fallback. */
  readonly redisFallbacks: Counter<'op'>
  /**
   * The revocation SLO (issue 14): time from a JWT revocation's commit to this instance's
   * filter and caches refusing the token, by how it arrived: local, pubsub (Redis) or poll.
   */
  readonly revocationPropagation: Histogram<'path'>
  /** Ingested items by outcome: accepted, duplicate, rejected (src/features/ingest/service.ts). */
  readonly ingestEvents: Counter<'outcome'>
  /** Rejected ingest items by reason, a fixed set (`RejectCode` in src/features/ingest/events.ts). */
  readonly ingestRejected: Counter<'reason'>
  /** Secrets redacted from accepted events, by kind (`SECRET_KINDS` in src/features/ingest/redaction.ts). */
  readonly ingestRedactions: Counter<'kind'>
  /** Events the edge reports it dropped before sending, by where it reported them: batch or heartbeat (issue 9). */
  readonly ingestEdgeDropped: Counter<'report'>
  /**
   * Receive → queryable lag of stored events (issue 9): measured by the pipeline, which runs in a
   * worker thread, and reported over a BroadcastChannel (`reportQueryableLag`).
   */
  readonly ingestQueryableLag: Histogram
  /** Bus messages set aside after their last attempt, by consumer (docs/dead-letters.md). */
  readonly busDeadLetters: Counter<'consumer'>
  /** Webhook delivery attempts by outcome class (docs/webhooks.md lists them). */
  readonly webhookAttempts: Counter<'outcome'>
  /** Time of one webhook attempt (DNS check and HTTP exchange), by outcome class. */
  readonly webhookAttemptDuration: Histogram<'outcome'>
  /** Webhook deliveries that reached a final state: succeeded, failed (410) or dead. */
  readonly webhookDeliveries: Counter<'result'>
  /** Webhook attempts in flight in this process. */
  readonly webhookInFlight: Gauge
}

export interface MetricsOptions {
  /** Bus batches waiting per consumer, read at each scrape (consumer lag). */
  backlog?: () => Promise<Record<string, number>>
}

/**
 * The pipeline measures the receive → queryable lag in a consumer thread, which has no registry:
 * it posts each batch's lags on this channel and every registry of the process observes them. A
 * BroadcastChannel reaches every thread of the process without the consumer pool relaying it.
 */
const QUERYABLE_LAG_CHANNEL = 'quint:ingest-queryable-lag'
let lagSender: BroadcastChannel | null = null

/** Reports lags (seconds) to `quint_ingest_queryable_lag_seconds`, from any thread. */
export function reportQueryableLag(seconds: Float64Array): void {
  if (!lagSender) {
    lagSender = new BroadcastChannel(QUERYABLE_LAG_CHANNEL)
    // Never what keeps a thread alive: a consumer thread ends on its own when told to stop.
    ;(lagSender as BroadcastChannel & { unref?: () => void }).unref?.()
  }
  lagSender.postMessage(seconds)
}

function observeQueryableLag(histogram: Histogram): void {
  const receiver = new BroadcastChannel(QUERYABLE_LAG_CHANNEL)
  ;(receiver as BroadcastChannel & { unref?: () => void }).unref?.()
  receiver.onmessage = (e: { data: unknown }) => {
    if (!(e.data instanceof Float64Array)) return
    for (const s of e.data) histogram.observe(s)
  }
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const { backlog } = options
  if (backlog) {
    new Gauge({
      name: 'quint_bus_pending_batches',
      help: 'Bus batches not yet applied, by consumer (all orgs).',
      labelNames: ['consumer'],
      registers: [registry],
      async collect() {
        this.reset()
        // A scrape while the database is down reports no value rather than failing /metrics.
        const counts = await backlog().catch(() => ({}))
        for (const [consumer, n] of Object.entries(counts)) this.set({ consumer }, n)
      },
    })
  }
  const ingestQueryableLag = new Histogram({
    name: 'quint_ingest_queryable_lag_seconds',
    help: 'Time from the server receiving an event to the pipeline transaction that made it queryable.',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
    registers: [registry],
  })
  observeQueryableLag(ingestQueryableLag)
  return {
    registry,
    ingestQueryableLag,
    httpRequests: new Counter({
      name: 'quint_http_requests_total',
      help: 'HTTP requests by method, route template and status.',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'quint_http_request_duration_seconds',
      help: 'HTTP request latency by method and route template.',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    consumerBatches: new Counter({
      name: 'quint_consumer_batches_total',
      help: 'Bus batches applied, by consumer.',
      labelNames: ['consumer'],
      registers: [registry],
    }),
    consumerRestarts: new Counter({
      name: 'quint_consumer_restarts_total',
      help: 'Consumer threads restarted after an unexpected exit.',
      labelNames: ['consumer'],
      registers: [registry],
    }),
    busDeadLetters: new Counter({
      name: 'quint_bus_dead_letters_total',
      help: 'Bus messages set aside as dead letters after their last attempt, by consumer (this process).',
      labelNames: ['consumer'],
      registers: [registry],
    }),
    redisFallbacks: new Counter({
      name: 'quint_redis_fallbacks_total',
      help: 'Redis operations that failed or timed out and fell back to the local path, by operation.',
      labelNames: ['op'],
      registers: [registry],
    }),
    revocationPropagation: new Histogram({
      name: 'quint_revocation_propagation_seconds',
      help: 'Time from a JWT revocation commit to its refusal taking effect on this instance, by path (local, pubsub, poll).',
      labelNames: ['path'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    ingestEvents: new Counter({
      name: 'quint_ingest_events_total',
      help: 'Ingested events by outcome (accepted, duplicate, rejected), counted once the batch is durable.',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    ingestRejected: new Counter({
      name: 'quint_ingest_rejected_total',
      help: 'Rejected ingest items by reason (too_deep, too_many_values, too_large, not_object, wrong_type, missing_field, too_long, invalid_characters, invalid_timestamp, invalid_risk_score, unsupported_schema_version).',
      labelNames: ['reason'],
      registers: [registry],
    }),
    ingestRedactions: new Counter({
      name: 'quint_ingest_redactions_total',
      help: 'Secrets redacted from accepted events before storage, by kind.',
      labelNames: ['kind'],
      registers: [registry],
    }),
    ingestEdgeDropped: new Counter({
      name: 'quint_ingest_edge_dropped_total',
      help: 'Events the edge reports it dropped before sending (dropped_events), by report (batch, heartbeat).',
      labelNames: ['report'],
      registers: [registry],
    }),
    webhookAttempts: new Counter({
      name: 'quint_webhook_attempts_total',
      help: 'Webhook delivery attempts by outcome (success, http_error, redirect, gone, timeout, network_error, dns_error, target_refused, webhook_disabled, secret_error).',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    webhookAttemptDuration: new Histogram({
      name: 'quint_webhook_attempt_duration_seconds',
      help: 'Webhook delivery attempt latency (DNS check and HTTP exchange) by outcome.',
      labelNames: ['outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60],
      registers: [registry],
    }),
    webhookDeliveries: new Counter({
      name: 'quint_webhook_deliveries_total',
      help: 'Webhook deliveries that reached a final state, by result (succeeded, failed, dead).',
      labelNames: ['result'],
      registers: [registry],
    }),
    webhookInFlight: new Gauge({
      name: 'quint_webhook_attempts_in_flight',
      help: 'Webhook delivery attempts in flight in this process.',
      registers: [registry],
    }),
  }
}

/** What the revocation filter's gauges read (src/auth/jwt/revocation-filter.ts `stats()`). */
export interface RevocationFilterStats {
  bits: number
  setBits: number
  count: number
  loaded: boolean
}

/** One set of gauges per registry, reading the filter registered last with it. */
const revocationFilterStats = new WeakMap<Registry, () => RevocationFilterStats>()

export function registerRevocationFilterGauges(registry: Registry, stats: () => RevocationFilterStats): void {
  const first = !revocationFilterStats.has(registry)
  revocationFilterStats.set(registry, stats)
  if (!first || registry.getSingleMetric('quint_revocation_filter_fill_ratio')) return
  const read = () => revocationFilterStats.get(registry)?.()
  new Gauge({
    name: 'quint_revocation_filter_fill_ratio',
    help: 'Share of the revocation bloom filter bits set; past ~0.5 the false-positive rate exceeds the design.',
    registers: [registry],
    collect() {
      const s = read()
      if (s) this.set(s.setBits / s.bits)
    },
  })
  new Gauge({
    name: 'quint_revocation_filter_items',
    help: 'Revoked jtis in the current revocation filter generation (its list plus adds since).',
    registers: [registry],
    collect() {
      const s = read()
      if (s) this.set(s.count)
    },
  })
  new Gauge({
    name: 'quint_revocation_filter_loaded',
    help: 'Whether the revocation filter answers definitively (1) or sends every check to Postgres (0).',
    registers: [registry],
    collect() {
      const s = read()
      if (s) this.set(s.loaded ? 1 : 0)
    },
  })
}

/**
 * `quint_bus_consumer_lag_seconds{consumer}`: the age of the oldest message still waiting for
 * each consumer run by this process, from the time its thread last reported (computed at scrape,
 * so a stuck consumer's lag keeps growing). Registered once per registry by the consumer pool.
 */
const consumerLagSources = new WeakMap<Registry, () => Record<string, number | null>>()

export function registerConsumerLagGauge(registry: Registry, oldest: () => Record<string, number | null>): void {
  consumerLagSources.set(registry, oldest)
  if (registry.getSingleMetric('quint_bus_consumer_lag_seconds')) return
  new Gauge({
    name: 'quint_bus_consumer_lag_seconds',
    help: 'Age of the oldest bus message not yet applied, by consumer (0 when none waits).',
    labelNames: ['consumer'],
    registers: [registry],
    collect() {
      this.reset()
      const now = Date.now()
      for (const [consumer, at] of Object.entries(consumerLagSources.get(registry)?.() ?? {}))
        this.set({ consumer }, at === null ? 0 : Math.max(0, (now - at) / 1000))
    },
  })
}

/** `quint_bus_dead_letters_waiting{consumer}`: dead letters not yet redriven (all orgs), read at scrape. */
export function registerDeadLetterGauge(registry: Registry, waiting: () => Promise<Record<string, number>>): void {
  if (registry.getSingleMetric('quint_bus_dead_letters_waiting')) return
  new Gauge({
    name: 'quint_bus_dead_letters_waiting',
    help: 'Bus dead letters waiting for a redrive, by consumer (all orgs).',
    labelNames: ['consumer'],
    registers: [registry],
    async collect() {
      this.reset()
      // A scrape while the database is down reports no value rather than failing /metrics.
      const counts = await waiting().catch(() => ({}))
      for (const [consumer, n] of Object.entries(counts)) this.set({ consumer }, n)
    },
  })
}

/** `quint_fleet_streams`: fleet streams held by this instance (docs/fleet-stream.md), read at scrape. */
export function registerFleetStreamsGauge(registry: Registry, held: () => number): void {
  if (registry.getSingleMetric('quint_fleet_streams')) return
  new Gauge({
    name: 'quint_fleet_streams',
    help: 'Fleet streams (GET /v1/machines/{id}/stream) held open by this instance.',
    registers: [registry],
    collect() {
      this.set(held())
    },
  })
}

/**
 * The console's live streams (issue 12, docs/live.md): held here, and the `gap`s they were sent,
 * by topic and reason (fixed sets: `LIVE_TOPICS`, `GapReason` in src/features/live).
 */
export function registerLiveMetrics(registry: Registry, held: () => number): { gaps: Counter<'topic' | 'reason'> } {
  if (!registry.getSingleMetric('quint_live_streams')) {
    new Gauge({
      name: 'quint_live_streams',
      help: 'Console live streams (GET /v1/live) held open by this instance.',
      registers: [registry],
      collect() {
        this.set(held())
      },
    })
  }
  const gaps =
    (registry.getSingleMetric('quint_live_gaps_total') as Counter<'topic' | 'reason'> | undefined) ??
    new Counter({
      name: 'quint_live_gaps_total',
      help: 'Gap events sent on console live streams (something was not sent; the console refetches), by topic and reason.',
      labelNames: ['topic', 'reason'] as const,
      registers: [registry],
    })
  return { gaps }
}
