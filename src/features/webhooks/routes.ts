/**
 * @module features/webhooks/routes
 * `/v1/webhooks*` (admin scope) and the SPEC §7.5 `POST /webhooks/register`. A secret is returned
 * once, at creation or rotation, and stored sealed. A malformed id answers 404 like an unknown
 * one, and another org's webhook or delivery is invisible under RLS: "not yours" and "does not
 * exist" are the same answer. Changes are audited (never with the secret or the full URL).
 *
 * Longer than ~400 lines: the ten routes of one resource and its SPEC §7.5 alias, each a short
 * handler over the same validation and audit helpers kept here.
 */
import { createHash } from 'node:crypto'
import type { Context } from 'hono'
import type { SecretBox } from '../../auth/secret-box.ts'
import { AppError, NotFoundError, ValidationError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, paginate, PageQuery } from '../../http/pagination.ts'
import type { AppEnv } from '../../http/request-context.ts'
import { isUuid, withOrg, type Sql, type Tx } from '../../infra/db.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { enqueueTestPing, markDue } from './queue.ts'
import {
  deleteWebhook,
  getDelivery,
  getWebhook,
  insertWebhook,
  listDeliveries,
  listWebhooks,
  requeueDelivery,
  rotateSecret,
  secretContext,
  updateWebhook,
  type DeliveryRow,
  type WebhookRow,
} from './repo.ts'
import {
  CreatedWebhookView,
  CreateWebhookBody,
  DeliveryList,
  DeliveryListQuery,
  DeliveryParams,
  DeliveryView,
  IdParams,
  QueuedView,
  RegisterBody,
  RegisteredView,
  RotatedSecretView,
  RotateSecretBody,
  UpdateWebhookBody,
  WebhookList,
  WebhookView,
} from './schema.ts'
import { newSecret } from './signing.ts'
import { checkWebhookUrl, type TargetPolicy } from './url-guard.ts'

const DEFAULT_GRACE_S = 86_400

