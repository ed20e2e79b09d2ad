/**
 * @module features/signatures/flow-match
 * Flow shapes matched where the events are (issue 11; docs/flow-shapes.md "Where matching runs"):
 * the alerts consumer keeps each session's flow matrix (`alert_session_state.flow`), steps it with
 * every new event, and raises `signature:<shape id>` once per session and shape (`shapes_matched`).
 * The shapes: the five built-ins, always on, and the org's active `flow_shape` signatures.
 */
import type { WireEvent } from '../../bus/bus.ts'
import type { Tx } from '../../infra/db.ts'
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

/** The built-ins and the org's active flow-shape signatures (inside `withOrg`). */
export async function orgShapes(tx: Tx): Promise<FlowShape[]> {
  const rows = await tx<{ id: string; name: string; severity: Severity; shape: StoredShape; max_jsd: number }[]>`
    select id, name, severity, shape, max_jsd from threat_signatures
     where kind = 'flow_shape' and status = 'active' and (expires_at is null or expires_at > now())
     order by created_at, id`
  return [
    ...BUILTIN_SHAPES,
    ...rows.map((r) => ({
      id: r.id,
      name: r.name,
      severity: r.severity,
      maxJsd: r.max_jsd,
      agentTypes: r.shape.agent_types ?? [],
      shape: r.shape.shape,
      minTransitions: r.shape.min_transitions ?? 2,
    })),
  ]
}

export interface SessionFlow {
  flow: Flow
  matched: Set<string>
  changed: boolean
}

export function sessionFlow(row: { flow: unknown; shapes_matched: string[] } | undefined): SessionFlow {
  return {
    flow: row?.flow ? flowFromJson(row.flow) : emptyFlow(),
    matched: new Set(row?.shapes_matched ?? []),
    changed: false,
  }
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
  const capability = capabilityOf(e, analysis)
  addEvent(s.flow, capability)
  s.changed = true
  const out: FlowFinding[] = []
  for (const m of matchShapes(s.flow, shapes, e.platform)) {
    if (s.matched.has(m.shape.id)) continue
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

/** The touched sessions' state, written back in one statement. */
export function flowColumns(flows: Map<string, SessionFlow>) {
  const changed = [...flows.entries()].filter(([, s]) => s.changed)
  return {
    keys: changed.map(([k]) => k),
    flows: changed.map(([, s]) => JSON.stringify(flowToJson(s.flow))),
    matched: changed.map(([, s]) => `{${[...s.matched].map((m) => `"${m.replace(/["\\]/g, '\\$&')}"`).join(',')}}`),
  }
}
