/**
 * @module features/signatures/flow-match
 * Flow shapes matched where the events are (issue 11; docs/flow-shapes.md "Where matching runs"):
 * the alerts consumer keeps each session's flow matrix (`alert_session_state.flow`), steps it with
 * every new event, and raises `signature:<shape id>` once per session and shape (`shapes_matched`).
 * The shapes: the five built-ins, always on, and the org's active `flow_shape` signatures.
 */
import type { WireEvent } from '../../bus/bus.ts'
import type { Tx } from '../../infra/db.ts'
import { inScope, type Scope } from '../policies/scope.ts'
import { commandText, eventLabel, type EventAnalysis, type Severity } from '../alerts/builtin.ts'
import {
  addEvent,
  BUILTIN_SHAPES,
  capabilityOf,
  emptyFlow,
  flowFromJson,
  flowToJson,
  flowTotal,
  matchShapes,
  type Capability,
  type Flow,
  type FlowShape,
} from './flow-shape.ts'

export const SHAPE_RULE_PREFIX = 'signature:'

/** What a flow-shape signature stores in `threat_signatures.shape` (max_jsd has its own column). */
export interface StoredShape {
  shape: Record<string, number>
  agent_types: string[]
  min_transitions: number
}

/** The shapes in force for an org, and which of its machines each takes in. */
export interface OrgShapes {
  /** The shapes in force on an event of this machine (null: an event sent without one). */
  forMachine(machineId: string | null): readonly FlowShape[]
}

/**
 * The built-ins (every machine) and the org's active flow-shape signatures, each for the machines
 * of its scope (inside `withOrg`); `machineIds`: those whose events will be matched.
 */
export async function orgShapes(tx: Tx, machineIds: readonly string[]): Promise<OrgShapes> {
  const rows = await tx<
    {
      id: string
      name: string
      severity: Severity
      shape: StoredShape
      max_jsd: number
      scope_machine_ids: string[]
      scope_tags: string[]
    }[]
  >`
    select id, name, severity, shape, max_jsd, scope_machine_ids, scope_tags from threat_signatures
     where kind = 'flow_shape' and status = 'active' and (expires_at is null or expires_at > now())
     order by created_at, id`
  const all = [...BUILTIN_SHAPES, ...rows.map(shapeOf)]
  const scoped = rows.filter((r) => r.scope_machine_ids.length > 0 || r.scope_tags.length > 0)
  if (scoped.length === 0) return { forMachine: () => all }
  const tags = new Map(
    (await tx<{ id: string; tags: string[] }[]>`select id, tags from machines where id = any(${[...machineIds]}::uuid[])`).map(
      (m) => [m.id, m.tags],
    ),
  )
  const scopes = new Map<string, Scope>(rows.map((r) => [r.id, { machine_ids: r.scope_machine_ids, tags: r.scope_tags }]))
  const cache = new Map<string | null, FlowShape[]>()
  return {
    forMachine(machineId) {
      let list = cache.get(machineId)
      if (!list) {
        const own = machineId === null ? [] : (tags.get(machineId) ?? [])
        list = all.filter((sh) => inScope(scopes.get(sh.id), machineId, own))
        cache.set(machineId, list)
      }
      return list
    },
  }
}

/** A flow-shape signature's row as the matcher takes it. */
export function shapeOf(r: { id: string; name: string; severity: string; shape: StoredShape; max_jsd: number }): FlowShape {
  return {
    id: r.id,
    name: r.name,
    severity: r.severity as Severity,
    maxJsd: r.max_jsd,
    agentTypes: r.shape.agent_types ?? [],
    shape: r.shape.shape,
    minTransitions: r.shape.min_transitions ?? 2,
  }
}

/** The latest event keys a session keeps: a retried event (same key) steps its flow once. */
const RECENT_KEYS = 32

export interface SessionFlow {
  flow: Flow
  matched: Set<string>
  recent: string[]
  changed: boolean
}

interface FlowRow {
  session_key: string
  flow: unknown
  shapes_matched: string[]
  recent_keys: string[]
}

/** The sessions' flows (inside `withOrg`, under the consumer's session locks); new ones empty. */
export async function loadFlows(tx: Tx, sessions: readonly string[]): Promise<Map<string, SessionFlow>> {
  const rows = await tx<FlowRow[]>`
    select session_key, flow, shapes_matched, recent_keys from session_flows where session_key = any(${[...sessions]}::text[])`
  const byKey = new Map(rows.map((r) => [r.session_key, r]))
  return new Map(
    sessions.map((k) => {
      const r = byKey.get(k)
      return [
        k,
        {
          flow: r ? flowFromJson(r.flow) : emptyFlow(),
          matched: new Set(r?.shapes_matched ?? []),
          recent: r?.recent_keys ?? [],
          changed: false,
        },
      ]
    }),
  )
}

