/**
 * @module http/health
 * `GET /health`: liveness, no dependency checks (a database outage must not get healthy tasks
 * restarted). `GET /ready`: 503 while starting or draining, or when the database does not answer.
 */
import type { Hono } from 'hono'
import type { Sql } from '../infra/db.ts'
import type { Lifecycle } from '../lifecycle.ts'
import { problem } from './problem.ts'
import type { AppEnv } from './request-context.ts'

export function mountHealth(app: Hono<AppEnv>, deps: { lifecycle: Lifecycle; sql: Sql; version: string }): void {
  app.get('/health', (c) => c.json({ status: 'ok', version: deps.version }))

  // One database probe at a time, reused for a second, so probes cannot pile onto the pool.
  let probe: { at: number; ok: Promise<boolean> } | null = null
  const databaseOk = () => {
    const now = Date.now()
    if (!probe || now - probe.at > 1000) {
      probe = {
        at: now,
        ok: Promise.race([
          deps.sql`select 1`.then(
            () => true,
            () => false,
          ),
          Bun.sleep(2000).then(() => false),
        ]),
      }
    }
    return probe.ok
  }

  app.get('/ready', async (c) => {
    const state = deps.lifecycle.state
    const detail = state !== 'ready' ? `The service is ${state}.` : (await databaseOk()) ? null : 'The database does not answer.'
    if (detail) {
      const instance = `urn:request:${c.get('requestId')}`
      return problem({ status: 503, code: 'not_ready', detail, instance, headers: { 'Retry-After': '5' } })
    }
    return c.json({ status: 'ready' })
  })
}
