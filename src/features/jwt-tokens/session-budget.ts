/**
 * @module features/jwt-tokens/session-budget
 * `max_events` of session tokens (SPEC §4.1): events submitted under one `qt_session_` token are
 * counted in `auth.issued_tokens.events_used` with one atomic UPDATE per request, so every
 * instance draws on the same budget; a request that would pass it is refused whole with 429 and
 * takes nothing. The count is of events submitted (the body's `events` array, else 1), taken
 * before the route runs: a batch later refused for validation still counts, which errs on the
 * side of the limit. Other credentials pass straight through.
 */
import type { MiddlewareHandler } from 'hono'
import { RateLimitedError } from '../../errors.ts'
import { readEventBatch } from '../ingest/batch.ts'
import { MAX_BATCH_BYTES } from '../ingest/routes.ts'
import { withOrg, type Sql } from '../../infra/db.ts'
import type { AppEnv } from '../../http/request-context.ts'
import { takeSessionEvents } from './repo.ts'

/**
 * Events in a body: `{"events":[…]}` counts its items; anything else is one. Read exactly as the
 * ingest routes read it (decoded gzip/deflate, bounded, scanned without parsing: issue 14), so a
 * compressed batch counts every event it carries and a hostile one costs no JSON.parse here.
 */
async function eventsIn(req: Request): Promise<number> {
  try {
    return Math.max(1, (await readEventBatch(req.clone() as Request, MAX_BATCH_BYTES)).items.length)
  } catch {
    return 1
  }
}

export const sessionEventBudget = (sql: Sql): MiddlewareHandler<AppEnv> =>
  async function sessionEventBudget(c, next) {
    const p = c.get('principal')
    if (p?.kind === 'jwt' && p.type === 'session' && p.maxEvents !== undefined && c.req.method === 'POST') {
      const n = await eventsIn(c.req.raw)
      const ok = await withOrg(sql, p.orgId, (tx) => takeSessionEvents(tx, p.jti, n, p.maxEvents!))
      if (!ok) {
        // The budget never refills: retrying cannot help before the token expires.
        const retry = Math.max(1, p.exp - Math.floor(Date.now() / 1000))
        throw new RateLimitedError(`This session token has used its max_events budget of ${p.maxEvents}.`, retry)
      }
    }
    await next()
  }
