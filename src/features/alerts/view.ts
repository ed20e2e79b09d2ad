/**
 * @module features/alerts/view
 * The one alert shape every read returns: `GET /v1/alerts` and its detail, `PATCH
 * /v1/alerts/{id}`, and the console's live stream (`alert` events, issue 12), so none drifts.
 */
import type { AlertRow } from './repo.ts'

/** An alert as every read shows it (`GET /v1/alerts`, the live stream's `alert` events). */
export function alertView(a: AlertRow) {
  return {
    id: a.id,
    rule_key: a.rule_key,
    rule_id: a.rule_id,
    event_key: a.event_key,
    action_id: a.action_id,
    session_key: a.session_key,
    machine_id: a.machine_id,
    machine: a.machine_id ? { id: a.machine_id, hostname: a.machine_hostname } : null,
    agent_key: a.agent_key,
    severity: a.severity,
    title: a.title,
    context: a.context,
    status: a.status,
    created_at: a.created_at.toISOString(),
    updated_at: a.updated_at.toISOString(),
  }
}
