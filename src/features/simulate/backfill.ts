/**
 * @module features/simulate/backfill
 * Retro-hunt (issue 11; docs/simulate.md "Retro-hunt"): an alert rule or a threat signature run
 * over the org's stored actions of the last N days, raising the alerts it would have raised.
 *
 * - Bounded as a simulation is (./replay.ts `requireWindow`, `withSimulation`): at most
 *   `SIMULATION_LIMITS.maxRows` actions or a 422 before anything runs, each statement under the
 *   simulation's timeout, rows read through a cursor.
 * - Idempotent: alerts are unique per (org, rule key, event key) and inserted with ON CONFLICT DO
 *   NOTHING, so a rule fires once per event whatever the runs, live or backfilled; a flow shape
 *   fires once per session, so a session that already has its alert is skipped.
 * - A backfilled alert says so (`context.backfilled`) and is not announced to webhooks or
 *   distilled: it describes the past, and the answer counts what was created.
 */
import type { Tx } from '../../infra/db.ts'
import type { WireEvent } from '../../bus/bus.ts'
import { eventLabel, type Severity } from '../alerts/builtin.ts'
import { compileCondition } from '../alerts/condition.ts'
import { insertAlerts, type NewAlert } from '../alerts/repo.ts'
import { inScope, type Scope } from '../policies/scope.ts'
import { compileRule } from '../signatures/compile.ts'
import { lockSessions, markShapeMatched, SHAPE_RULE_PREFIX } from '../signatures/flow-match.ts'
import { addEvent, capabilityOf, emptyFlow, matchShapes, type FlowShape } from '../signatures/flow-shape.ts'
import { compileEvaluator } from './evaluate.ts'
import { Budget, requireWindow, SIMULATION_LIMITS } from './bounds.ts'
import { daemonInputs, wireEventOf, type StoredAction } from './stored.ts'

export interface BackfillResult {
  days: number
  since: string
  until: string
  /** Stored actions read. */
  evaluated: number
  /** Events (flow shapes: sessions) that match. */
  matched: number
  /** Alerts created now; the others existed already. */
  created: number
}

/** Alerts are written as matches are found, this many at a time. */
const FLUSH = 500

const COLUMNS = (tx: Tx) => tx`
  id, event_key, event_id, occurred_at, client_timestamp, machine_id, session_key, agent_key, schema_version, source,
  platform, action_type, action, tool_name, arguments, decision, blocked, risk_score, labels, extra`

class Writer {
  matched = 0
  created = 0
  readonly #pending: NewAlert[] = []

  private readonly tx: Tx

  constructor(tx: Tx) {
    this.tx = tx
  }

