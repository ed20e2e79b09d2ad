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
import type { Static } from '@sinclair/typebox'
import { AppError, NotFoundError, ValidationError, type FieldError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, paginate } from '../../http/pagination.ts'
import { uuidOr, withOrg, type Sql } from '../../infra/db.ts'
import { INVISIBLE, requireName } from '../../lib/names.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import type { FleetRing } from '../fleet/repo.ts'
import { globProblem, requireMachines, scopeOf } from '../policies/routes.ts'
import type { StoredShape } from './flow-match.ts'
import { parseShape } from './flow-shape.ts'
import { announceSignature, getSignature, insertSignature, listSignatures, signatureView, updateSignature } from './repo.ts'
import {
  CreateSignatureBody,
  INDICATOR_KINDS,
  SignatureIdParams,
  SignatureList,
  SignatureListQuery,
  SignatureView,
  UpdateSignatureBody,
} from './schema.ts'

const DOMAIN = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59})$/

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
        const identity = 'value' in what ? what.value : JSON.stringify([what.shape, what.maxJsd])
        const r = await insertSignature(
          tx,
          `${body.kind}:${createHash('sha256').update(identity).digest('hex').slice(0, 40)}`,
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
        await recordAudit(tx, {
          ...auditActor(p),
          action: 'threat_signature.create',
          targetType: 'threat_signature',
          targetId: r.id,
          request: c.get('request'),
          details: { before: null, after: signatureView(r) },
        })
        await announceSignature(tx, r)
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
        const after = await updateSignature(tx, id, {
          name: body.name === undefined ? before.name : requireName(body.name),
          description: body.description === undefined ? before.description : body.description,
          action: body.action ?? before.action,
          severity: body.severity ?? before.severity,
          status: body.status ?? before.status,
          ...scope,
          expiresAt: body.expires_at === undefined ? before.expires_at : expiry(body.expires_at),
        })
        await recordAudit(tx, {
          ...auditActor(p),
          action: 'threat_signature.update',
          targetType: 'threat_signature',
          targetId: id,
          request: c.get('request'),
          details: { fields: Object.keys(body).sort(), before: signatureView(before), after: signatureView(after) },
        })
        await announceSignature(tx, after)
        return after
      })
      fleet.ring([p.orgId])
      return c.json(signatureView(row))
    },
  )
}

/**
 * What the signature matches: an indicator's value, or a flow shape's distribution (each kind
 * takes its own fields only; a flow shape is matched on the server, so its action is `alert`).
 */
export function definition(
  body: Pick<
    Static<typeof CreateSignatureBody>,
    'kind' | 'value' | 'action' | 'shape' | 'max_jsd' | 'agent_types' | 'min_transitions'
  >,
): { value: string } | { shape: StoredShape; maxJsd: number } {
  const shapeFields = (['shape', 'max_jsd', 'agent_types', 'min_transitions'] as const).filter((k) => body[k] !== undefined)
  if (body.kind !== 'flow_shape') {
    if (shapeFields.length > 0) {
      throw new ValidationError(shapeFields.map((k) => ({ path: `/${k}`, message: 'only for kind flow_shape' })))
    }
    if (body.value === undefined) throw new ValidationError([{ path: '/value', message: 'required for this kind' }])
    return { value: indicator(body.kind, body.value) }
  }
  const errors: FieldError[] = []
  if (body.value !== undefined) errors.push({ path: '/value', message: 'a flow shape has no value: give `shape`' })
  if (body.action !== 'alert') {
    errors.push({ path: '/action', message: 'a flow shape is matched on the server, not by daemons: its action is `alert`' })
  }
  const parsed = parseShape({
    shape: body.shape,
    max_jsd: body.max_jsd,
    agent_types: body.agent_types,
    min_transitions: body.min_transitions,
  })
  if (!parsed.ok) errors.push(...parsed.problems.map((p) => ({ path: p.pointer, message: p.detail })))
  if (errors.length > 0 || !parsed.ok) throw new ValidationError(errors)
  const v = parsed.value
  return {
    shape: { shape: v.shape, agent_types: v.agentTypes, min_transitions: v.minTransitions },
    maxJsd: v.maxJsd,
  }
}

/**
 * The value as it is matched (docs/threat-signatures.md), or a 422: what a daemon could not match
 * as it reads, or would match far more widely than it looks, is refused.
 */
export function indicator(kind: (typeof INDICATOR_KINDS)[number], raw: string): string {
  const fail = (message: string): never => {
    throw new ValidationError([{ path: '/value', message }] satisfies FieldError[])
  }
  const value = raw.trim()
  if (INVISIBLE.test(value)) fail('must not contain control, format or separator characters')
  switch (kind) {
    case 'domain': {
      const d = value.toLowerCase()
      if (!DOMAIN.test(d)) fail('a host name with a dot, without a scheme, port, path or `*` (exfil.example)')
      return d
    }
    case 'url': {
      let url: URL | null = null
      try {
        url = new URL(value)
      } catch {
        fail('an absolute http(s) URL')
      }
      if (!url || !/^https?:$/.test(url.protocol) || !DOMAIN.test(url.hostname.toLowerCase())) {
        fail('an absolute http(s) URL with a host name (not an IP address)')
      }
      // The daemon matches a host, never a path: a URL with one would block far more than it says.
      if (url!.pathname !== '/' || url!.search !== '' || url!.hash !== '') {
        fail('the daemon matches hosts, not paths: give the URL without a path, or a domain signature')
      }
      return url!.toString()
    }
    case 'mcp_tool': {
      const why = globProblem(value)
      if (why) fail(why)
      if (value.includes('*')) fail('one tool, by its exact name: no `*`')
      return value
    }
    default:
      // Matched as a substring of a call's arguments: a short value would match nearly everything.
      if (value.replace(/\*/g, '').length < 4)
        fail('at least 4 characters besides `*`: it is matched as a substring of every call')
      // The daemon drops every `*` of a condition: one inside would leave a substring that is not this one.
      if (value.slice(1, -1).includes('*'))
        fail('`*` only at the start or the end: the daemon drops it, joining what is around it')
      return value
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
