/**
 * @module features/simulate/replay
 * A draft policy or signature replayed over the org's stored actions (issue 11;
 * docs/simulate.md): what it would have blocked, flagged or sent for approval, had the fleet
 * enforced it over the last N days.
 *
 * Daemon semantics (a policy, or an indicator signature compiled as the managed policy compiles
 * it): each stored action is evaluated by `compileEvaluator` (./evaluate.ts, the daemon's
 * evaluator) against what its machine has in force now, exactly what `GET /v1/machines/{id}/policies`
 * serves it (the org's enabled policies in its scope, the managed signature policies) minus
 * `replaces`, plus the draft when the draft's scope takes the machine in. An action without a
 * machine gets only what is scoped to every machine. The draft counts an event when its rule is
 * the one that decides; an event its rules match but an earlier policy decides is `shadowed`.
 * One evaluator is compiled per distinct policy set, never per event.
 *
 * Flow-shape semantics: each session (by `session_key`, events by `occurred_at` then id) is
 * stepped through `capabilityOf`, `addEvent` and `matchShapes`, as the alerts consumer steps it;
 * a session counts once, at the first event where it matches.
 *
 * Bounded by ./bounds.ts: the window is by `created_at` (when the cloud received an action; it
 * prunes partitions), its size is checked before anything runs, the evaluation has a budget, and
 * rows are read through a cursor.
 *
 * Stored arguments are jsonb: key order and white space are Postgres's, not the daemon's, and
 * secrets are redacted (`[REDACTED:kind]`). A condition that spans a key and its value, or that
 * names a secret, may match otherwise than on the live daemon.
 */
import type { Static } from '@sinclair/typebox'
import { ValidationError } from '../../errors.ts'
import type { Tx } from '../../infra/db.ts'
import { inScope, type Scope } from '../policies/scope.ts'
import { managedPolicies, type CompiledSignature } from '../signatures/compile.ts'
import { addEvent, capabilityOf, emptyFlow, matchShapes, type Flow, type FlowShape } from '../signatures/flow-shape.ts'
import { Budget, requireWindow, SIMULATION_LIMITS } from './bounds.ts'
import { compileEvaluator, type DaemonAction, type DaemonPolicy, type DaemonRule, type Decision } from './evaluate.ts'
import type { SimulationResult as ResultSchema } from './schema.ts'
import { daemonInputs, wireEventOf, type StoredAction } from './stored.ts'

/** A draft the daemon would be served: a policy, or an indicator signature compiled into one. */
export interface PolicyDraft {
  kind: 'policy' | 'signature'
  name: string
  enabled: boolean
  priority: number
  rules: DaemonRule[]
  scope: Scope
  /**
   * The policy id the daemon would record for it: `replaces`, or the managed signature policy's;
   * null for a new policy.
   */
  reportedId: string | null
}

export interface ShapeDraft {
  kind: 'flow_shape'
  shape: FlowShape
  /** Only sessions' events on machines it takes in count, as the alerts consumer matches it. */
  scope: Scope
}

export interface SimulationInput {
  draft: PolicyDraft | ShapeDraft
  /** A policy of the org left out of the current set; its place among equal priorities goes to a policy draft. */
  replaces: string | null
  days: number
  samples: number
}

type Counts = Partial<Record<DaemonAction | 'alert', number>>

interface Sample {
  id: string
  event_id: string
  occurred_at: string
  machine_id: string | null
  agent: string
  tool: string
  action: string
  policy_id: string | null
  rule_index: number | null
}

/** What the route answers (its response schema, ./schema.ts). */
export type SimulationResult = Static<typeof ResultSchema>

/** The draft's id inside an evaluator: not a UUID, so never one of the org's policies. */
const DRAFT_ID = 'draft'
const TOP = 50
const TOP_SHADOWS = 10

/** The simulation (inside `withSimulation`): loads what is in force, checks the window's size, replays. */
export async function simulate(tx: Tx, orgId: string, input: SimulationInput): Promise<SimulationResult> {
  const { draft, days } = input
  const inForce = await loadInForce(tx, input.replaces)
  const window = await requireWindow(tx, days)
  const tally = new Tally(input.samples, inForce.hostnames)
  const result =
    draft.kind === 'flow_shape'
      ? await replayShape(tx, days, draft, inForce.tags, tally)
      : await replayPolicies(tx, orgId, days, draft, inForce, tally)
  return {
    ...window,
    ...result,
    ...tally.report(draft.kind === 'flow_shape'),
  }
}

