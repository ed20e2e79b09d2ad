/**
 * @module features/api-tokens/routes
 * `POST/GET /v1/tokens`, `DELETE /v1/tokens/{id}`, `POST /v1/tokens/{id}/rotate`: every opaque
 * credential's lifecycle (issue 10; docs/tokens.md). The permission each needs depends on the
 * token's kind, so the routes declare `authenticated` and the service decides
 * (src/features/api-tokens/service.ts). Raw values appear once, in a creation or rotation answer.
 */
import type { CredentialResolver } from '../../auth/credentials.ts'
import type { Sql } from '../../infra/db.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, paginate } from '../../http/pagination.ts'
import { CreatedToken, CreateTokenBody, RotateBody, RotatedToken, TokenIdParams, TokenList, TokenListQuery } from './schema.ts'
import { createToken, listVisibleTokens, revokeToken, rotateToken, tokenView } from './service.ts'

export function mountApiTokens(routes: RouteRegistry, deps: { sql: Sql; resolver: CredentialResolver }): void {
  const tags = ['tokens']

  routes.add(
    {
      method: 'post',
      path: '/v1/tokens',
      operationId: 'createApiToken',
      summary: 'Create a personal, service, deploy, enrollment or admin token (the raw value is returned once)',
      tags,
      permission: 'authenticated',
      body: CreateTokenBody,
      idempotent: true,
      responses: {
        201: { description: 'Created', schema: CreatedToken },
        403: { description: 'The caller may not create this kind, or these scopes' },
      },
    },
    async (c, { body }) => {
      const t = await createToken(deps, c.get('principal'), body, c.get('request'))
      return c.json({ ...tokenView(t), token: t.token }, 201)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/tokens',
      operationId: 'listApiTokens',
      summary: 'List tokens, newest first (`manage`: all; a person: their personal tokens); raw values never',
      tags,
      permission: 'authenticated',
      query: TokenListQuery,
      responses: { 200: { description: 'A page of tokens', schema: TokenList } },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const rows = await listVisibleTokens(deps, c.get('principal'), query, limit + 1, decodeCursor(query.cursor))
      const { page, next } = paginate(rows, limit)
      const now = Date.now()
      return c.json({ tokens: page.map((t) => tokenView(t, now)), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'delete',
      path: '/v1/tokens/:id',
      operationId: 'revokeApiToken',
      summary: 'Revoke a token (idempotent); a revoked deploy token keeps only the machines it registered',
      tags,
      permission: 'authenticated',
      params: TokenIdParams,
      responses: { 204: { description: 'Revoked' } },
    },
    async (c, { params }) => {
      await revokeToken(deps, c.get('principal'), params.id, c.get('request'))
      return c.body(null, 204)
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/v1/tokens/:id/rotate',
      operationId: 'rotateApiToken',
      summary: 'Replace an admin, service or personal token; the old one keeps working for overlap_seconds',
      tags,
      permission: 'authenticated',
      params: TokenIdParams,
      body: RotateBody,
      responses: {
        201: { description: 'The new token (raw value once) and the old one with its new expiry', schema: RotatedToken },
        409: { description: 'The token is revoked, expired or was rotated already' },
      },
    },
    async (c, { params, body }) => {
      const r = await rotateToken(deps, c.get('principal'), params.id, body.overlap_seconds ?? 3600, c.get('request'))
      return c.json({ token: { ...tokenView(r.next), token: r.next.token }, previous: tokenView(r.previous) }, 201)
    },
  )
}