/** Writes back the flows that changed, in one statement. */
export async function saveFlows(tx: Tx, flows: Map<string, SessionFlow>): Promise<void> {
  const changed = [...flows.entries()].filter(([, s]) => s.changed)
  if (changed.length === 0) return
  // Each row's arrays travel as JSON text: unnest cannot take an array of arrays.
  const json = (items: Iterable<string>) => JSON.stringify([...items])
  await tx`
    insert into session_flows (org_id, session_key, flow, shapes_matched, recent_keys, updated_at)
    select app_current_org(), k, f::jsonb, array(select jsonb_array_elements_text(m::jsonb)),
           array(select jsonb_array_elements_text(r::jsonb)), now()
      from unnest(${changed.map(([k]) => k)}::text[], ${changed.map(([, s]) => JSON.stringify(flowToJson(s.flow)))}::text[],
                  ${changed.map(([, s]) => json(s.matched))}::text[], ${changed.map(([, s]) => json(s.recent))}::text[])
           as u(k, f, m, r)
    on conflict (org_id, session_key) do update
      set flow = excluded.flow, shapes_matched = excluded.shapes_matched, recent_keys = excluded.recent_keys,
          updated_at = excluded.updated_at`
}

/**
 * Records, for sessions a retro-hunt raised a shape's alert on, that the shape matched: the live
 * consumer then never raises it again for them (inside `withOrg`; takes the consumer's session
 * locks, so a concurrent step of the same session waits).
 */
export async function markShapeMatched(tx: Tx, shapeId: string, sessions: readonly string[]): Promise<void> {
  if (sessions.length === 0) return
  await lockSessions(tx, sessions)
  await tx`
    insert into session_flows (org_id, session_key, flow, shapes_matched)
    select app_current_org(), s, ${JSON.stringify(flowToJson(emptyFlow()))}::jsonb, array[${shapeId}::text]
      from unnest(${[...sessions]}::text[]) s
    on conflict (org_id, session_key) do update
      set shapes_matched = array(select distinct unnest(session_flows.shapes_matched || excluded.shapes_matched))`
}

/**
 * The per-session lock of the alerts consumer: two transactions stepping or marking one session
 * take it in one order (sorted), so they run one after the other and never deadlock.
 */
export async function lockSessions(tx: Tx, sessions: readonly string[]): Promise<void> {
  const sorted = [...new Set(sessions)].sort()
  await tx`select pg_advisory_xact_lock(hashtextextended('quint_alert_session:' || app_current_org() || ':' || s, 0))
             from unnest(${sorted}::text[]) s order by s`
}

export interface FlowFinding {
  ruleKey: string
  severity: Severity
  title: string
  context: Record<string, unknown>
}

/**
 * Steps the session's flow with one event; the shapes it matches now for the first time. The
 * context names the event that completed the shape and what it did (its capability, and its
 * destination or command line as the built-in alerts read them): what distillation turns into
 * an indicator (./distil.ts).
 */
export function stepFlow(
  s: SessionFlow,
  e: WireEvent,
  analysis: Pick<EventAnalysis, 'credentialRead' | 'outbound'>,
  shapes: readonly FlowShape[],
): FlowFinding[] {
  // `shapes`: those in force on the event's machine (`OrgShapes.forMachine`).
  if (s.recent.includes(e.eventKey)) return []
  s.recent = [...s.recent.slice(-(RECENT_KEYS - 1)), e.eventKey]
  const capability = capabilityOf(e, analysis)
  addEvent(s.flow, capability)
  s.changed = true
  const out: FlowFinding[] = []
  for (const m of matchShapes(s.flow, shapes, e.platform, s.matched)) {
    s.matched.add(m.shape.id)
    out.push({
      ruleKey: `${SHAPE_RULE_PREFIX}${m.shape.id}`,
      severity: m.shape.severity,
      title: `Flow shape ${m.shape.name} matched: ${eventLabel(e)}`,
      context: {
        shape_id: m.shape.id,
        shape_name: m.shape.name,
        jsd: Math.round(m.jsd * 1e4) / 1e4,
        similarity: Math.round(m.similarity * 1e4) / 1e4,
        transitions: flowTotal(s.flow),
        capability,
        detail: detailOf(e, capability, analysis),
      },
    })
  }
  return out
}

/** What the completing event did, for the analyst and for distillation (bounded). */
function detailOf(e: WireEvent, capability: Capability, analysis: Pick<EventAnalysis, 'outbound'>): string | null {
  const d = capability === 'send' || capability === 'fetch' ? (analysis.outbound ?? commandText(e)) : commandText(e)
  return d === null ? null : d.slice(0, 1000)
}
