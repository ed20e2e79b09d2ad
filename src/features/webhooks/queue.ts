/**
 * @module features/webhooks/queue
 * The delivery queue in Postgres: enqueueing (in the caller's transaction, so an alert and its
 * deliveries commit together), claiming due deliveries (FOR UPDATE SKIP LOCKED, so any number of
 * instances can run the loop), and recording each attempt.
 *
 * A claim is a lease, not an open transaction: claiming bumps `attempt_count` and pushes
 * `next_attempt_at` past the attempt's timeout, then commits; the HTTP call runs with no
 * connection held; the outcome is written in a second short transaction, only if the row is still
 * the one claimed (same attempt_count, still pending). An instance that dies mid-attempt leaves
 * the delivery to be retried when the lease runs out.
 *
 * `webhook_dispatch` (sql/0011) tells the loop which orgs have work due, without a tenant
 * context; every write of a due time here keeps it no later than the org's earliest pending
 * delivery.
 */
import { withSettings, type Sql, type Tx } from '../../infra/db.ts'
import { EVENT_TYPES, TEST_EVENT_TYPE } from './schema.ts'

/** Attempts kept in a delivery's log. */
export const ATTEMPT_LOG_MAX = 50

/** The fields of an inserted alert that go into the `alert.created` payload. */
export interface InsertedAlert {
  id: string
  rule_key: string
  rule_id: string | null
  event_key: string
  session_key: string | null
  machine_id: string | null
  agent_key: string | null
  severity: string
  title: string
  context: unknown
  status: string
  created_at: Date
}

const ALERT_CREATED: (typeof EVENT_TYPES)[number] = 'alert.created'

/**
 * One delivery per enabled webhook of the org subscribed to `alert.created` (or to everything),
 * per newly inserted alert. `message_id` is derived from the alert id, so a replayed batch can
 * never enqueue the same alert twice for one webhook (unique on org, webhook, message).
 */
export async function enqueueAlertDeliveries(tx: Tx, alerts: InsertedAlert[]): Promise<number> {
  if (alerts.length === 0) return 0
  const ids = alerts.map((a) => `msg_${a.id}`)
  const bodies = alerts.map((a) =>
    JSON.stringify({
      type: ALERT_CREATED,
      timestamp: a.created_at.toISOString(),
      data: {
        id: a.id,
        rule_key: a.rule_key,
        rule_id: a.rule_id,
        event_key: a.event_key,
        session_key: a.session_key,
        machine_id: a.machine_id,
        agent_key: a.agent_key,
        severity: a.severity,
        title: a.title,
        context: a.context,
        status: a.status,
        created_at: a.created_at.toISOString(),
      },
    }),
  )
  const inserted = await tx<{ n: number }[]>`
    with ins as (
      insert into webhook_deliveries (org_id, webhook_id, message_id, event_type, payload, next_attempt_at)
      select app_current_org(), w.id, m.message_id, ${ALERT_CREATED}, m.body::jsonb, now()
        from webhooks w
       cross join unnest(${ids}::text[], ${bodies}::text[]) as m(message_id, body)
       where w.enabled and (cardinality(w.event_types) = 0 or ${ALERT_CREATED} = any(w.event_types))
      on conflict (org_id, webhook_id, message_id) do nothing
      returning 1)
    select count(*)::int as n from ins`
  const n = inserted[0]!.n
  if (n > 0) await markDue(tx, new Date(0))
  return n
}

/** A `webhook.test` ping for one webhook, whatever it subscribes to. */
export async function enqueueTestPing(tx: Tx, webhookId: string): Promise<{ id: string; message_id: string }> {
  const messageId = `msg_test_${crypto.randomUUID().replace(/-/g, '')}`
  const now = new Date().toISOString()
  const body = {
    type: TEST_EVENT_TYPE,
    timestamp: now,
    data: { webhook_id: webhookId, message: 'Test delivery from quint-cloud.' },
  }
  const [row] = await tx<{ id: string; message_id: string }[]>`
    insert into webhook_deliveries (org_id, webhook_id, message_id, event_type, payload, next_attempt_at)
    values (app_current_org(), ${webhookId}::uuid, ${messageId}, ${TEST_EVENT_TYPE}, ${JSON.stringify(body)}::text::jsonb, now())
    returning id, message_id`
  await markDue(tx, new Date(0))
  return row!
}

/**
 * Makes the org's due time no later than `at` (the epoch: due now). Upserting takes the row lock,
 * so it waits for a loop that is rescheduling the org (see `claimDue`).
 */
export async function markDue(tx: Tx, at: Date): Promise<void> {
  await tx`
    insert into webhook_dispatch (org_id, due_at) values (app_current_org(), ${at})
    on conflict (org_id) do update set due_at = least(webhook_dispatch.due_at, excluded.due_at)`
}

/**
 * Orgs with deliveries due now, most overdue first (through the `webhook_discovery` policy),
 * leaving out `exclude`: orgs the caller cannot serve at the moment (all their slots busy). Without
 * it, a few saturated orgs that stay overdue would fill every answer and hide the others (issue 14).
 */
export function dueOrgs(sql: Sql, limit: number, exclude: readonly string[] = []): Promise<{ org: string }[]> {
  return withSettings(
    sql,
    { 'app.webhook_dispatcher': 'on' },
    (tx) =>
      tx<{ org: string }[]>`
      select org_id::text as org from webhook_dispatch
       where due_at <= now() and not (org_id = any(${exclude as string[]}::uuid[]))
       order by due_at limit ${limit}`,
  )
}

export interface ClaimedDelivery {
  id: string
  webhook_id: string
  message_id: string
  event_type: string
  payload: unknown
  attempt_count: number
  url: string
  webhook_enabled: boolean
  secret_ciphertext: Buffer
  previous_secret_ciphertext: Buffer | null
}

