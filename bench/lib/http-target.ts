/**
 * A server for the http suite, in its own process so the load generator does not share its event
 * loop: `raw` is bare Bun.serve answering the same JSON; `app` is the full quint-cloud Hono stack
 * (request id, access log to stdout, metrics, routing). Prints the port, then serves until killed.
 */
import { offlineApp, VERSION } from '../../src/app.ts'
import { loadConfig } from '../../src/config.ts'
import { createLogger } from '../../src/infra/log.ts'

const mode = process.argv[2]
const fetchHandler: (req: Request) => Response | Promise<Response> =
  mode === 'raw'
    ? () => Response.json({ status: 'ok', version: VERSION })
    : offlineApp(loadConfig({}), createLogger(process.env.BENCH_LOG_LEVEL ?? 'info')).app.fetch
const server = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: fetchHandler })
process.stderr.write(`${server.port}\n`)
