/**
 * @module features/alerts/repo
 * SQL for `alert_rules` and `alerts`. Every function runs inside `withOrg`: RLS scopes each
 * statement to the transaction's org, so an id from another org is simply not found.
 */
import type { Tx } from '../../infra/db.ts'
import type { Keyset } from '../../http/pagination.ts'
import { EVENT_COLUMNS, type EventRow } from '../events/view.ts'
import { SESSION_COLUMNS, type SessionRow } from '../sessions/view.ts'
import type { WireEvent } from '../../bus/bus.ts'
import type { InsertedAlert } from '../webhooks/queue.ts'
import type { Severity } from './builtin.ts'

export interface RuleRow {
  id: string
  name: string
  description: string | null
  enabled: boolean
  severity: Severity
  condition: unknown
  created_at: Date
  updated_at: Date
  created_key: string
}

const RULE_COLUMNS = (tx: Tx) =>
  tx`id, name, description, enabled, severity, condition, created_at, updated_at, created_at::text as created_key`

export async function insertRule(
  tx: Tx,
  r: { name: string; description: string | null; enabled: boolean; severity: Severity; condition: unknown },
): Promise<RuleRow> {
  const [row] = await tx<RuleRow[]>`
    insert into alert_rules (org_id, name, description, enabled, severity, condition)
    values (app_current_org(), ${r.name}, ${r.description}, ${r.enabled}, ${r.severity}, ${tx.json(r.condition as never)})
    returning ${RULE_COLUMNS(tx)}`
  return row!
}