// ---- what each machine has in force ------------------------------------------------------------

interface InForcePolicy extends DaemonPolicy {
  scope: Scope
  /** Rank by (created_at, id) among all the org's policies: the order of equal priorities. */
  age: number
}

interface InForce {
  /** Enabled, highest priority first, then oldest: the order the policy document serves them. */
  policies: InForcePolicy[]
  /** The age of `replaces`: where a policy draft goes among equal priorities. */
  replacedAge: number | null
  signatures: (CompiledSignature & { scope: Scope })[]
  tags: Map<string, readonly string[]>
  hostnames: Map<string, string | null>
}

async function loadInForce(tx: Tx, replaces: string | null): Promise<InForce> {
  const rows = await tx<
    {
      id: string
      name: string
      enabled: boolean
      priority: number
      rules: Partial<DaemonRule>[]
      scope_machine_ids: string[]
      scope_tags: string[]
      age: number
    }[]
  >`
    select id, name, enabled, priority, rules, scope_machine_ids, scope_tags,
           row_number() over (order by created_at, id)::int as age
      from enforcement_policies
     order by priority desc, created_at, id`
  const replaced = replaces === null ? null : rows.find((r) => r.id === replaces)
  if (replaced === undefined) {
    throw new ValidationError([{ path: '/replaces', message: 'no policy with this id in this organization' }])
  }
  const policies = rows
    .filter((r) => r.enabled && r.id !== replaces)
    .map((r) => ({
      id: r.id,
      name: r.name,
      enabled: true,
      priority: r.priority,
      // As the daemon decodes what it is served: absent fields are Go's zero values.
      rules: r.rules.map((rule) => ({
        tool: rule.tool ?? '',
        agent: rule.agent ?? '',
        action: rule.action!,
        conditions: rule.conditions ?? [],
      })),
      scope: { machine_ids: r.scope_machine_ids, tags: r.scope_tags },
      age: r.age,
    }))
  const signatures = await tx<(CompiledSignature & { scope_machine_ids: string[]; scope_tags: string[] })[]>`
    select id, kind, value, action, created_at, updated_at, scope_machine_ids, scope_tags
      from threat_signatures
     where status = 'active' and kind <> 'flow_shape' and (expires_at is null or expires_at > now())`
  const machines = await tx<{ id: string; hostname: string | null; tags: string[] }[]>`select id, hostname, tags from machines`
  return {
    policies,
    replacedAge: replaced?.age ?? null,
    signatures: signatures.map(({ scope_machine_ids, scope_tags, ...s }) => ({
      ...s,
      scope: { machine_ids: scope_machine_ids, tags: scope_tags },
    })),
    tags: new Map(machines.map((m) => [m.id, m.tags])),
    hostnames: new Map(machines.map((m) => [m.id, m.hostname])),
  }
}

type Evaluate = (toolName: string, agentName: string, argsJson: string) => Decision

interface MachineEvaluator {
  evaluate: Evaluate
  draftApplies: boolean
}

/**
 * Per machine (null: an action sent without one), the evaluator of its policy set with the
 * draft; one compiled per distinct set (its policies, its signatures, whether the draft applies).
 */