export function mountWebhooks(routes: RouteRegistry, deps: { sql: Sql; secrets: SecretBox; policy: TargetPolicy }): void {
  const { sql, secrets, policy } = deps
  const tags = ['webhooks']

  const validUrl = (raw: string, pointer: string) => {
    const checked = checkWebhookUrl(raw, policy, pointer)
    if (!checked.ok) throw new ValidationError(checked.errors, 'The webhook URL is not allowed.')
    return checked.url
  }

  /** Creates a webhook with a fresh secret; returns the row and the secret (shown once). */
  async function create(c: Ctx, w: { url: string; description: string | null; eventTypes: string[] }) {
    const p = c.get('principal')
    const secret = newSecret()
    const row = await withOrg(sql, p.orgId, async (tx) => {
      const r = await insertWebhook(tx, w, (id) => secrets.seal(secret, secretContext(p.orgId, id)))
      await audit(tx, c, 'webhook.create', r.id, { before: null, after: auditView(r) })
      return r
    })
    return { row, secret }
  }

  routes.add(
    {
      method: 'post',
      path: '/v1/webhooks',
      operationId: 'createWebhook',
      summary: 'Register a webhook endpoint; the signing secret is returned once',
      tags,
      permission: 'manage',
      body: CreateWebhookBody,
      idempotent: true,
      responses: { 201: { description: 'Created (with `secret`, shown once)', schema: CreatedWebhookView } },
    },
    async (c, { body }) => {
      const url = validUrl(body.url, '/url')
      const { row, secret } = await create(c, { url, description: body.description ?? null, eventTypes: body.event_types ?? [] })
      return c.json({ ...webhookView(row), secret }, 201)
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/webhooks/register',
      operationId: 'registerWebhook',
      summary: "SPEC §7.5 form of webhook registration (customer_id must be the caller's org)",
      tags,
      permission: 'manage',
      body: RegisterBody,
      idempotent: true,
      responses: { 201: { description: 'Registered', schema: RegisteredView } },
    },
    async (c, { body }) => {
      // Another org's id, or nonsense, is "no such customer" for this credential.
      if (body.customer_id.toLowerCase() !== c.get('principal').orgId)
        throw new NotFoundError('No such customer for this credential.')
      const url = validUrl(body.endpoint_url, '/endpoint_url')
      const { row, secret } = await create(c, { url, description: null, eventTypes: [] })
      return c.json({ webhook_id: row.id, endpoint_url: row.url, secret }, 201)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/webhooks',
      operationId: 'listWebhooks',
      summary: 'List webhooks (newest first; secrets are never returned)',
      tags,
      permission: 'manage',
      query: PageQuery,
      responses: { 200: { description: 'A page of webhooks', schema: WebhookList } },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const rows = await withOrg(sql, c.get('principal').orgId, (tx) => listWebhooks(tx, limit + 1, decodeCursor(query.cursor)))
      const { page, next } = paginate(rows, limit)
      return c.json({ webhooks: page.map(webhookView), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/webhooks/:id',
      operationId: 'getWebhook',
      summary: 'Get one webhook',
      tags,
      permission: 'manage',
      params: IdParams,
      responses: { 200: { description: 'The webhook', schema: WebhookView } },
    },
    async (c, { params }) => {
      const id = webhookId(params.id)
      const row = await withOrg(sql, c.get('principal').orgId, (tx) => getWebhook(tx, id))
      if (!row) throw webhookNotFound()
      return c.json(webhookView(row))
    },
  )

  routes.add(
    {
      method: 'patch',
      path: '/v1/webhooks/:id',
      operationId: 'updateWebhook',
      summary: 'Change a webhook: url, description, event_types, enabled (fields given only)',
      tags,
      permission: 'manage',
      params: IdParams,
      body: UpdateWebhookBody,
      responses: { 200: { description: 'The updated webhook', schema: WebhookView } },
    },
    async (c, { params, body }) => {
      const id = webhookId(params.id)
      const url = body.url === undefined ? undefined : validUrl(body.url, '/url')
      const row = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const before = await getWebhook(tx, id, { lock: true })
        const r = before && (await updateWebhook(tx, id, { ...body, url }))
        if (before && r) {
          await audit(tx, c, 'webhook.update', id, {
            fields: Object.keys(body).sort(),
            before: auditView(before),
            after: auditView(r),
          })
        }
        return r
      })
      if (!row) throw webhookNotFound()
      return c.json(webhookView(row))
    },
  )

  routes.add(
    {
      method: 'delete',
      path: '/v1/webhooks/:id',
      operationId: 'deleteWebhook',
      summary: 'Delete a webhook and its delivery log',
      tags,
      permission: 'manage',
      params: IdParams,
      responses: { 204: { description: 'Deleted' } },
    },
    async (c, { params }) => {
      const id = webhookId(params.id)
      const deleted = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const r = await deleteWebhook(tx, id)
        if (r) await audit(tx, c, 'webhook.delete', id, { before: auditView(r), after: null })
        return r
      })
      if (!deleted) throw webhookNotFound()
      return c.body(null, 204)
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/v1/webhooks/:id/rotate-secret',
      operationId: 'rotateWebhookSecret',
      summary: 'Replace the signing secret; the old one keeps signing beside it for a grace period',
      tags,
      permission: 'manage',
      params: IdParams,
      body: RotateSecretBody,
      idempotent: true,
      responses: { 200: { description: 'The new secret (shown once)', schema: RotatedSecretView } },
    },
    async (c, { params, body }) => {
      const id = webhookId(params.id)
      const p = c.get('principal')
      const grace = body.grace_period_seconds ?? DEFAULT_GRACE_S
      const secret = newSecret()
      const row = await withOrg(sql, p.orgId, async (tx) => {
        const r = await rotateSecret(tx, id, secrets.seal(secret, secretContext(p.orgId, id)), grace)
        // The secrets themselves never: their change is what the entry says.
        if (r) await audit(tx, c, 'webhook.rotate_secret', id, { grace_period_seconds: grace, after: auditView(r) })
        return r
      })
      if (!row) throw webhookNotFound()
      return c.json({ id: row.id, secret, previous_secret_expires_at: row.previous_secret_expires_at?.toISOString() ?? null })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/webhooks/:id/deliveries',
      operationId: 'listWebhookDeliveries',
      summary: 'The delivery log of a webhook, newest first, with every attempt',
      tags,
      permission: 'manage',
      params: IdParams,
      query: DeliveryListQuery,
      responses: { 200: { description: 'A page of deliveries', schema: DeliveryList } },
    },
    async (c, { params, query }) => {
      const id = webhookId(params.id)
      const limit = query.limit ?? 50
      const after = decodeCursor(query.cursor)
      const rows = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        if (!(await getWebhook(tx, id))) return null
        return listDeliveries(tx, id, query.status, limit + 1, after)
      })
      if (!rows) throw webhookNotFound()
      const { page, next } = paginate(rows, limit)
      return c.json({ deliveries: page.map(deliveryView), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/webhooks/:id/deliveries/:delivery_id',
      operationId: 'getWebhookDelivery',
      summary: 'One delivery with its attempts',
      tags,
      permission: 'manage',
      params: DeliveryParams,
      responses: { 200: { description: 'The delivery', schema: DeliveryView } },
    },
    async (c, { params }) => {
      const [id, deliveryId] = deliveryIds(params)
      const row = await withOrg(sql, c.get('principal').orgId, (tx) => getDelivery(tx, id, deliveryId))
      if (!row) throw deliveryNotFound()
      return c.json(deliveryView(row))
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/v1/webhooks/:id/deliveries/:delivery_id/redeliver',
      operationId: 'redeliverWebhookDelivery',
      summary: 'Send a delivery again (same webhook-id), as a new round of attempts',
      tags,
      permission: 'manage',
      params: DeliveryParams,
      idempotent: true,
      responses: { 202: { description: 'Queued', schema: QueuedView } },
    },
    async (c, { params }) => {
      const [id, deliveryId] = deliveryIds(params)
      const row = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const w = await getWebhook(tx, id)
        if (!w) return null
        if (!w.enabled) throw disabledConflict()
        const d = await requeueDelivery(tx, id, deliveryId)
        if (d === 'not_found') return null
        if (d === 'in_progress') throw inProgressConflict()
        await markDue(tx, new Date(0))
        await audit(tx, c, 'webhook.redeliver', id, { delivery_id: deliveryId })
        return d.row
      })
      if (!row) throw deliveryNotFound()
      return c.json({ delivery_id: row.id, message_id: row.message_id, status: 'pending' as const }, 202)
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/v1/webhooks/:id/test',
      operationId: 'testWebhook',
      summary: 'Queue a `webhook.test` ping to the endpoint (watch its delivery log for the outcome)',
      tags,
      permission: 'manage',
      params: IdParams,
      idempotent: true,
      responses: { 202: { description: 'Queued', schema: QueuedView } },
    },
    async (c, { params }) => {
      const id = webhookId(params.id)
      const queued = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const w = await getWebhook(tx, id)
        if (!w) return null
        if (!w.enabled) throw disabledConflict()
        return enqueueTestPing(tx, id)
      })
      if (!queued) throw webhookNotFound()
      return c.json({ delivery_id: queued.id, message_id: queued.message_id, status: 'pending' as const }, 202)
    },
  )
}

