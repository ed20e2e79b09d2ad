/**
 * @module console/ui/pages/alerts-queue
 * The triage queue's data: alerts in the order a responder works them (severity, then newest
 * first), the filters as they sit in the URL, and what a live `alert` event does to the list.
 *
 * The API lists alerts newest first, so the queue asks once per severity: a week-old critical
 * alert then still comes before this minute's low one, however many lows there are.
 */
import { api, type Ok, type Query } from '../api/client.ts'
import { SEVERITIES, type Severity } from '../format.ts'
import type { Approval } from './overrides-data.ts'

export type AlertView = Ok<'/v1/alerts', 'get'>['alerts'][number]
export type AlertStatus = NonNullable<Query<'/v1/alerts', 'get'>['status']>
export const STATUSES: readonly AlertStatus[] = ['open', 'acknowledged', 'resolved', 'dismissed']

export interface Filters {
  severity: Severity | null
  /** `any`: every status; absent from the URL: `open` (unreviewed), the queue. */
  status: AlertStatus | 'any'
  machine: string | null
  agent: string | null
}

export function filtersOf(q: URLSearchParams): Filters {
  const severity = q.get('severity')
  const status = q.get('status')
  return {
    severity: SEVERITIES.includes(severity as Severity) ? (severity as Severity) : null,
    status: status === 'any' || STATUSES.includes(status as AlertStatus) ? (status as AlertStatus | 'any') : 'open',
    machine: q.get('machine') || null,
    agent: q.get('agent') || null,
  }
}

/** The URL query of `f` (the default status is left out, so the plain queue is `#/alerts`). */
export const queryOf = (f: Filters): Record<string, string | undefined> => ({
  severity: f.severity ?? undefined,
  status: f.status === 'open' ? undefined : f.status,
  machine: f.machine ?? undefined,
  agent: f.agent ?? undefined,
})

const RANK: Record<string, number> = { critical: 0, high: 1, medium: 2, low: 3 }

export const byQueueOrder = (a: AlertView, b: AlertView): number =>
  (RANK[a.severity] ?? 9) - (RANK[b.severity] ?? 9) || b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id)

/** Whether an alert (as the live stream sends it) belongs in the view `f` shows. */
export const matches = (f: Filters, a: AlertView): boolean =>
  (f.severity === null || a.severity === f.severity) &&
  (f.status === 'any' || a.status === f.status) &&
  (f.machine === null || a.machine_id === f.machine) &&
  (f.agent === null || a.agent_key === f.agent)

/**
 * Approvals join only the unfiltered open queue: a request may come before its event is stored,
 * with no machine or agent yet to filter by.
 */
export const showsApprovals = (f: Filters): boolean =>
  f.status === 'open' && f.machine === null && f.agent === null && (f.severity === null || f.severity === 'critical')

const PAGE = 200

export interface Queue {
  alerts: AlertView[]
  /** Some severity had more than one page: the queue shows the first page of each. */
  more: boolean
}

export async function loadQueue(f: Filters, signal: AbortSignal): Promise<Queue> {
  const severities = f.severity ? [f.severity] : SEVERITIES
  const pages = await Promise.all(
    severities.map((severity) =>
      api.get('/v1/alerts', {
        query: {
          severity,
          limit: PAGE,
          ...(f.status === 'any' ? {} : { status: f.status }),
          ...(f.machine ? { machine_id: f.machine } : {}),
          ...(f.agent ? { agent_id: f.agent } : {}),
        },
        signal,
      }),
    ),
  )
  return { alerts: pages.flatMap((p) => p.alerts).sort(byQueueOrder), more: pages.some((p) => p.next_cursor !== null) }
}

/** A live `alert` event applied to the list: added or replaced when it belongs, else taken out. */
export function applyLive(list: readonly AlertView[], f: Filters, a: AlertView): AlertView[] {
  const rest = list.filter((x) => x.id !== a.id)
  return matches(f, a) ? [...rest, a].sort(byQueueOrder) : rest
}

export type Row = { kind: 'alert'; alert: AlertView } | { kind: 'approval'; approval: Approval }

/**
 * Pending approvals (`GET /v1/overrides/pending`, kept current by the stream's `approval` events:
 * ./overrides-data.ts) lead the queue, the one closest to expiring first: an agent is stopped
 * until someone decides, and the request expires within minutes, which no alert does.
 */
export const rowsOf = (alerts: readonly AlertView[], approvals: readonly Approval[]): Row[] => [
  ...[...approvals]
    .sort((a, b) => a.expires_at.localeCompare(b.expires_at))
    .map((approval) => ({ kind: 'approval' as const, approval })),
  ...alerts.map((alert) => ({ kind: 'alert' as const, alert })),
]