/** How much a claim may take: in all, and per endpoint given what is already in flight. */
export interface ClaimLimits {
  /** Deliveries claimed at most. */
  limit: number
  /** Attempts allowed in flight to one webhook at once. */
  perEndpoint: number
  /** Attempts already in flight, by webhook id (this org's webhooks only). */
  busy: ReadonlyMap<string, number>
}

/**
 * Claims due deliveries of the transaction's org, leasing each for `leaseMs`. Returns null when
 * another instance holds the org's dispatch row (it is working on this org).
 *
 * Per webhook, at most its free slots (`perEndpoint` less what is in flight) are taken, oldest
 * first; across webhooks the claim goes round-robin (every webhook's first due delivery before any
 * webhook's second), so one endpoint with a deep backlog neither fills the claim nor holds back
 * the org's other endpoints (issue 14).
 *
 * Ordering: the dispatch row is locked first, then deliveries are claimed, then the due time is
 * recomputed from what is still pending (leased rows included, so a lost lease is found again).
 * An enqueue committed before the lock is seen by the claim; one committing after it waits on the
 * lock and then lowers the due time itself.
 */
export async function claimDue(tx: Tx, limits: ClaimLimits, leaseMs: number): Promise<ClaimedDelivery[] | null> {
  const held = await tx`select 1 from webhook_dispatch where org_id = app_current_org() for update skip locked`
  if (held.length === 0) return null
  const busyIds = [...limits.busy.keys()]
  const busyCounts = busyIds.map((id) => limits.busy.get(id)!)
  const rows = await tx<ClaimedDelivery[]>`
    with busy as (
      select * from unnest(${busyIds}::uuid[], ${busyCounts}::int[]) as b(webhook_id, n)),
    candidates as (
      select c.id, c.rank, c.next_attempt_at
        from webhooks w
        left join busy on busy.webhook_id = w.id
       cross join lateral (
         select d.id, d.next_attempt_at, row_number() over (order by d.next_attempt_at, d.id) as rank
           from webhook_deliveries d
          where d.webhook_id = w.id and d.status = 'pending' and d.next_attempt_at <= now()
          order by d.next_attempt_at, d.id
          limit greatest(${limits.perEndpoint}::int - coalesce(busy.n, 0), 0)) c),
    due as (
      select d.id from webhook_deliveries d
        join candidates c on c.id = d.id
       where d.status = 'pending' and d.next_attempt_at <= now()
       order by c.rank, c.next_attempt_at, d.id
       limit ${limits.limit}
       for update of d skip locked),
    claimed as (
      update webhook_deliveries d
         set attempt_count = d.attempt_count + 1,
             next_attempt_at = now() + make_interval(secs => ${leaseMs / 1000}),
             updated_at = now()
        from due where d.id = due.id
      returning d.id, d.webhook_id, d.message_id, d.event_type, d.payload, d.attempt_count)
    select c.id, c.webhook_id, c.message_id, c.event_type, c.payload, c.attempt_count,
           w.url, w.enabled as webhook_enabled, w.secret_ciphertext,
           case when w.previous_secret_expires_at > now() then w.previous_secret_ciphertext end as previous_secret_ciphertext
      from claimed c join webhooks w on w.org_id = app_current_org() and w.id = c.webhook_id`
  await tx`
    update webhook_dispatch
       set due_at = coalesce((select min(next_attempt_at) from webhook_deliveries where status = 'pending'), 'infinity')
     where org_id = app_current_org()`
  return rows
}

export interface AttemptOutcome {
  id: string
  /** attempt_count at claim time: the record applies only if the row was not claimed again. */
  attemptCount: number
  at: Date
  durationMs: number
  status: number | null
  error: string | null
  /** The delivery's new state. */
  result: 'succeeded' | 'failed' | 'dead' | 'pending'
  /** When result is 'pending': the next attempt. */
  nextAttemptAt: Date | null
  /** Set when the endpoint must be disabled (410 Gone). */
  disableWebhook: { webhookId: string; reason: string } | null
}

/** Writes the outcomes of one org's attempts; returns how many still applied (not re-claimed). */
export async function recordOutcomes(tx: Tx, outcomes: AttemptOutcome[]): Promise<number> {
  let applied = 0
  let earliest: Date | null = null
  for (const o of outcomes) {
    const entry = { at: o.at.toISOString(), duration_ms: o.durationMs, status: o.status, error: o.error }
    const rows = await tx`
      update webhook_deliveries set
        status = ${o.result},
        last_attempt_at = ${o.at},
        last_status = ${o.status},
        last_error = ${o.error},
        delivered_at = case when ${o.result} = 'succeeded' then now() else delivered_at end,
        next_attempt_at = ${o.nextAttemptAt},
        attempts = (select coalesce(jsonb_agg(e order by n), '[]'::jsonb) from (
                      select e, n from jsonb_array_elements(attempts || ${JSON.stringify([entry])}::text::jsonb) with ordinality as x(e, n)
                       order by n desc limit ${ATTEMPT_LOG_MAX}) last),
        updated_at = now()
      where id = ${o.id}::uuid and status = 'pending' and attempt_count = ${o.attemptCount}
      returning 1`
    if (rows.length === 0) continue
    applied++
    if (o.disableWebhook) {
      await tx`
        update webhooks set enabled = false, disabled_reason = ${o.disableWebhook.reason}, updated_at = now()
         where id = ${o.disableWebhook.webhookId}::uuid and enabled`
    }
    if (o.result === 'pending' && o.nextAttemptAt && (!earliest || o.nextAttemptAt < earliest)) earliest = o.nextAttemptAt
  }
  if (earliest) await markDue(tx, earliest)
  return applied
}
