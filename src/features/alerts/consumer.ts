/**
 * @module features/alerts/consumer
 * The alerts consumer: every new event of an org is evaluated against the built-in rules
 * (./builtin.ts) and the org's enabled custom rules (./condition.ts), and each match becomes one
 * row of `alerts`.
 *
 * Idempotency: the claim of a batch and these writes commit together (src/bus/consume-local.ts), so a
 * batch is applied once; what can repeat is an EVENT (a client retry lands in a later batch with
 * the same event key). `alerts` is unique on (org_id, rule_key, event_key) and inserted with
 * ON CONFLICT DO NOTHING, so a rule fires once per triggering event whatever the retries.
 *
 * The sequence rule (outbound connection after a credential read in the same session) keeps the
 * EARLIEST credential read per session in `alert_session_state`. Events are processed in
 * occurredAt order (ties: arrival order), so an event sees reads made earlier in the same call;
 * an outbound event fires when it is not earlier than that read. It fires at most once per
 * session: the first outbound event after a read is the signal, the rest are in the session's
 * actions. A read that arrives after the outbound event it precedes is not matched back (the
 * outbound event was already evaluated); docs/alert-rules.md states this limit.
 *
 * Flow shapes (issue 11, ../signatures/flow-match.ts): every event of a session steps the
 * session's flow matrix, kept in the same row, and a shape matched for the first time in the
 * session raises `signature:<id>`. The session locks make concurrent consumers step a session's
 * matrix one at a time.
 *
 * Writes are batched: one SELECT per state kind and one INSERT for all alerts of the call.
 */
import type { Tx } from '../../infra/db.ts'
import type { WireEvent } from '../../bus/bus.ts'
import { distilAlerts } from '../signatures/distil.ts'
import { loadFlows, lockSessions, orgShapes, saveFlows, stepFlow, type SessionFlow } from '../signatures/flow-match.ts'
import type { Claimed } from '../../bus/consume-local.ts'
import { enqueueAlertDeliveries } from '../webhooks/queue.ts'
import { contextOf, insertAlerts, type NewAlert } from './repo.ts'
import { analyzeEvent, BUILTIN_RULES, eventLabel, type Severity } from './builtin.ts'
import { compileCondition, viewOf, type Predicate } from './condition.ts'
import { recordLive } from '../live/repo.ts'

interface Pending {
  event: WireEvent
  machineId: string | null
  order: number
  at: number
}

interface CustomRule {
  id: string
  name: string
  severity: Severity
  test: Predicate
}

interface SessionState {
  at: number
  eventKey: string
  changed: boolean
}

const OUTBOUND = BUILTIN_RULES.outboundAfterCredentialRead

