/**
 * @module features/simulate/stored
 * A stored action as the replays read it (issue 11): the daemon's three inputs (SPEC §11.2), as
 * the daemon named them when it saw the action, and the bus form the consumers' code reads.
 */
import type { WireEvent } from '../../bus/bus.ts'

/** What a simulation reads of a stored action; the optional fields only fill `wireEventOf`. */
export interface StoredAction {
  id: string
  event_id: string
  occurred_at: Date
  machine_id: string | null
  agent_key: string | null
  tool_name: string | null
  action: string | null
  action_type: string | null
  arguments: unknown
  session_key: string | null
  platform: string | null
  event_key?: string
  client_timestamp?: string | null
  schema_version?: number | null
  source?: string | null
  decision?: string | null
  blocked?: boolean
  risk_score?: number | null
  labels?: Record<string, string>
  extra?: Record<string, unknown>
}

/** The three inputs of the daemon's evaluator. */
export interface DaemonInputs {
  toolName: string
  agentName: string
  argsJson: string
}

/**
 * The tool name the daemon evaluates: HTTP traffic is named `http:{domain}:{verb}.{slug}` (kept in
 * `action`), a tool call by its tool (`tool:Bash` is stored with `tool_name` `Bash`).
 */
export function daemonToolName(row: Pick<StoredAction, 'action' | 'tool_name'>): string {
  if (row.action?.startsWith('http:')) return row.action
  return row.tool_name ?? row.action ?? ''
}

/** The agent name the daemon evaluates (`''` when the action names none, as Go's zero value). */
export function daemonAgentName(row: Pick<StoredAction, 'agent_key'>): string {
  return row.agent_key ?? ''
}

/**
 * The raw arguments JSON the daemon searches for conditions: none is `''` (never matched), a
 * string (arguments that were not JSON) as it is, anything else re-serialised from jsonb.
 */
export function daemonArgsJson(row: Pick<StoredAction, 'arguments'>): string {
  const args = row.arguments
  if (args === null || args === undefined) return ''
  return typeof args === 'string' ? args : JSON.stringify(args)
}

export function daemonInputs(row: Pick<StoredAction, 'action' | 'tool_name' | 'agent_key' | 'arguments'>): DaemonInputs {
  return { toolName: daemonToolName(row), agentName: daemonAgentName(row), argsJson: daemonArgsJson(row) }
}

/** The bus form of a stored action, for what reads events as the consumers do (`capabilityOf`). */
export function wireEventOf(row: StoredAction): WireEvent {
  return {
    eventKey: row.event_key ?? `a:${row.id}`,
    eventId: row.event_id,
    occurredAt: row.occurred_at.toISOString(),
    clientTimestamp: row.client_timestamp ?? null,
    sessionKey: row.session_key,
    agentKey: row.agent_key,
    schemaVersion: row.schema_version ?? null,
    source: row.source ?? null,
    platform: row.platform,
    actionType: row.action_type,
    action: row.action,
    toolName: row.tool_name,
    arguments: row.arguments,
    decision: row.decision ?? null,
    blocked: row.blocked ?? false,
    riskScore: row.risk_score ?? null,
    labels: row.labels ?? {},
    extra: row.extra ?? {},
    redactions: 0,
    replacedChars: 0,
  }
}