  async add(alert: NewAlert): Promise<void> {
    this.matched++
    this.#pending.push(alert)
    if (this.#pending.length >= FLUSH) await this.flush()
  }

  async flush(): Promise<void> {
    if (this.#pending.length === 0) return
    this.created += (await insertAlerts(this.tx, this.#pending.splice(0))).length
  }
}

const backfilled = (e: WireEvent, extra: Record<string, unknown>) => ({
  event_id: e.eventId,
  occurred_at: e.occurredAt,
  action_type: e.actionType,
  action: e.action,
  tool_name: e.toolName,
  ...extra,
  backfilled: true,
})

/** A custom alert rule over the window (inside `withSimulation`). */
export async function backfillRule(
  tx: Tx,
  rule: { id: string; name: string; severity: Severity; condition: unknown },
  days: number,
): Promise<BackfillResult> {
  const window = await requireWindow(tx, days)
  const compiled = compileCondition(rule.condition)
  // A stored condition that no longer compiles never fires live either.
  if (!compiled.ok) return { ...window, evaluated: 0, matched: 0, created: 0 }
  const out = new Writer(tx)
  let evaluated = 0
  const budget = new Budget()
  const rows = tx<StoredAction[]>`select ${COLUMNS(tx)} from actions where created_at >= ${window.since}::timestamptz`
  for await (const batch of rows.cursor(SIMULATION_LIMITS.cursorRows)) {
    for (const row of batch) {
      await budget.yield()
      evaluated++
      const e = wireEventOf(row)
      if (!compiled.test({ event: e })) continue
      await out.add({
        ruleKey: `rule:${rule.id}`,
        ruleId: rule.id,
        event: e,
        machineId: row.machine_id,
        severity: rule.severity,
        title: rule.name,
        context: backfilled(e, { rule_name: rule.name }),
      })
    }
  }
  await out.flush()
  return { ...window, evaluated, matched: out.matched, created: out.created }
}

export interface BackfillSignature {
  id: string
  name: string
  severity: Severity
  kind: string
  value: string | null
  action: string
  scope: Scope
  /** Flow shapes only. */
  shape: FlowShape | null
}

/**
 * A threat signature over the window: an indicator as the daemon would match it (its compiled
 * rule alone: what it matches, whatever else would have decided first), a flow shape as the
 * alerts consumer matches it, session by session. Only machines in its scope count.
 */
export async function backfillSignature(tx: Tx, sig: BackfillSignature, days: number): Promise<BackfillResult> {
  const window = await requireWindow(tx, days)
  const machines = await tx<{ id: string; tags: string[] }[]>`select id, tags from machines`
  const tags = new Map(machines.map((m) => [m.id, m.tags]))
  const covers = (machineId: string | null) => inScope(sig.scope, machineId, machineId ? (tags.get(machineId) ?? []) : [])
  const ruleKey = `${SHAPE_RULE_PREFIX}${sig.id}`
  const out = new Writer(tx)
  const budget = new Budget()
  const alert = (e: WireEvent, row: StoredAction, context: Record<string, unknown>): NewAlert => ({
    ruleKey,
    ruleId: null,
    event: e,
    machineId: row.machine_id,
    severity: sig.severity,
    title: `Threat signature ${sig.name} matched: ${eventLabel(e)}`,
    context: backfilled(e, { signature_id: sig.id, signature_name: sig.name, ...context }),
  })
  let evaluated = 0
  if (sig.shape) {
    const shape = sig.shape
    // Sessions that already have this shape's alert (live or an earlier run) are done.
    const done = new Set(
      (await tx<{ session_key: string }[]>`select distinct session_key from alerts where rule_key = ${ruleKey}`).map(
        (r) => r.session_key,
      ),
    )
    // Every event steps its session's flow; a match counts on a machine of the scope, as live.
    const found: NewAlert[] = []
    let session: string | null = null
    let flow = emptyFlow()
    let skip = false
    const rows = tx<StoredAction[]>`
      select ${COLUMNS(tx)} from actions where created_at >= ${window.since}::timestamptz and session_key is not null
       order by session_key, occurred_at, id`
    for await (const batch of rows.cursor(SIMULATION_LIMITS.cursorRows)) {
      for (const row of batch) {
        await budget.yield()
        evaluated++
        if (row.session_key !== session) {
          session = row.session_key
          flow = emptyFlow()
          skip = done.has(session!)
        }
        if (skip) continue
        const e = wireEventOf(row)
        addEvent(flow, capabilityOf(e))
        if (!covers(row.machine_id)) continue
        const [m] = matchShapes(flow, [shape], row.platform)
        if (!m) continue
        skip = true
        found.push(alert(e, row, { shape_id: shape.id, jsd: Math.round(m.jsd * 1e4) / 1e4 }))
      }
    }
    // Under the consumer's session locks, taken before any alert is written (one order, no
    // deadlock with it): the alerts, and the sessions marked so that it never raises them again.
    const sessions = found.map((f) => f.event.sessionKey!)
    await lockSessions(tx, sessions)
    for (const f of found) await out.add(f)
    await out.flush()
    await markShapeMatched(tx, sig.id, sessions)
  } else {
    const rule = compileRule({ kind: sig.kind, value: sig.value, action: sig.action })
    if (!rule) return { ...window, evaluated: 0, matched: 0, created: 0 }
    const evaluate = compileEvaluator([{ id: sig.id, name: sig.name, enabled: true, priority: 0, rules: [rule] }])
    const rows = tx<StoredAction[]>`select ${COLUMNS(tx)} from actions where created_at >= ${window.since}::timestamptz`
    for await (const batch of rows.cursor(SIMULATION_LIMITS.cursorRows)) {
      for (const row of batch) {
        await budget.yield()
        evaluated++
        if (!covers(row.machine_id)) continue
        const input = daemonInputs(row)
        if (evaluate(input.toolName, input.agentName, input.argsJson).action === 'allow') continue
        await out.add(alert(wireEventOf(row), row, { tool: input.toolName }))
      }
    }
  }
  await out.flush()
  return { ...window, evaluated, matched: out.matched, created: out.created }
}