/** The alerts consumer's handler (see src/bus/consume-local.ts `Handler`). */
export async function evaluateAlerts(tx: Tx, batches: Claimed[], finish?: () => Promise<void>): Promise<void> {
  const events = collect(batches)
  if (events.length === 0) return
  const rules = await loadRules(tx)

  const analyses = events.map((p) => analyzeEvent(p.event))
  const sessions = [...new Set(events.filter((p) => p.event.sessionKey !== null).map((p) => p.event.sessionKey!))].sort()
  const state = new Map<string, SessionState>()
  const fired = new Set<string>()
  let flows = new Map<string, SessionFlow>()
  const machines = [...new Set(events.map((p) => p.machineId).filter((m): m is string => m !== null))]
  const shapes = sessions.length > 0 ? await orgShapes(tx, machines) : null
  if (sessions.length > 0) {
    // Two consumers working on the same org's batches at once take the sessions in one order.
    await lockSessions(tx, sessions)
    const rows = await tx<{ session_key: string; at: Date; event_key: string | null }[]>`
      select session_key, credential_read_at as at, credential_event_key as event_key
        from alert_session_state
       where session_key = any(${sessions}::text[]) and credential_read_at is not null`
    for (const r of rows) state.set(r.session_key, { at: r.at.getTime(), eventKey: r.event_key ?? '', changed: false })
    flows = await loadFlows(tx, sessions)
    const done = await tx<{ session_key: string }[]>`
      select distinct session_key from alerts
       where rule_key = ${OUTBOUND.key} and session_key = any(${sessions}::text[])`
    for (const r of done) fired.add(r.session_key)
  }

  const alerts: NewAlert[] = []
  events.forEach((p, i) => {
    const e = p.event
    const a = analyses[i]!
    const add = (ruleKey: string, ruleId: string | null, severity: Severity, title: string, detail: Record<string, unknown>) =>
      alerts.push({
        ruleKey,
        ruleId,
        event: e,
        machineId: p.machineId,
        severity,
        title: title.slice(0, 500),
        context: { ...contextOf(e), ...detail },
      })
    for (const f of a.findings) add(f.ruleKey, null, f.severity, f.title, f.detail === null ? {} : { detail: f.detail })

    const session = e.sessionKey
    if (session !== null && a.credentialRead !== null) {
      const known = state.get(session)
      if (!known || p.at < known.at) state.set(session, { at: p.at, eventKey: e.eventKey, changed: true })
    }
    const read = session === null ? undefined : state.get(session)
    if (session !== null && a.outbound !== null && read && p.at >= read.at && !fired.has(session)) {
      fired.add(session)
      add(OUTBOUND.key, null, OUTBOUND.severity, `Outbound connection after a credential read: ${eventLabel(e)}`, {
        detail: a.outbound,
        credential_event_key: read.eventKey,
        credential_read_at: new Date(read.at).toISOString(),
      })
    }

    if (session !== null) {
      for (const f of stepFlow(flows.get(session)!, e, a, shapes!.forMachine(p.machineId))) {
        add(f.ruleKey, null, f.severity, f.title, f.context)
      }
    }

    if (rules.length > 0) {
      const view = viewOf(e)
      for (const r of rules) if (r.test(view)) add(`rule:${r.id}`, r.id, r.severity, r.name, { rule_name: r.name })
    }
  })

  const changed = [...state.entries()].filter(([, s]) => s.changed)
  if (changed.length > 0) {
    // The earliest read wins, whichever order the reads arrive in.
    await tx`
      insert into alert_session_state (org_id, session_key, credential_read_at, credential_event_key)
      select app_current_org(), k, t::timestamptz, ek
        from unnest(${changed.map(([k]) => k)}::text[], ${changed.map(([, s]) => new Date(s.at).toISOString())}::text[],
                    ${changed.map(([, s]) => s.eventKey)}::text[]) as u(k, t, ek)
      on conflict (org_id, session_key) do update
        set credential_read_at = excluded.credential_read_at, credential_event_key = excluded.credential_event_key
        where alert_session_state.credential_read_at is null
           or excluded.credential_read_at < alert_session_state.credential_read_at`
  }
  await saveFlows(tx, flows)
  // Webhook deliveries commit with the alerts they announce; only newly inserted alerts count.
  if (alerts.length > 0) {
    const inserted = await insertAlerts(tx, alerts)
    // A detection on one machine becomes every machine's prevention (issue 11). First: the fleet
    // log's lock is taken before the webhook queue's in every transaction (no deadlock).
    await distilAlerts(tx, inserted)
    await enqueueAlertDeliveries(tx, inserted)
    // Last (after the fleet log's lock, like every writer of both, and after the bus's batch
    // locks): the console's live stream; the log's per-org lock is held only for the commit.
    await finish?.()
    await recordLive(
      tx,
      'alert',
      inserted.map((a) => a.id),
    )
  }
}

/** Event messages in batch order, one entry per event key, sorted by occurredAt (stable). */
function collect(batches: Claimed[]): Pending[] {
  const seen = new Set<string>()
  const out: Pending[] = []
  for (const { message } of batches) {
    if (message.kind !== 'events') continue
    for (const event of message.events) {
      if (seen.has(event.eventKey)) continue
      seen.add(event.eventKey)
      const at = Date.parse(event.occurredAt)
      out.push({ event, machineId: message.machineId, order: out.length, at: Number.isNaN(at) ? 0 : at })
    }
  }
  return out.sort((x, y) => x.at - y.at || x.order - y.order)
}

/** The org's enabled rules, compiled once; a stored condition that no longer compiles never fires. */
async function loadRules(tx: Tx): Promise<CustomRule[]> {
  const rows = await tx<{ id: string; name: string; severity: Severity; condition: unknown }[]>`
    select id, name, severity, condition from alert_rules where enabled order by created_at, id`
  const out: CustomRule[] = []
  for (const r of rows) {
    const c = compileCondition(r.condition)
    if (c.ok) out.push({ id: r.id, name: r.name, severity: r.severity, test: c.test })
  }
  return out
}