function evaluators(orgId: string, draft: PolicyDraft, inForce: InForce): (machineId: string | null) => MachineEvaluator {
  const draftPolicy: DaemonPolicy = {
    id: DRAFT_ID,
    name: draft.name,
    enabled: draft.enabled,
    priority: draft.priority,
    rules: draft.rules,
  }
  // A new policy is the newest of its priority; an edit keeps the place of the policy it replaces.
  const draftAge = inForce.replacedAge ?? Number.POSITIVE_INFINITY
  const compiled = new Map<string, MachineEvaluator>()
  const byMachine = new Map<string | null, MachineEvaluator>()
  return (machineId) => {
    const known = byMachine.get(machineId)
    if (known) return known
    const tags = machineId === null ? [] : (inForce.tags.get(machineId) ?? [])
    const policies = inForce.policies.filter((p) => inScope(p.scope, machineId, tags))
    const signatures = inForce.signatures.filter((s) => inScope(s.scope, machineId, tags))
    const draftApplies = inScope(draft.scope, machineId, tags)
    const key = `${policies.map((p) => p.id).join(',')}|${signatures.map((s) => s.id).join(',')}|${draftApplies}`
    let entry = compiled.get(key)
    if (!entry) {
      const managed = signatures.length > 0 ? managedPolicies(orgId, signatures) : { above: [], below: [] }
      const own: DaemonPolicy[] = [...policies]
      if (draftApplies && draft.kind === 'policy') {
        const at = policies.findIndex((p) => p.priority < draft.priority || (p.priority === draft.priority && p.age > draftAge))
        own.splice(at === -1 ? own.length : at, 0, draftPolicy)
      }
      // The evaluator sorts by priority, stably: a signature draft follows the managed policy of
      // its priority, as a new signature is the newest rule of it.
      const list: DaemonPolicy[] = [...managed.above, ...own, ...managed.below]
      if (draftApplies && draft.kind === 'signature') list.push(draftPolicy)
      entry = { evaluate: compileEvaluator(list), draftApplies }
      compiled.set(key, entry)
    }
    byMachine.set(machineId, entry)
    return entry
  }
}

// ---- the replays -------------------------------------------------------------------------------

const ROW_COLUMNS = (tx: Tx) =>
  tx`id, event_id, occurred_at, machine_id, agent_key, tool_name, action, action_type, arguments, session_key, platform`

async function replayPolicies(
  tx: Tx,
  orgId: string,
  days: number,
  draft: PolicyDraft,
  inForce: InForce,
  tally: Tally,
): Promise<{ evaluated: number; shadowed: number; shadowed_by: SimulationResult['shadowed_by']; semantics: 'daemon' }> {
  const forMachine = evaluators(orgId, draft, inForce)
  // The draft's rules alone: does it match an event that another policy decides first?
  const draftAlone = compileEvaluator([
    { id: DRAFT_ID, name: draft.name, enabled: draft.enabled, priority: draft.priority, rules: draft.rules },
  ])
  const shadows = new Map<string, { policy_id: string; name: string; action: string; count: number }>()
  let evaluated = 0
  let shadowed = 0
  const rows = tx<StoredAction[]>`
    select ${ROW_COLUMNS(tx)} from actions where created_at >= now() - make_interval(days => ${days})`
  const budget = new Budget()
  for await (const batch of rows.cursor(SIMULATION_LIMITS.cursorRows)) {
    for (const row of batch) {
      await budget.yield()
      evaluated++
      const { evaluate, draftApplies } = forMachine(row.machine_id)
      if (!draftApplies) continue
      const { toolName, agentName, argsJson } = daemonInputs(row)
      const decision = evaluate(toolName, agentName, argsJson)
      if (decision.policyId === DRAFT_ID && decision.action !== 'allow') {
        tally.add(row, agentName, toolName, decision.action, draft.reportedId, decision.ruleIndex)
      } else if (decision.policyId !== null && decision.action !== 'allow') {
        if (draftAlone(toolName, agentName, argsJson).action === 'allow') continue
        shadowed++
        const k = `${decision.policyId}\u0000${decision.action}`
        const s = shadows.get(k)
        if (s) s.count++
        else shadows.set(k, { policy_id: decision.policyId, name: decision.policyName ?? '', action: decision.action, count: 1 })
      }
    }
  }
  const shadowed_by = [...shadows.values()]
    .sort((a, b) => b.count - a.count || a.policy_id.localeCompare(b.policy_id) || a.action.localeCompare(b.action))
    .slice(0, TOP_SHADOWS)
  return { evaluated, shadowed, shadowed_by, semantics: 'daemon' }
}