type Ctx = Context<AppEnv>

function audit(tx: Tx, c: Ctx, action: string, targetId: string, details: Record<string, unknown>) {
  return recordAudit(tx, {
    ...auditActor(c.get('principal')),
    action,
    targetType: 'webhook',
    targetId,
    request: c.get('request'),
    details,
  })
}

const webhookNotFound = () => new NotFoundError('No webhook with that id in this organization.')
const deliveryNotFound = () => new NotFoundError('No such delivery of that webhook in this organization.')
const inProgressConflict = () =>
  new AppError(
    409,
    'delivery_in_progress',
    'The delivery is still pending (queued, being sent, or waiting for its next retry); redeliver it once it has succeeded, failed or is dead.',
  )

const disabledConflict = () =>
  new AppError(409, 'webhook_disabled', 'The webhook is disabled; enable it (PATCH {"enabled": true}) before sending to it.')

function webhookId(raw: string): string {
  const id = raw.toLowerCase()
  if (!isUuid(id)) throw webhookNotFound()
  return id
}

function deliveryIds(params: { id: string; delivery_id: string }): [string, string] {
  const id = params.id.toLowerCase()
  const deliveryId = params.delivery_id.toLowerCase()
  if (!isUuid(id) || !isUuid(deliveryId)) throw deliveryNotFound()
  return [id, deliveryId]
}

function webhookView(w: WebhookRow) {
  return {
    id: w.id,
    url: w.url,
    description: w.description,
    event_types: w.event_types,
    enabled: w.enabled,
    disabled_reason: w.disabled_reason,
    previous_secret_expires_at: w.previous_secret_expires_at?.toISOString() ?? null,
    created_at: w.created_at.toISOString(),
    updated_at: w.updated_at.toISOString(),
  }
}

/**
 * A webhook as the audit log records it: the URL by host and fingerprint only, as its path is
 * often the secret (Slack, Teams, …); a changed fingerprint says the URL changed.
 */
function auditView(w: WebhookRow) {
  const { url, ...rest } = webhookView(w)
  return { ...rest, url_host: new URL(url).host, url_sha256: createHash('sha256').update(url).digest('hex').slice(0, 16) }
}

function deliveryView(d: DeliveryRow) {
  const iso = (x: Date | null) => x?.toISOString() ?? null
  return {
    id: d.id,
    webhook_id: d.webhook_id,
    message_id: d.message_id,
    event_type: d.event_type,
    status: d.status,
    attempt_count: d.attempt_count,
    next_attempt_at: iso(d.next_attempt_at),
    last_attempt_at: iso(d.last_attempt_at),
    last_status: d.last_status,
    last_error: d.last_error,
    delivered_at: iso(d.delivered_at),
    created_at: d.created_at.toISOString(),
    attempts: d.attempts,
    payload: d.payload,
  }
}
