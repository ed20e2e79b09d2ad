/**
 * @module features/api-tokens/deploy-routes
 * `POST/GET /v1/deploy-tokens`, `DELETE /v1/deploy-tokens/{id}`: admin-key only. Raw tokens
 * appear once, in the creation response. A revoked token is refused (401) on its next use.
 * A malformed id answers 404 like an unknown one (issue 9: every route answers the same for a
 * bad id; docs/rbac.md "Errors").
 */
import type { CredentialResolver } from '../../auth/credentials.ts'
import { FORMATS } from '../../auth/opaque/format.ts'
import { NotFoundError, ValidationError } from '../../errors.ts'
import { isUuid, withOrg, type Sql } from '../../infra/db.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, encodeCursor, PageQuery } from '../../http/pagination.ts'
import { checkName } from '../../lib/names.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { DEPLOY_SCOPES } from '../orgs/service.ts'
import { issueToken, listTokens, revokeTokens, type TokenRow } from './repo.ts'
import { CreateDeployTokenBody, CreatedDeployToken, DeployTokenList, TokenIdParams } from './deploy-schema.ts'

const KIND = FORMATS.deployToken.kind
const MAX_LIFETIME_MS = 10 * 365 * 24 * 3600 * 1000

export function mountDeployTokens(routes: RouteRegistry, deps: { sql: Sql; resolver: CredentialResolver }): void {
  const { sql, resolver } = deps
  const tags = ['deploy tokens']

  routes.add(
    {
      method: 'post',
      path: '/v1/deploy-tokens',
      operationId: 'createDeployToken',
      summary: 'Create a deploy token for daemons (the raw token is returned once)',
      tags,
      permission: 'manage',
      body: CreateDeployTokenBody,
      idempotent: true,
      responses: { 201: { description: 'Created', schema: CreatedDeployToken } },
    },
    async (c, { body }) => {
      const name = checkName(body.name)
      if (!name.ok) throw new ValidationError([{ path: '/name', message: name.reason }])
      const expiresAt = body.expires_at === undefined ? null : new Date(body.expires_at)
      if (expiresAt && (expiresAt.getTime() <= Date.now() || expiresAt.getTime() > Date.now() + MAX_LIFETIME_MS)) {
        throw new ValidationError([{ path: '/expires_at', message: 'must be in the future and within 10 years' }])
      }
      const p = c.get('principal')
      const issued = await withOrg(sql, p.orgId, async (tx) => {
        const t = await issueToken(tx, {
          format: FORMATS.deployToken,
          name: name.name,
          scopes: DEPLOY_SCOPES,
          expiresAt,
          createdBy: p.tokenId,
        })
        await recordAudit(tx, {
          ...auditActor(p),
          action: 'deploy_token.create',
          targetType: 'api_token',
          targetId: t.id,
          request: c.get('request'),
          details: { name: t.name },
        })
        return t
      })
      return c.json({ ...view(issued), token: issued.token }, 201)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/deploy-tokens',
      operationId: 'listDeployTokens',
      summary: 'List deploy tokens (newest first; raw values are never returned)',
      tags,
      permission: 'manage',
      query: PageQuery,
      responses: { 200: { description: 'A page of deploy tokens', schema: DeployTokenList } },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const rows = await withOrg(sql, c.get('principal').orgId, (tx) =>
        listTokens(tx, KIND, limit + 1, decodeCursor(query.cursor)),
      )
      const page = rows.slice(0, limit)
      const last = page.at(-1)
      const next = rows.length > limit && last ? encodeCursor({ at: last.created_key, id: last.id }) : null
      return c.json({ deploy_tokens: page.map(view), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'delete',
      path: '/v1/deploy-tokens/:id',
      operationId: 'revokeDeployToken',
      summary: 'Revoke a deploy token (idempotent); it is refused from its next use',
      tags,
      permission: 'manage',
      params: TokenIdParams,
      responses: { 204: { description: 'Revoked' } },
    },
    async (c, { params }) => {
      const id = params.id.toLowerCase()
      if (!isUuid(id)) throw tokenNotFound()
      const p = c.get('principal')
      const revoked = await withOrg(sql, p.orgId, async (tx) => {
        const rows = await revokeTokens(tx, { kind: KIND, id })
        if (rows[0]?.revokedNow) {
          await recordAudit(tx, {
            ...auditActor(p),
            action: 'deploy_token.revoke',
            targetType: 'api_token',
            targetId: id,
            request: c.get('request'),
          })
        }
        return rows
      })
      if (revoked.length === 0) throw tokenNotFound()
      // Also when it was already revoked: a publication that failed the first time is repeated.
      await resolver.revoked(revoked)
      return c.body(null, 204)
    },
  )
}

const tokenNotFound = () => new NotFoundError('No deploy token with that id in this organization.')

function view(t: TokenRow) {
  return {
    id: t.id,
    name: t.name,
    token_prefix: t.token_prefix,
    scopes: t.scopes,
    created_at: t.created_at.toISOString(),
    expires_at: t.expires_at?.toISOString() ?? null,
    revoked_at: t.revoked_at?.toISOString() ?? null,
    last_used_at: t.last_used_at?.toISOString() ?? null,
  }
}
