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
}

export interface MetricsOptions {
  /** Bus batches waiting per consumer, read at each scrape (consumer lag). */
  backlog?: () => Promise<Record<string, number>>
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
  return {
    registry,
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
    redisFallbacks: new Counter({
      name: 'quint_redis_fallbacks_total',
      help: 'Redis operations that failed or timed out and fell back to the local path, by operation.',
      labelNames: ['op'],
      registers: [registry],
    }),
  }
}

/** What the revocation filter's gauges read (src/auth/revocation-filter.ts `stats()`). */
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
