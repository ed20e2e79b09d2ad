/**
 * @module features/jwt-tokens/keys-routes
 * Signing keys: `POST /keys/signing` (the active key, created if the org has none),
 * `POST /keys/{kid}/rotate` (management), and the unauthenticated `GET /keys/public/{org_id}`
 * the edge proxy fetches (SPEC §4.4, §17 item 12): every key still verifying as EC P-256 JWKs
 * plus the active key's PEM. An unknown or malformed org id is a 404.
 */
import { KeyNotFoundError, type KeyRow, type SigningKeys } from '../../auth/jwt/keys.ts'
import { ForbiddenError, NotFoundError } from '../../errors.ts'
import { isUuid, withOrg, type Sql } from '../../infra/db.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { KeyOrgBody, KidParams, OrgParams, PublicKeys, SigningKeyView } from './schema.ts'
import { checkCustomer, isManagement } from './service.ts'

export function mountSigningKeys(routes: RouteRegistry, deps: { sql: Sql; keys: SigningKeys }): void {
  const { sql, keys } = deps
  const tags = ['signing keys']

  routes.add(
    {
      method: 'post',
      path: '/keys/signing',
      operationId: 'ensureSigningKey',
      summary: "The org's active ES256 signing key (created when it has none)",
      tags,
      permission: 'authenticated',
      body: KeyOrgBody,
      idempotent: true,
      responses: {
        200: { description: 'The active key', schema: SigningKeyView },
        201: { description: 'Created', schema: SigningKeyView },
      },
    },
    async (c, { body }) => {
      const p = c.get('principal')
      if (!isManagement(p)) throw new ForbiddenError('Signing keys need a management credential.')
      checkCustomer(p, body.customer_id)
      const { row, created } = await keys.ensureActive(p.orgId)
      // Created here on demand (or by the first mint): recorded after its commit, as it changes
      // nothing that was there before.
      if (created) {
        await withOrg(sql, p.orgId, (tx) =>
          recordAudit(tx, {
            ...auditActor(p),
            action: 'signing_key.create',
            targetType: 'signing_key',
            targetId: row.kid,
            request: c.get('request'),
            details: { before: null, after: keyView(row) },
          }),
        )
      }
      return c.json(keyView(row), created ? 201 : 200)
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/keys/:kid/rotate',
      operationId: 'rotateSigningKey',
      summary: 'Retire the active key (it keeps verifying until every token it signed has expired) and activate a new one',
      tags,
      permission: 'authenticated',
      params: KidParams,
      body: KeyOrgBody,
      // A retried rotation would otherwise be a 404 (the kid it names is no longer active).
      idempotent: true,
      responses: { 201: { description: 'The new active key', schema: SigningKeyView } },
    },
    async (c, { params, body }) => {
      const p = c.get('principal')
      if (!isManagement(p)) throw new ForbiddenError('Signing keys need a management credential.')
      checkCustomer(p, body.customer_id)
      let row: KeyRow
      try {
        row = await keys.rotate(p.orgId, params.kid, (tx, fresh) =>
          recordAudit(tx, {
            ...auditActor(p),
            action: 'signing_key.rotate',
            targetType: 'signing_key',
            targetId: fresh.kid,
            request: c.get('request'),
            details: { retired_kid: params.kid, before: { active_kid: params.kid }, after: { active_kid: fresh.kid } },
          }),
        )
      } catch (err) {
        if (err instanceof KeyNotFoundError) throw new NotFoundError('No active signing key with that id in this organization.')
        throw err
      }
      return c.json(keyView(row), 201)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/keys/public/:org_id',
      operationId: 'publicSigningKeys',
      summary: "Public keys that verify this org's tokens (JWKs) and the active key as PEM; no auth",
      tags,
      permission: 'public',
      params: OrgParams,
      responses: { 200: { description: 'Keys', schema: PublicKeys } },
    },
    async (c, { params }) => {
      const orgId = params.org_id.toLowerCase()
      if (!isUuid(orgId)) throw new NotFoundError('No such organization.')
      let rows = await keys.verifyingKeys(orgId)
      if (rows.length === 0) {
        const [org] = await withOrg(sql, orgId, (tx) => tx`select 1 from organizations where id = ${orgId}`)
        if (!org) throw new NotFoundError('No such organization.')
        await keys.ensureActive(orgId)
        rows = await keys.verifyingKeys(orgId)
      }
      const active = rows.find((r) => r.status === 'active') ?? rows[0]!
      c.header('Cache-Control', 'public, max-age=300')
      return c.json({ org_id: orgId, customer_id: orgId, keys: rows.map((r) => r.public_jwk), public_key: active.public_pem })
    },
  )
}

function keyView(r: KeyRow) {
  return {
    key_id: r.kid,
    kid: r.kid,
    public_key: r.public_pem,
    key_type: 'ES256' as const,
    jwk: r.public_jwk as unknown as Record<string, unknown>,
    status: r.status,
    created_at: r.created_at.toISOString(),
  }
}
