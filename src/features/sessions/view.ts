/**
 * @module features/sessions/view
 * The one session shape every read returns (lists, detail, children, tree, alert context) and
 * the one way a path id finds a session: its UUID or the edge's session key (SPEC §10: the API
 * speaks of UUIDs, the edge sends `{rootPID}-{startUnixMs}`; both name the same row).
 */
import { Type, type Static } from '@sinclair/typebox'
import { Nullable } from '../../lib/schema.ts'
import { isUuid, type Tx } from '../../infra/db.ts'

export interface SessionRow {
  id: string
  session_key: string
  parent_key: string | null
  parent_id: string | null
  machine_id: string | null
  agent_id: string | null
  agent_key: string | null
  session_name: string | null
  model: string | null
  signing_id: string | null
  platform: string | null
  state: string
  started_at: Date
  /** `started_at` as Postgres printed it: the keyset cursor's sort key. */
  started_key: string
  ended_at: Date | null
  last_event_at: Date | null
  event_count: string
  blocked_count: string
  risk_max: number | null
  risk_sum: string
  risk_count: string
}

/** The select list for `SessionRow`, from `sessions s` (the agent key comes from `agents`). */
export const SESSION_COLUMNS = (tx: Tx) => tx`
  s.id, s.session_key, s.parent_key, s.parent_id, s.machine_id, s.agent_id,
  (select g.agent_key from agents g where g.org_id = s.org_id and g.id = s.agent_id) as agent_key,
  s.session_name, s.model, s.signing_id, s.platform, s.state, s.started_at, s.started_at::text as started_key,
  s.ended_at, s.last_event_at, s.event_count, s.blocked_count, s.risk_max, s.risk_sum, s.risk_count`

const Timestamp = Type.String({ format: 'date-time' })

export const RiskSummary = Type.Object({
  total_events: Type.Integer({ description: 'Events stored for the session.' }),
  max_risk: Nullable(Type.Integer({ minimum: 0, maximum: 100 })),
  avg_risk: Nullable(Type.Number({ description: 'Mean risk over the events that carried a score.' })),
})

export const SessionView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  session_key: Type.String({ description: 'The edge session id (`session_id` on events).' }),
  parent_id: Nullable(Type.String({ format: 'uuid' })),
  parent_key: Nullable(Type.String()),
  session_name: Nullable(Type.String()),
  model: Nullable(Type.String()),
  signing_id: Nullable(Type.String()),
  platform: Nullable(Type.String()),
  state: Type.Union([Type.Literal('active'), Type.Literal('idle'), Type.Literal('ended')]),
  started_at: Timestamp,
  ended_at: Nullable(Timestamp),
  last_event_at: Nullable(Timestamp),
  machine_id: Nullable(Type.String({ format: 'uuid' })),
  agent_id: Nullable(Type.String({ description: 'The agent key (as on events).' })),
  blocked_count: Type.Integer(),
  risk_summary: RiskSummary,
})
export type SessionView = Static<typeof SessionView>

export function sessionView(s: SessionRow): SessionView {
  const riskCount = Number(s.risk_count)
  return {
    id: s.id,
    session_key: s.session_key,
    parent_id: s.parent_id,
    parent_key: s.parent_key,
    session_name: s.session_name,
    model: s.model,
    signing_id: s.signing_id,
    platform: s.platform,
    state: s.state as SessionView['state'],
    started_at: s.started_at.toISOString(),
    ended_at: s.ended_at?.toISOString() ?? null,
    last_event_at: s.last_event_at?.toISOString() ?? null,
    machine_id: s.machine_id,
    agent_id: s.agent_key,
    blocked_count: Number(s.blocked_count),
    risk_summary: {
      total_events: Number(s.event_count),
      max_risk: s.risk_max,
      avg_risk: riskCount > 0 ? Math.round((Number(s.risk_sum) / riskCount) * 100) / 100 : null,
    },
  }
}

/** A session by its UUID or its session key; null when neither names one of this org's. */
export async function findSession(tx: Tx, idOrKey: string): Promise<SessionRow | null> {
  if (idOrKey.length === 0 || idOrKey.length > 256) return null
  const id = idOrKey.toLowerCase()
  const [row] = await tx<SessionRow[]>`
    select ${SESSION_COLUMNS(tx)} from sessions s
     where ${isUuid(id) ? tx`s.id = ${id}::uuid or` : tx``} s.session_key = ${idOrKey}
     order by (s.session_key = ${idOrKey}) limit 1`
  return row ?? null
}
