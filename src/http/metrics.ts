/**
 * @module http/metrics
 * RED metrics per route template (never the raw path: ids would explode cardinality) and the
 * `GET /metrics` exposition.
 */
import type { Hono, MiddlewareHandler } from 'hono'
import type { Metrics } from '../infra/metrics.ts'
import type { AppEnv } from './request-context.ts'

export const httpMetrics = (metrics: Metrics): MiddlewareHandler<AppEnv> =>
  async function httpMetrics(c, next) {
    const end = performance.now()
    try {
      await next()
    } finally {
      const route = c.req.routePath === '/*' ? 'unmatched' : c.req.routePath
      const labels = { method: c.req.method, route }
      metrics.httpDuration.observe(labels, (performance.now() - end) / 1000)
      metrics.httpRequests.inc({ ...labels, status: String(c.res.status) })
    }
  }

export function mountMetrics(app: Hono<AppEnv>, metrics: Metrics): void {
  app.get('/metrics', async (c) =>
    c.body(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }),
  )
}
