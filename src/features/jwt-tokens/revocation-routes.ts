/**
 * @module features/jwt-tokens/revocation-routes
 * Revocation of JWT-bearing tokens, on both path styles of SPEC §7.5:
 *   DELETE /revocation/{jti}          body {token_type?, customer_id?, reason?} → {"revoked":true,"jti"}
 *   POST   /revocation/cascade/{jti}  same body → {"revoked_count","revoked_jtis"} (root + every descendant)
 *   DELETE /tokens/{jti}              no body (the proxy client's form)
 *   POST   /revoke/cascade/{jti}      no body
 * Management credentials only. Postgres first (issued_tokens.revoked_at + revocation_log in one
 * tenant transaction), then the caches and the revocation filter. Idempotent: revoking again
 * answers the same and re-announces the jtis. Another org's jti is a 404 (RLS hides it).
 */
import { TypeCompiler } from '@sinclair/typebox/compiler'
import type { Context } from 'hono'
import type { Principal } from '../../auth/credentials.ts'
import { ForbiddenError, NotFoundError, ValidationError } from '../../errors.ts'
import { isUuid, withOrg, type Sql } from '../../infra/db.ts'
import { readJson } from '../../http/body.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import type { AppEnv } from '../../http/request-context.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { recordLive, type LiveRing } from '../live/repo.ts'
import { pendingBelow } from '../overrides/pending.ts'
import { revokeTree, type Revoked } from './repo.ts'
import { JtiParams, RevokeBody } from './schema.ts'
import { checkCustomer, isManagement } from './service.ts'
import { Type, type Static } from '@sinclair/typebox'

export interface RevocationDeps {
  sql: Sql
  /**
   * Called after the commit with every jti of the revoked tree: evict caches, feed the filter.
   * `committedAt` (ms since the epoch) is set on those revoked by this call.
   */
  onRevoked: (entries: { orgId: string; jti: string; committedAt?: number }[]) => Promise<void>
  /** The console's live stream: rung when a revocation ended approval requests (override tokens). */
  live: LiveRing
}

const bodyCheck = TypeCompiler.Compile(RevokeBody)

/** The optional JSON body of a revocation (the client form sends none). */
async function optionalBody(c: Context<AppEnv>): Promise<Static<typeof RevokeBody>> {
  const type = c.req.header('content-type')
  const length = c.req.header('content-length')
  if (type === undefined && (length === undefined || length === '0')) return {}
  const raw = await readJson(c.req.raw, 8 * 1024)
  if (bodyCheck.Check(raw)) return raw
  const errors = [...bodyCheck.Errors(raw)].slice(0, 20).map((e) => ({ path: e.path || '/', message: e.message }))
  throw new ValidationError(errors)
}

export function mountRevocation(routes: RouteRegistry, deps: RevocationDeps): void {
  const tags = ['revocation']

  async function revoke(c: Context<AppEnv>, rawJti: string, cascade: boolean): Promise<Revoked[]> {
    const p = c.get('principal')
    if (!isManagement(p)) throw new ForbiddenError('Revocation needs a management credential.')
    const body = await optionalBody(c)
    checkCustomer(p, body.customer_id)
    const jti = rawJti.toLowerCase()
    if (!isUuid(jti)) throw new NotFoundError('No such token in this organization.')
    let approvalsEnded = false
    const revoked = await withOrg(deps.sql, p.orgId, async (tx) => {
      const rows = await revokeTree(tx, jti, { cascade, reason: body.reason ?? null, revokedBy: actor(p) })
      const root = rows.find((r) => r.jti === jti)
      if (!root || (body.token_type !== undefined && body.token_type !== root.tokenType)) {
        // Nothing written survives: the transaction is rolled back by the throw.
        throw new NotFoundError('No such token in this organization.')
      }
      if (rows.some((r) => r.revokedNow)) {
        await recordAudit(tx, {
          ...auditActor(p),
          action: cascade ? 'jwt.revoke_cascade' : 'jwt.revoke',
          targetType: 'jwt',
          targetId: jti,
          request: c.get('request'),
          details: { revoked: rows.filter((r) => r.revokedNow).length, reason: body.reason ?? null },
        })
        // Approval requests at or below what was revoked now end: the console hears it at
        // commit (docs/live.md `approval`). Last, as every live log writer.
        const ended = await pendingBelow(
          tx,
          rows.filter((r) => r.revokedNow).map((r) => r.jti),
        )
        await recordLive(tx, 'approval', ended)
        approvalsEnded = ended.length > 0
      }
      return rows
    })
    if (approvalsEnded) deps.live.ring([p.orgId])
    // Taken once withOrg has committed: the start of the revocation SLO (issue 14). Tokens that
    // were already revoked are only announced again, not measured.
    const committedAt = Date.now()
    await deps.onRevoked(revoked.map((r) => ({ orgId: p.orgId, jti: r.jti, ...(r.revokedNow ? { committedAt } : {}) })))
    return revoked
  }

  const single = async (c: Context<AppEnv>, jti: string) => {
    await revoke(c, jti, false)
    return c.json({ revoked: true, jti: jti.toLowerCase() })
  }
  const cascade = async (c: Context<AppEnv>, jti: string) => {
    const rows = await revoke(c, jti, true)
    return c.json({ revoked_count: rows.length, revoked_jtis: rows.map((r) => r.jti) })
  }

  const SingleOut = Type.Object({ revoked: Type.Literal(true), jti: Type.String() })
  const CascadeOut = Type.Object({ revoked_count: Type.Integer(), revoked_jtis: Type.Array(Type.String()) })
  const spec = (
    method: 'delete' | 'post',
    path: string,
    operationId: string,
    summary: string,
    out: typeof SingleOut | typeof CascadeOut,
  ) => ({
    method,
    path,
    operationId,
    summary,
    tags,
    permission: 'authenticated' as const,
    params: JtiParams,
    rawBody: RevokeBody,
    responses: { 200: { description: 'Revoked', schema: out } },
  })

  routes.add(
    spec('delete', '/revocation/:jti', 'revokeToken', 'Revoke one token (refused from its next use)', SingleOut),
    (c, { params }) => single(c, params.jti),
  )
  routes.add(
    spec('delete', '/tokens/:jti', 'revokeTokenClient', 'Revoke one token (proxy client path)', SingleOut),
    (c, { params }) => single(c, params.jti),
  )
  routes.add(
    spec('post', '/revocation/cascade/:jti', 'revokeTokenCascade', 'Revoke a token and every descendant', CascadeOut),
    (c, { params }) => cascade(c, params.jti),
  )
  routes.add(
    spec(
      'post',
      '/revoke/cascade/:jti',
      'revokeTokenCascadeClient',
      'Revoke a token and every descendant (proxy client path)',
      CascadeOut,
    ),
    (c, { params }) => cascade(c, params.jti),
  )
}

function actor(p: Principal): string {
  return p.kind === 'jwt' ? `jwt:${p.type}:${p.jti}` : `${p.kind}:${p.tokenId}`
}