/** Newest first, keyset on (created_at, id). */
export function listRules(tx: Tx, limit: number, after: Keyset | null): Promise<RuleRow[]> {
  return tx<RuleRow[]>`
    select ${RULE_COLUMNS(tx)} from alert_rules
     where true
       ${after ? tx`and (created_at, id) < (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by created_at desc, id desc
     limit ${limit}`
}

/** The rule; with `lock`, held until the transaction ends (a change reads what it changes, for the audit log). */
export async function getRule(tx: Tx, id: string, lock = false): Promise<RuleRow | null> {
  const [row] = await tx<RuleRow[]>`
    select ${RULE_COLUMNS(tx)} from alert_rules where id = ${id}::uuid ${lock ? tx`for no key update` : tx``}`
  return row ?? null
}

export interface RulePatch {
  name?: string
  description?: string | null
  enabled?: boolean
  severity?: Severity
  condition?: unknown
}

/** Applies the given fields only; returns the updated row, or null when there is no such rule. */
export async function updateRule(tx: Tx, id: string, p: RulePatch): Promise<RuleRow | null> {
  const [row] = await tx<RuleRow[]>`
    update alert_rules set
      name = coalesce(${p.name ?? null}::text, name),
      description = case when ${p.description !== undefined} then ${p.description ?? null}::text else description end,
      enabled = coalesce(${p.enabled ?? null}::boolean, enabled),
      severity = coalesce(${p.severity ?? null}::text, severity),
      condition = ${p.condition === undefined ? tx`condition` : tx`${tx.json(p.condition as never)}`},
      updated_at = now()
     where id = ${id}::uuid
    returning ${RULE_COLUMNS(tx)}`
  return row ?? null
}

export async function deleteRule(tx: Tx, id: string): Promise<RuleRow | null> {
  const [row] = await tx<RuleRow[]>`delete from alert_rules where id = ${id}::uuid returning ${RULE_COLUMNS(tx)}`
  return row ?? null
}

export interface AlertRow {
  id: string
  rule_key: string
  rule_id: string | null
  event_key: string
  action_id: string | null
  session_key: string | null
  machine_id: string | null
  /** The machine's hostname, when the alert names a machine (joined, not stored on the alert). */
  machine_hostname: string | null
  agent_key: string | null
  severity: Severity
  title: string
  context: Record<string, unknown>
  status: string
  created_at: Date
  updated_at: Date
  created_key: string
}

export interface AlertFilters {
  status?: string
  severity?: string
  session_key?: string
  rule_key?: string
  since?: string
  machine_id?: string
  agent_id?: string
}

/**
 * Alerts with `action_id` resolved through the ingest ledger: the alerts consumer runs beside
 * the pipeline, not after it, so the action may be stored later than the alert. The machine's
 * hostname is joined so every alert names the laptop it came from (issue 9).
 */
export const ALERT_SELECT = (tx: Tx) => tx`
  select a.id, a.rule_key, a.rule_id, a.event_key, coalesce(a.action_id, k.action_id) as action_id, a.session_key,
         a.machine_id, m.hostname as machine_hostname, a.agent_key, a.severity, a.title, a.context, a.status,
         a.created_at, a.updated_at, a.created_at::text as created_key
    from alerts a
    left join event_keys k on k.org_id = a.org_id and k.event_key = a.event_key
    left join machines m on m.org_id = a.org_id and m.id = a.machine_id`

/** Newest first, keyset on (created_at, id), with optional filters. */
export function listAlerts(tx: Tx, f: AlertFilters, limit: number, after: Keyset | null): Promise<AlertRow[]> {
  return tx<AlertRow[]>`
    ${ALERT_SELECT(tx)}
     where true
       ${f.status !== undefined ? tx`and a.status = ${f.status}` : tx``}
       ${f.severity !== undefined ? tx`and a.severity = ${f.severity}` : tx``}
       ${f.session_key !== undefined ? tx`and a.session_key = ${f.session_key}` : tx``}
       ${f.rule_key !== undefined ? tx`and a.rule_key = ${f.rule_key}` : tx``}
       ${f.since !== undefined ? tx`and a.created_at >= ${f.since}::text::timestamptz` : tx``}
       ${f.machine_id !== undefined ? tx`and a.machine_id = ${f.machine_id.toLowerCase()}::uuid` : tx``}
       ${f.agent_id !== undefined ? tx`and a.agent_key = ${f.agent_id}` : tx``}
       ${after ? tx`and (a.created_at, a.id) < (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by a.created_at desc, a.id desc
     limit ${limit}`
}

/** Sets an alert's status; null when there is no such alert. `previous` is the status before. */
export async function setAlertStatus(tx: Tx, id: string, status: string): Promise<(AlertRow & { previous: string }) | null> {
  const [old] = await tx<{ status: string }[]>`select status from alerts where id = ${id}::uuid for update`
  if (!old) return null
  await tx`
    update alerts set status = ${status}, updated_at = case when status = ${status} then updated_at else now() end
     where id = ${id}::uuid`
  const [row] = await tx<AlertRow[]>`${ALERT_SELECT(tx)} where a.id = ${id}::uuid`
  return row ? { ...row, previous: old.status } : null
}

export async function getAlert(tx: Tx, id: string): Promise<AlertRow | null> {
  const [row] = await tx<AlertRow[]>`${ALERT_SELECT(tx)} where a.id = ${id}::uuid`
  return row ?? null
}

/** The stored action by id (index actions_org_id: the caller does not know its partition). */
export async function getAction(tx: Tx, id: string): Promise<EventRow | null> {
  const [row] = await tx<EventRow[]>`select ${EVENT_COLUMNS(tx)} from actions a where a.id = ${id}::uuid limit 1`
  return row ?? null
}

/** The session by its edge key (the alert stores the key, not the UUID). */
export async function sessionByKey(tx: Tx, key: string): Promise<SessionRow | null> {
  const [row] = await tx<SessionRow[]>`select ${SESSION_COLUMNS(tx)} from sessions s where s.session_key = ${key}`
  return row ?? null
}

/**
 * The last `limit` events of a session up to `until` (the triggering event's sort key, itself
 * included; or an instant when it is not stored yet), oldest first. A backward scan of
 * actions_org_session that stops after `limit` rows, however long the session.
 */
export function precedingEvents(
  tx: Tx,
  sessionKey: string,
  until: { at: string; id: string } | { instant: string },
  limit: number,
): Promise<EventRow[]> {
  const bound =
    'id' in until
      ? tx`(a.occurred_at, a.id) <= (${until.at}::text::timestamptz, ${until.id}::uuid)`
      : tx`a.occurred_at <= ${until.instant}::text::timestamptz`
  return tx<EventRow[]>`
    select * from (
      select ${EVENT_COLUMNS(tx)} from actions a
       where a.session_key = ${sessionKey} and ${bound}
       order by a.occurred_at desc, a.id desc
       limit ${limit}) p
     order by p.occurred_at, p.id`
}

/** An alert to raise: the rule, the event that fired it and what the alert shows of it. */
export interface NewAlert {
  ruleKey: string
  ruleId: string | null
  event: WireEvent
  machineId: string | null
  severity: Severity
  title: string
  context: Record<string, unknown>
}

/** The alert's context snippet: what happened, never the arguments themselves. */
export function contextOf(e: WireEvent): Record<string, unknown> {
  return {
    event_id: e.eventId,
    occurred_at: e.occurredAt,
    action_type: e.actionType,
    action: e.action,
    tool_name: e.toolName,
    risk_score: e.riskScore,
    decision: e.decision,
    blocked: e.blocked,
    platform: e.platform,
  }
}

/**
 * Inserts alerts, once per (org, rule key, event key): the live consumer and a retro-hunt alike
 * (a rule fires once per event whatever the retries and runs). Returns those inserted now.
 */
export async function insertAlerts(tx: Tx, rows: readonly NewAlert[]): Promise<InsertedAlert[]> {
  const col = <T>(f: (r: NewAlert) => T) => rows.map(f)
  return tx<InsertedAlert[]>`
    insert into alerts (org_id, rule_key, rule_id, event_key, session_key, machine_id, agent_key, severity, title, context)
    select app_current_org(), rule_key, rule_id::uuid, event_key, session_key, machine_id::uuid, agent_key, severity, title,
           context::jsonb
      from unnest(${col((r) => r.ruleKey)}::text[], ${col((r) => r.ruleId)}::text[], ${col((r) => r.event.eventKey)}::text[],
                  ${col((r) => r.event.sessionKey)}::text[], ${col((r) => r.machineId)}::text[],
                  ${col((r) => r.event.agentKey)}::text[], ${col((r) => r.severity)}::text[], ${col((r) => r.title)}::text[],
                  ${col((r) => JSON.stringify(r.context))}::text[])
           as u(rule_key, rule_id, event_key, session_key, machine_id, agent_key, severity, title, context)
    on conflict (org_id, rule_key, event_key) do nothing
    returning id, rule_key, rule_id, event_key, session_key, machine_id, agent_key, severity, title, context, status, created_at`
}
