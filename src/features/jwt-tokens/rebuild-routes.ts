/**
 * @module features/jwt-tokens/rebuild-routes
 * `POST /bloom/rebuild` (SPEC §7.5, §16.5): rebuilds the JWT revocation filter from Postgres and
 * swaps it in atomically (docs/revocation.md); with Redis, as a new shared generation that every
 * instance loads. Answers `{"generation","count"}`.
 *
 * Management credentials only. The filter is process-wide, not per org, so the call is bounded
 * per instance: one rebuild at a time (409 `rebuild_in_progress` while one runs, rather than
 * queueing a second full scan behind it) and at most one per REBUILD_EVERY_MS (429 + Retry-After).
 * A rebuild never makes a revoked token valid: adds during it go into both filters, and a failed
 * one leaves the old filter in place.
 */
import { Type } from '@sinclair/typebox'
import type { RevocationFilter } from '../../auth/jwt/revocation-filter.ts'
import { AppError, ForbiddenError, RateLimitedError } from '../../errors.ts'
import { withOrg, type Sql } from '../../infra/db.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { revokedForFilter } from './repo.ts'
import { isManagement } from './service.ts'

export const REBUILD_EVERY_MS = 10_000

export interface RebuildDeps {
  sql: Sql
  filter: Pick<RevocationFilter, 'rebuild'>
  clockSkewS: number
  minIntervalMs?: number
  /**
   * After the swap: the validator drops its validated-token cache, so a revocation this rebuild
   * brought in (one the old filter had missed) is refused from the next request here.
   */
  onRebuilt?: () => void
}

const RebuildOut = Type.Object({ generation: Type.String(), count: Type.Integer() })

export function mountFilterRebuild(routes: RouteRegistry, deps: RebuildDeps): void {
  const every = deps.minIntervalMs ?? REBUILD_EVERY_MS
  let running = false
  let lastStart = -Infinity
  routes.add(
    {
      method: 'post',
      path: '/bloom/rebuild',
      operationId: 'rebuildRevocationFilter',
      summary: 'Rebuild the revocation bloom filter from Postgres (management; once per 10 s per instance)',
      tags: ['revocation'],
      permission: 'authenticated',
      responses: { 200: { description: 'The new generation and how many revoked jtis it holds', schema: RebuildOut } },
    },
    async (c) => {
      const p = c.get('principal')
      if (!isManagement(p)) throw new ForbiddenError('Rebuilding the revocation filter needs a management credential.')
      const filter = deps.filter
      if (running) throw new AppError(409, 'rebuild_in_progress', 'A rebuild is already running on this instance.')
      const now = Date.now()
      if (now - lastStart < every) {
        throw new RateLimitedError(
          'The revocation filter was rebuilt moments ago.',
          Math.max(1, Math.ceil((lastStart + every - now) / 1000)),
        )
      }
      running = true
      lastStart = now
      let out: { generation: string; count: number }
      try {
        // Read when iterated, after the rebuild has begun (docs/revocation.md "Rebuilds are atomic").
        const sql = deps.sql
        const skew = deps.clockSkewS
        out = await filter.rebuild(
          (async function* () {
            yield* await revokedForFilter(sql, skew)
          })(),
        )
      } finally {
        running = false
      }
      deps.onRebuilt?.()
      await withOrg(deps.sql, p.orgId, (tx) =>
        recordAudit(tx, {
          ...auditActor(p),
          action: 'revocation_filter.rebuild',
          targetType: 'revocation_filter',
          targetId: out.generation,
          request: c.get('request'),
          details: { count: out.count },
        }),
      )
      return c.json(out)
    },
  )
}
