/**
 * @module features/webhooks/repo
 * SQL for `webhooks` and the delivery log. Every function runs inside `withOrg`: RLS scopes each
 * statement to the transaction's org, so another org's webhook or delivery is simply not found.
 * Secrets are stored sealed (deps.secrets, context `webhook:<org>:<id>`) and never selected here
 * except by `loadSecrets`, whose caller opens them only to sign.
 */
import type { Tx } from '../../infra/db.ts'
import type { Keyset } from '../../http/pagination.ts'

export interface WebhookRow {
  id: string
  url: string
  description: string | null
  event_types: string[]
  enabled: boolean
  disabled_reason: string | null
  previous_secret_expires_at: Date | null
  created_at: Date
  updated_at: Date
  created_key: string
}

const WEBHOOK_COLUMNS = (tx: Tx) => tx`
  id, url, description, event_types, enabled, disabled_reason,
  case when previous_secret_expires_at > now() then previous_secret_expires_at end as previous_secret_expires_at,
  created_at, updated_at, created_at::text as created_key`

/** The secret context: a sealed secret copied to another org's or webhook's row no longer opens. */
export const secretContext = (orgId: string, webhookId: string) => `webhook:${orgId}:${webhookId}`

/** Inserts a webhook whose secret is sealed by `seal(id)` (the id is part of the seal's context). */
export async function insertWebhook(
  tx: Tx,
  w: { url: string; description: string | null; eventTypes: string[] },
  seal: (id: string) => Buffer,
): Promise<WebhookRow> {
  // The id is chosen here because the secret's seal is bound to it.
  const id = crypto.randomUUID()
  const [row] = await tx<WebhookRow[]>`
    insert into webhooks (org_id, id, url, description, event_types, secret_ciphertext)
    values (app_current_org(), ${id}::uuid, ${w.url}, ${w.description}, ${w.eventTypes}::text[], ${seal(id)})
    returning ${WEBHOOK_COLUMNS(tx)}`
  return row!
}

/** Newest first, keyset on (created_at, id). */
export function listWebhooks(tx: Tx, limit: number, after: Keyset | null): Promise<WebhookRow[]> {
  return tx<WebhookRow[]>`
    select ${WEBHOOK_COLUMNS(tx)} from webhooks
     where true
       ${after ? tx`and (created_at, id) < (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by created_at desc, id desc
     limit ${limit}`
}

export async function getWebhook(tx: Tx, id: string, options: { lock?: boolean } = {}): Promise<WebhookRow | null> {
  const [row] = await tx<WebhookRow[]>`
    select ${WEBHOOK_COLUMNS(tx)} from webhooks where id = ${id}::uuid ${options.lock ? tx`for update` : tx``}`
  return row ?? null
}

export interface WebhookPatch {
  url?: string
  description?: string | null
  event_types?: string[]
  enabled?: boolean
}

/** Applies the given fields only; re-enabling clears the reason it was disabled. */
export async function updateWebhook(tx: Tx, id: string, p: WebhookPatch): Promise<WebhookRow | null> {
  const [row] = await tx<WebhookRow[]>`
    update webhooks set
      url = coalesce(${p.url ?? null}::text, url),
      description = case when ${p.description !== undefined} then ${p.description ?? null}::text else description end,
      event_types = coalesce(${p.event_types ?? null}::text[], event_types),
      disabled_reason = case when ${p.enabled === true} then null else disabled_reason end,
      enabled = coalesce(${p.enabled ?? null}::boolean, enabled),
      updated_at = now()
     where id = ${id}::uuid
    returning ${WEBHOOK_COLUMNS(tx)}`
  return row ?? null
}

export async function deleteWebhook(tx: Tx, id: string): Promise<WebhookRow | null> {
  const [row] = await tx<WebhookRow[]>`delete from webhooks where id = ${id}::uuid returning ${WEBHOOK_COLUMNS(tx)}`
  return row ?? null
}

/**
 * Replaces the secret. The current one becomes the previous one, signing until `graceSeconds`
 * from now (0: dropped at once); an earlier previous secret is dropped.
 */
export async function rotateSecret(tx: Tx, id: string, sealed: Buffer, graceSeconds: number): Promise<WebhookRow | null> {
  const [row] = await tx<WebhookRow[]>`
    update webhooks set
      previous_secret_ciphertext = case when ${graceSeconds} > 0 then secret_ciphertext end,
      previous_secret_expires_at = case when ${graceSeconds} > 0 then now() + make_interval(secs => ${graceSeconds}) end,
      secret_ciphertext = ${sealed},
      updated_at = now()
     where id = ${id}::uuid
    returning ${WEBHOOK_COLUMNS(tx)}`
  return row ?? null
}

export interface DeliveryRow {
  id: string
  webhook_id: string
  message_id: string
  event_type: string
  status: 'pending' | 'succeeded' | 'failed' | 'dead'
  attempt_count: number
  next_attempt_at: Date | null
  last_attempt_at: Date | null
  last_status: number | null
  last_error: string | null
  delivered_at: Date | null
  created_at: Date
  attempts: { at: string; duration_ms: number; status: number | null; error: string | null }[]
  payload: unknown
  created_key: string
}

const DELIVERY_COLUMNS = (tx: Tx) => tx`
  id, webhook_id, message_id, event_type, status, attempt_count,
  case when status = 'pending' then next_attempt_at end as next_attempt_at,
  last_attempt_at, last_status, last_error, delivered_at, created_at, attempts, payload,
  created_at::text as created_key`

/** A webhook's deliveries, newest first, keyset on (created_at, id). */
export function listDeliveries(
  tx: Tx,
  webhookId: string,
  status: string | undefined,
  limit: number,
  after: Keyset | null,
): Promise<DeliveryRow[]> {
  return tx<DeliveryRow[]>`
    select ${DELIVERY_COLUMNS(tx)} from webhook_deliveries
     where webhook_id = ${webhookId}::uuid
       ${status !== undefined ? tx`and status = ${status}` : tx``}
       ${after ? tx`and (created_at, id) < (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by created_at desc, id desc
     limit ${limit}`
}

export async function getDelivery(tx: Tx, webhookId: string, id: string): Promise<DeliveryRow | null> {
  const [row] = await tx<DeliveryRow[]>`
    select ${DELIVERY_COLUMNS(tx)} from webhook_deliveries where webhook_id = ${webhookId}::uuid and id = ${id}::uuid`
  return row ?? null
}

/**
 * Puts a finished delivery (succeeded, failed, dead) back in the queue now, as a new round of
 * attempts (its log is kept). A pending delivery is refused (`in_progress`): it may be claimed by an instance that
 * is sending it right now, and resetting `attempt_count` under that lease would let the lease's
 * outcome apply to the new round (two in-flight attempts both recording).
 */
export async function requeueDelivery(
  tx: Tx,
  webhookId: string,
  id: string,
): Promise<{ row: DeliveryRow } | 'not_found' | 'in_progress'> {
  const [row] = await tx<DeliveryRow[]>`
    update webhook_deliveries
       set status = 'pending', attempt_count = 0, next_attempt_at = now(), updated_at = now()
     where webhook_id = ${webhookId}::uuid and id = ${id}::uuid and status <> 'pending'
    returning ${DELIVERY_COLUMNS(tx)}`
  if (row) return { row }
  const [pending] = await tx`select 1 from webhook_deliveries where webhook_id = ${webhookId}::uuid and id = ${id}::uuid`
  return pending ? 'in_progress' : 'not_found'
}