async function replayShape(
  tx: Tx,
  days: number,
  { shape, scope }: ShapeDraft,
  tags: Map<string, readonly string[]>,
  tally: Tally,
): Promise<{ evaluated: number; shadowed: number; shadowed_by: []; semantics: 'flow_shape' }> {
  let evaluated = 0
  let session: string | null = null
  let flow: Flow = emptyFlow()
  let matched = false
  const rows = tx<StoredAction[]>`
    select ${ROW_COLUMNS(tx)} from actions where created_at >= now() - make_interval(days => ${days})
     order by session_key, occurred_at, id`
  const budget = new Budget()
  for await (const batch of rows.cursor(SIMULATION_LIMITS.cursorRows)) {
    for (const row of batch) {
      await budget.yield()
      evaluated++
      // Events without a session have no flow (docs/flow-shapes.md).
      if (row.session_key === null) continue
      if (row.session_key !== session) {
        session = row.session_key
        flow = emptyFlow()
        matched = false
      }
      if (matched) continue
      // Every event steps the flow; a match counts on a machine of the scope, as in the consumer.
      addEvent(flow, capabilityOf(wireEventOf(row)))
      if (!inScope(scope, row.machine_id, row.machine_id ? (tags.get(row.machine_id) ?? []) : [])) continue
      if (matchShapes(flow, [shape], row.platform).length === 0) continue
      matched = true
      const { toolName, agentName } = daemonInputs(row)
      tally.add(row, agentName, toolName, 'alert', null, null)
    }
  }
  return { evaluated, shadowed: 0, shadowed_by: [], semantics: 'flow_shape' }
}

// ---- counting ----------------------------------------------------------------------------------

const total = (c: Counts) => (c.block ?? 0) + (c.flag ?? 0) + (c.require_approval ?? 0) + (c.alert ?? 0)

/** Newer first: by when it happened, then by id. */
const newer = (a: Sample, b: Sample) =>
  a.occurred_at !== b.occurred_at ? (a.occurred_at > b.occurred_at ? -1 : 1) : a.id > b.id ? -1 : a.id < b.id ? 1 : 0

class Tally {
  readonly totals: Counts = {}
  readonly machines = new Map<string | null, Counts>()
  readonly agents = new Map<string, Counts>()
  readonly tools = new Map<string, Counts>()
  readonly samples: Sample[] = []
  readonly #maxSamples: number
  readonly #hostnames: Map<string, string | null>

  constructor(maxSamples: number, hostnames: Map<string, string | null>) {
    this.#maxSamples = maxSamples
    this.#hostnames = hostnames
  }

  add(
    row: StoredAction,
    agent: string,
    tool: string,
    action: DaemonAction | 'alert',
    policyId: string | null,
    rule: number | null,
  ) {
    for (const [map, key] of [
      [this.machines, row.machine_id],
      [this.agents, agent],
      [this.tools, tool],
    ] as [Map<string | null, Counts>, string | null][]) {
      let c = map.get(key)
      if (!c) map.set(key, (c = {}))
      c[action] = (c[action] ?? 0) + 1
    }
    this.totals[action] = (this.totals[action] ?? 0) + 1
    if (this.#maxSamples === 0) return
    const sample: Sample = {
      id: row.id,
      event_id: row.event_id,
      occurred_at: row.occurred_at.toISOString(),
      machine_id: row.machine_id,
      agent,
      tool,
      action,
      policy_id: policyId,
      rule_index: rule,
    }
    // Kept sorted and bounded: only what is newer than the oldest kept gets in.
    const full = this.samples.length >= this.#maxSamples
    if (full && newer(sample, this.samples[this.samples.length - 1]!) >= 0) return
    let at = this.samples.findIndex((s) => newer(sample, s) < 0)
    if (at === -1) at = this.samples.length
    this.samples.splice(at, 0, sample)
    if (this.samples.length > this.#maxSamples) this.samples.pop()
  }

  report(flowShape: boolean) {
    const shape = (c: Counts): Counts =>
      flowShape ? { alert: c.alert ?? 0 } : { block: c.block ?? 0, flag: c.flag ?? 0, require_approval: c.require_approval ?? 0 }
    const top = <K extends string | null>(map: Map<K, Counts>) =>
      [...map.entries()]
        .sort(
          ([ka, a], [kb, b]) => total(b) - total(a) || (ka === kb ? 0 : ka === null ? 1 : kb === null ? -1 : ka < kb ? -1 : 1),
        )
        .slice(0, TOP)
    return {
      totals: shape(this.totals),
      by_machine: top(this.machines).map(([id, c]) => ({
        machine_id: id,
        hostname: id === null ? null : (this.#hostnames.get(id) ?? null),
        ...shape(c),
      })),
      by_agent: top(this.agents).map(([agent, c]) => ({ agent, ...shape(c) })),
      by_tool: top(this.tools).map(([tool, c]) => ({ tool, ...shape(c) })),
      samples: this.samples,
    }
  }
}
