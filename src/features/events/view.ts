/**
 * @module features/events/view
 * The one event shape every read returns (lists, detail, session events, alert context, the
 * causal chain): the API-reference event of SPEC §8.3 (`id`, `session_id`, `agent_id`,
 * `action_type`, `tool_name`, `arguments`, `risk_score`, `decision`, `timestamp`) and what we
 * store beyond it. One column list and one mapper, so no read drifts from another.
 */
import { Type, type Static } from '@sinclair/typebox'
import { Nullable } from '../../lib/schema.ts'
import type { Tx } from '../../infra/db.ts'

/** SPEC §16.1 (docs.quintai.dev cut-offs): 0–10 none, 11–30 low, 31–60 medium, 61–80 high, 81–100 critical. */
export const RISK_BANDS = [
  { band: 'none', min: 0, max: 10 },
  { band: 'low', min: 11, max: 30 },
  { band: 'medium', min: 31, max: 60 },
  { band: 'high', min: 61, max: 80 },
  { band: 'critical', min: 81, max: 100 },
] as const
export type RiskBand = (typeof RISK_BANDS)[number]['band']

/** The same bands in SQL over `column`, `unscored` for no score: for the stats' breakdowns. */
export function riskBandSql(column: string): string {
  return `case when ${column} is null then 'unscored' ${RISK_BANDS.map((b) => `when ${column} <= ${b.max} then '${b.band}'`).join(' ')} end`
}

export function riskBand(score: number | null): RiskBand | null {
  if (score === null) return null
  return RISK_BANDS.find((b) => score <= b.max)?.band ?? 'critical'
}

export interface EventRow {
  id: string
  event_key: string
  event_id: string
  occurred_at: Date
  /** `occurred_at` as Postgres printed it: the keyset cursor's sort key (microseconds kept). */
  occurred_key: string
  created_at: Date
  client_timestamp: string | null
  machine_id: string | null
  session_key: string | null
  agent_key: string | null
  schema_version: number | null
  source: string | null
  platform: string | null
  action_type: string | null
  action: string | null
  tool_name: string | null
  arguments: unknown
  decision: string | null
  blocked: boolean
  risk_score: number | null
  labels: Record<string, string>
  extra: Record<string, unknown>
  redacted: boolean
  parent_action_id: string | null
  parent_link: string | null
}

/** The select list for `EventRow`, from `actions` under `alias` (default `a`). */
export const EVENT_COLUMNS = (tx: Tx, alias = 'a') => {
  const a = tx(alias)
  return tx`${a}.id, ${a}.event_key, ${a}.event_id, ${a}.occurred_at, ${a}.occurred_at::text as occurred_key,
    ${a}.created_at, ${a}.client_timestamp, ${a}.machine_id, ${a}.session_key, ${a}.agent_key, ${a}.schema_version,
    ${a}.source, ${a}.platform, ${a}.action_type, ${a}.action, ${a}.tool_name, ${a}.arguments, ${a}.decision,
    ${a}.blocked, ${a}.risk_score, ${a}.labels, ${a}.extra, ${a}.redacted, ${a}.parent_action_id, ${a}.parent_link`
}

const Band = Type.Union(RISK_BANDS.map((b) => Type.Literal(b.band)))

export const EventView = Type.Object({
  id: Type.String({ format: 'uuid', description: 'The stored action (server-assigned).' }),
  session_id: Nullable(Type.String({ description: 'The session key as the client sent it (`session_id` on the wire).' })),
  agent_id: Nullable(Type.String({ description: 'The agent key as the client sent it.' })),
  action_type: Nullable(Type.String({ description: '`PROCESS_EXEC`, `FILE_READ`, `tools/call`, … (SPEC §8.3).' })),
  tool_name: Nullable(Type.String()),
  arguments: Type.Unknown({ description: 'As sent (array of strings, JSON, or null), secrets redacted.' }),
  risk_score: Nullable(Type.Integer({ minimum: 0, maximum: 100 })),
  risk_band: Nullable(Band),
  decision: Nullable(Type.String()),
  timestamp: Type.String({ format: 'date-time', description: 'When it happened (client time, clamped at ingest).' }),
  received_at: Type.String({ format: 'date-time', description: 'When the server accepted it.' }),
  client_timestamp: Nullable(Type.String({ description: "The client's own timestamp when it was clamped or absent." })),
  event_id: Type.String({ description: "The client's event id." }),
  event_key: Type.String({ description: 'The dedupe key (`event_id`, or a content hash for clients without unique ids).' }),
  machine_id: Nullable(Type.String({ format: 'uuid', description: 'The machine whose credential sent it.' })),
  platform: Nullable(Type.String()),
  source: Nullable(Type.String()),
  schema_version: Nullable(Type.Integer()),
  action: Nullable(Type.String({ description: 'The daemon action name (`tool:Bash`, `http:host:verb.slug`, …).' })),
  blocked: Type.Boolean(),
  labels: Type.Record(Type.String(), Type.String()),
  extra: Type.Record(Type.String(), Type.Unknown(), { description: 'Fields we store beyond the known ones.' }),
  redacted: Type.Boolean({ description: 'True when ingest replaced a secret with `[REDACTED:kind]`.' }),
  parent_id: Nullable(Type.String({ format: 'uuid', description: 'The action that caused this one (docs/causal-chain.md).' })),
  parent_link: Nullable(
    Type.String({ description: 'Which rule linked `parent_id`: tool_use_id, process, process_tree, time_window.' }),
  ),
})
export type EventView = Static<typeof EventView>

export function eventView(r: EventRow): EventView {
  return {
    id: r.id,
    session_id: r.session_key,
    agent_id: r.agent_key,
    action_type: r.action_type,
    tool_name: r.tool_name,
    arguments: r.arguments,
    risk_score: r.risk_score,
    risk_band: riskBand(r.risk_score),
    decision: r.decision,
    timestamp: r.occurred_at.toISOString(),
    received_at: r.created_at.toISOString(),
    client_timestamp: r.client_timestamp,
    event_id: r.event_id,
    event_key: r.event_key,
    machine_id: r.machine_id,
    platform: r.platform,
    source: r.source,
    schema_version: r.schema_version,
    action: r.action,
    blocked: r.blocked,
    labels: r.labels,
    extra: r.extra,
    redacted: r.redacted,
    parent_id: r.parent_action_id,
    parent_link: r.parent_link,
  }
}
