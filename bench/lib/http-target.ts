/**
 * A server for the http suite, in its own process so the load generator does not share its event
 * loop: `raw` is bare Bun.serve answering the same JSON; `app` is the full quint-cloud Hono stack
 * (request id, access log to stdout, metrics, routing). Prints the port, then serves until killed.
 */
import { buildApp, VERSION } from '../../src/app.ts'
import { CredentialResolver } from '../../src/auth/credentials.ts'
import { loadConfig } from '../../src/config.ts'
import { createPool } from '../../src/infra/db.ts'
import { createLogger } from '../../src/infra/log.ts'
import { createMetrics } from '../../src/infra/metrics.ts'
import { Lifecycle } from '../../src/lifecycle.ts'

const mode = process.argv[2]
let fetchHandler: (req: Request) => Response | Promise<Response>
if (mode === 'raw') {
  fetchHandler = () => Response.json({ status: 'ok', version: VERSION })
} else {
  // /health touches no database; the pool is never connected.
  const sql = createPool({ url: 'postgres://unused@127.0.0.1:1/unused' }, { max: 1 })
  const log = createLogger(process.env.BENCH_LOG_LEVEL ?? 'info')
  const lifecycle = new Lifecycle(log)
  const { app } = buildApp({
    config: loadConfig({}),
    sql,
    log,
    metrics: createMetrics(),
    lifecycle,
    resolver: new CredentialResolver(sql, log),
  })
  lifecycle.markReady()
  fetchHandler = app.fetch
}
const server = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: fetchHandler })
process.stderr.write(`${server.port}\n`)
