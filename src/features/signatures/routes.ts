/**
 * @module features/signatures/routes
 * `POST`/`GET /v1/threat-signatures`, `GET`/`PATCH /v1/threat-signatures/{id}` (issue 11;
 * docs/threat-signatures.md). An indicator signature (`domain`, `url`, `command`, `file_path`,
 * `mcp_tool`, `prompt_injection`) while active is a rule of the managed policy served to every
 * daemon in its scope (./compile.ts), so each blocks it at its next policy fetch; withdrawn
 * (`expired`, `resolved`, `false_positive`, or past `expires_at`) it leaves that policy at once.
 * Reading needs `read`, creating and changing `manage`; every change is audited with the signature
 * before and after.
 */
import { createHash } from 'node:crypto'
import { AppError, NotFoundError, ValidationError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, paginate } from '../../http/pagination.ts'
import { uuidOr, withOrg, type Sql, type Tx } from '../../infra/db.ts'
import { requireName } from '../../lib/names.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import type { FleetRing } from '../fleet/repo.ts'
import { requireMachines, scopeOf } from '../policies/routes.ts'
import { definition, identityOf } from './definition.ts'
import { announceSignature, getSignature, insertSignature, listSignatures, signatureView, updateSignature } from './repo.ts'
import {
  CreateSignatureBody,
  SignatureIdParams,
  SignatureList,
  SignatureListQuery,
  SignatureView,
  UpdateSignatureBody,
} from './schema.ts'

export function mountSignatures(routes: RouteRegistry, deps: { sql: Sql; fleet: FleetRing }): void {
  const { sql, fleet } = deps
  const tags = ['threat signatures']

  routes.add(
    {
      method: 'post',
      path: '/v1/threat-signatures',
      operationId: 'createThreatSignature',
      summary: 'Create an indicator signature; while active, every daemon in its scope enforces it from its next fetch',
      tags,
      permission: 'manage',
      body: CreateSignatureBody,
      idempotent: true,
      responses: {
        201: { description: 'Created', schema: SignatureView },
        409: { description: 'The org has a signature of this kind and value already' },
      },
    },
    async (c, { body }) => {
      const p = c.get('principal')
      const what = definition(body)
      const row = await withOrg(sql, p.orgId, async (tx) => {
        const scope = scopeOf(body.scope ?? { all: true })
        await requireMachines(tx, scope.machineIds)
        if ('shape' in what) await requireShapeRoom(tx, null)
        const r = await insertSignature(
          tx,
          `${body.kind}:${createHash('sha256').update(identityOf(what)).digest('hex').slice(0, 40)}`,
          body.kind,
          what,
          {
            name: requireName(body.name),
            description: body.description ?? null,
            action: body.action,
            severity: body.severity,
            status: 'active',
            ...scope,
            expiresAt: expiry(body.expires_at),
          },
          p.tokenId,
        )
        if (!r)
          throw new AppError(409, 'signature_exists', `The organization has a ${body.kind} signature for this value already.`)
        // The fleet log's lock before the audit's (the same order in every transaction: no deadlock).
        await announceSignature(tx, r)
        await recordAudit(tx, {
          ...auditActor(p),
          action: 'threat_signature.create',
          targetType: 'threat_signature',
          targetId: r.id,
          request: c.get('request'),
          details: { before: null, after: signatureView(r) },
        })
        return r
      })
      fleet.ring([p.orgId])
      return c.json(signatureView(row), 201)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/threat-signatures',
      operationId: 'listThreatSignatures',
      summary: 'Threat signatures, newest first',
      tags,
      permission: 'read',
      query: SignatureListQuery,
      responses: { 200: { description: 'A page of signatures', schema: SignatureList } },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const rows = await withOrg(sql, c.get('principal').orgId, (tx) =>
        listSignatures(tx, { status: query.status, kind: query.kind }, limit + 1, decodeCursor(query.cursor)),
      )
      const { page, next } = paginate(rows, limit)
      return c.json({ threat_signatures: page.map(signatureView), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/threat-signatures/:id',
      operationId: 'getThreatSignature',
      summary: 'One threat signature',
      tags,
      permission: 'read',
      params: SignatureIdParams,
      responses: { 200: { description: 'The signature', schema: SignatureView } },
    },
    async (c, { params }) => {
      const row = await withOrg(sql, c.get('principal').orgId, (tx) => getSignature(tx, signatureId(params.id)))
      if (!row) throw signatureNotFound()
      return c.json(signatureView(row))
    },
  )

  routes.add(
    {
      method: 'patch',
      path: '/v1/threat-signatures/:id',
      operationId: 'updateThreatSignature',
      summary: 'Expire, resolve, mark false positive or reactivate a signature, or change its action, severity, scope or expiry',
      tags,
      permission: 'manage',
      params: SignatureIdParams,
      body: UpdateSignatureBody,
      responses: { 200: { description: 'The signature after the change', schema: SignatureView } },
    },
    async (c, { params, body }) => {
      const id = signatureId(params.id)
      const p = c.get('principal')
      const row = await withOrg(sql, p.orgId, async (tx) => {
        const before = await getSignature(tx, id, true)
        if (!before) throw signatureNotFound()
        const scope = body.scope ? scopeOf(body.scope) : { machineIds: before.scope_machine_ids, tags: before.scope_tags }
        await requireMachines(tx, scope.machineIds)
        if (before.kind === 'flow_shape') {
          if (body.action !== undefined && body.action !== 'alert') {
            throw new ValidationError([
              { path: '/action', message: 'a flow shape is matched on the server, not by daemons: its action is `alert`' },
            ])
          }
          if (body.status === 'active' && before.status !== 'active') await requireShapeRoom(tx, id)
        }
        const after = await updateSignature(tx, id, {
          name: body.name === undefined ? before.name : requireName(body.name),
          description: body.description === undefined ? before.description : body.description,
          action: body.action ?? before.action,
          severity: body.severity ?? before.severity,
          status: body.status ?? before.status,
          ...scope,
          expiresAt: body.expires_at === undefined ? before.expires_at : expiry(body.expires_at),
        })
        await announceSignature(tx, after, before)
        await recordAudit(tx, {
          ...auditActor(p),
          action: 'threat_signature.update',
          targetType: 'threat_signature',
          targetId: id,
          request: c.get('request'),
          details: { fields: Object.keys(body).sort(), before: signatureView(before), after: signatureView(after) },
        })
        return after
      })
      fleet.ring([p.orgId])
      return c.json(signatureView(row))
    },
  )
}

/** Active flow shapes an org may have: each is matched on every event of every session. */
export const MAX_ACTIVE_SHAPES = 50

async function requireShapeRoom(tx: Tx, except: string | null): Promise<void> {
  const [row] = await tx<{ n: number }[]>`
    select count(*)::int as n from threat_signatures
     where kind = 'flow_shape' and status = 'active' and id is distinct from ${except}::uuid`
  if (row!.n >= MAX_ACTIVE_SHAPES) {
    throw new ValidationError([
      { path: '/', message: `an organization has at most ${MAX_ACTIVE_SHAPES} active flow shapes: expire one first` },
    ])
  }
}

function expiry(raw: string | null | undefined): Date | null {
  if (raw === undefined || raw === null) return null
  const at = new Date(raw)
  if (!(at.getTime() > Date.now())) throw new ValidationError([{ path: '/expires_at', message: 'must be in the future' }])
  return at
}

const signatureId = (raw: string) => uuidOr(raw, signatureNotFound)

const signatureNotFound = () => new NotFoundError('No threat signature with that id in this organization.')
