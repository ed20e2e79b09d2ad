/**
 * @module features/api-tokens/deploy-routes
 * `POST/GET /v1/deploy-tokens`, `DELETE /v1/deploy-tokens/{id}` (SPEC §7.4): the deploy-token
 * view of `/v1/tokens`, kept for the clients that call it, through the same service. Raw tokens
 * appear once, in the creation response. A revoked deploy token registers no new machine and
 * keeps serving the machines it registered (docs/tokens.md).
 */
import type { CredentialResolver } from '../../auth/credentials.ts'
import type { Sql } from '../../infra/db.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, PageQuery, paginate } from '../../http/pagination.ts'
import { CreateDeployTokenBody, CreatedDeployToken, DeployTokenList, TokenIdParams } from './deploy-schema.ts'
import type { TokenRow } from './repo.ts'
import { createToken, listVisibleTokens, revokeToken, tokenView } from './service.ts'

export function mountDeployTokens(routes: RouteRegistry, deps: { sql: Sql; resolver: CredentialResolver }): void {
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
      const t = await createToken(deps, c.get('principal'), { kind: 'deploy', ...body }, c.get('request'))
      return c.json({ ...view(t), token: t.token }, 201)
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
      const rows = await listVisibleTokens(deps, c.get('principal'), { kind: 'deploy' }, limit + 1, decodeCursor(query.cursor))
      const { page, next } = paginate(rows, limit)
      return c.json({ deploy_tokens: page.map(view), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'delete',
      path: '/v1/deploy-tokens/:id',
      operationId: 'revokeDeployToken',
      summary: 'Revoke a deploy token (idempotent): no new machine registers with it; its machines keep working',
      tags,
      permission: 'manage',
      params: TokenIdParams,
      responses: { 204: { description: 'Revoked' } },
    },
    async (c, { params }) => {
      await revokeToken(deps, c.get('principal'), params.id, c.get('request'), ['deploy'])
      return c.body(null, 204)
    },
  )
}

/** The SPEC §7.4 deploy-token shape: the fields of the token view it has. */
function view(t: TokenRow) {
  const { id, name, token_prefix, scopes, created_at, expires_at, revoked_at, last_used_at } = tokenView(t)
  return { id, name, token_prefix, scopes, created_at, expires_at, revoked_at, last_used_at }
}
