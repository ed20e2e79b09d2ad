/**
 * @module console/ui/pages/alerts
 * The triage queue (`#/alerts`): unreviewed alerts, most severe first and newest first within a
 * severity, led by the approvals agents are waiting for; filters (severity, status, machine,
 * agent) live in the URL so a pasted link opens the same queue. `#/alerts/<id>` opens one alert
 * beside the queue. New alerts and status changes made by others arrive live (`alert` events of
 * the `alerts` topic), approval requests and their ends too (`approval` events); after a gap or a
 * reconnect the queue and the requests are fetched again, since the stream carries what is new,
 * not what was missed. A request past its `expires_at` leaves the queue then.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import { Badge, Empty, ErrorNote, Loading, PageHeader } from '../components/common.tsx'
import { VirtualTable, type Column } from '../components/virtual-table.tsx'
import { ago, count, SEVERITIES, short, type Severity } from '../format.ts'
import { useLive, useLoad } from '../hooks.ts'
import { href, navigate } from '../router.ts'
import type { PageProps } from '../session.ts'
import { AlertDetail } from './alerts-detail.tsx'
import {
  applyLive,
  filtersOf,
  loadQueue,
  queryOf,
  rowsOf,
  showsApprovals,
  STATUSES,
  type AlertView,
  type Filters,
  type Row,
} from './alerts-queue.ts'
import { useApprovals } from './overrides-data.ts'
import { allMachines, valueOf } from './policies-fields.tsx'
import './policies.css'
import './alerts.css'

export function Alerts({ route }: PageProps) {
  const id = route.parts[1]
  const f = filtersOf(route.query)
  const key = JSON.stringify(f)
  const withApprovals = showsApprovals(f)

  // When the current fetch began: live events from then on may be missing from its answer.
  const fetchedFrom = useRef(0)
  const queue = useLoad(
    (signal) => {
      fetchedFrom.current = Date.now()
      return loadQueue(f, signal)
    },
    [key],
  )
  const approvals = useApprovals(withApprovals)
  const waiting = withApprovals ? (approvals.pending ?? []) : []
  const machines = useLoad((signal) => allMachines(signal, 1000), [])
  const [alerts, setAlerts] = useState<AlertView[]>([])
  /** The last state the stream sent of each alert, and when it came. */
  const [latest, setLatest] = useState<Record<string, { alert: AlertView; at: number }>>({})
  const [fresh, setFresh] = useState<ReadonlySet<string>>(new Set())
  useEffect(() => {
    if (!queue.data) return
    // What arrived live while the fetch was under way is applied again over its answer.
    const since = Object.values(latest).filter((l) => l.at >= fetchedFrom.current)
    setAlerts(since.reduce((list, l) => applyLive(list, f, l.alert), queue.data.alerts))
  }, [queue.data])

  const apply = (a: AlertView, isNew: boolean) => {
    setAlerts((list) => applyLive(list, f, a))
    setLatest((m) => ({ ...m, [a.id]: { alert: a, at: Date.now() } }))
    if (isNew) setFresh((s) => new Set(s).add(a.id))
  }
  const live = useLive('alerts', (type, data) => {
    approvals.onLive(type, data)
    if (type === 'gap') queue.reload()
    else if (type === 'alert' && data && typeof data === 'object') {
      const a = data as AlertView
      apply(a, !alerts.some((x) => x.id === a.id))
    }
  })
  const wasLive = useRef(false)
  useEffect(() => {
    if (live === 'live' && wasLive.current === false && queue.data) {
      queue.reload()
      if (withApprovals) approvals.reload()
    }
    wasLive.current = live === 'live'
  }, [live])

  const setFilter = (change: Partial<Filters>) => navigate(href(id ? ['alerts', id] : ['alerts'], queryOf({ ...f, ...change })))
  const detailHref = (a: AlertView) => href(['alerts', a.id], queryOf(f))
  const rows = rowsOf(alerts, waiting)
  const filtered = f.severity !== null || f.status !== 'open' || f.machine !== null || f.agent !== null
  const next = alerts.find((a) => a.id !== id) ?? null
  const hosts = new Map((machines.data ?? []).map((m) => [m.id, m.hostname ?? m.client_machine_id]))

  return (
    <section class="alerts-page">
      <PageHeader title="Alerts" live={live}>
        <span class="hint" aria-live="polite">
          {queue.data ? summary(alerts, f, waiting.length, queue.data.more) : ''}
        </span>
      </PageHeader>
      <form class="filters" role="search" aria-label="Filter alerts" onSubmit={(e) => e.preventDefault()}>
        <label>
          Severity
          <select value={f.severity ?? ''} onChange={(e) => setFilter({ severity: (valueOf(e) || null) as Severity | null })}>
            <option value="">any</option>
            {SEVERITIES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Status
          <select value={f.status} onChange={(e) => setFilter({ status: valueOf(e) as Filters['status'] })}>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s === 'open' ? 'open (unreviewed)' : s}
              </option>
            ))}
            <option value="any">any</option>
          </select>
        </label>
        <label>
          Machine
          <select value={f.machine ?? ''} onChange={(e) => setFilter({ machine: valueOf(e) || null })}>
            <option value="">any</option>
            {f.machine && !hosts.has(f.machine) && <option value={f.machine}>{short(f.machine)}</option>}
            {(machines.data ?? []).map((m) => (
              <option key={m.id} value={m.id}>
                {m.hostname ?? m.client_machine_id}
              </option>
            ))}
          </select>
        </label>
        <label>
          Agent
          <input
            key={f.agent ?? ''}
            defaultValue={f.agent ?? ''}
            placeholder="agent key"
            spellcheck={false}
            onChange={(e) => setFilter({ agent: valueOf(e).trim() || null })}
          />
        </label>
        {filtered && (
          <a class="button" href={href(id ? ['alerts', id] : ['alerts'])}>
            Back to the open queue
          </a>
        )}
      </form>
      <ErrorNote error={queue.error} retry={queue.reload} />
      <ErrorNote error={approvals.error} retry={approvals.reload} />
      <div class={id ? 'alerts-split' : ''}>
        <div class="queue">
          {!queue.data ? (
            queue.error ? null : (
              <Loading />
            )
          ) : rows.length === 0 ? (
            <EmptyQueue filtered={filtered} />
          ) : (
            <VirtualTable
              label={f.status === 'open' ? 'Triage queue' : 'Alerts'}
              rows={rows}
              columns={columns(!!id, hosts, detailHref)}
              rowKey={(r) => (r.kind === 'alert' ? r.alert.id : `approval-${r.approval.override_jti}`)}
              rowClass={(r) =>
                r.kind === 'approval'
                  ? 'approval-row'
                  : `${r.alert.id === id ? 'selected' : ''} ${fresh.has(r.alert.id) ? 'fresh' : ''}`
              }
              onRowClick={(r) =>
                navigate(r.kind === 'alert' ? detailHref(r.alert) : href(['overrides'], { event: r.approval.event_id }))
              }
              rowHeight={40}
              height={id ? '75vh' : '70vh'}
            />
          )}
        </div>
        {id && (
          <AlertDetail id={id} live={latest[id]?.alert} next={next} nextHref={detailHref} onChanged={(a) => apply(a, false)} />
        )}
      </div>
    </section>
  )
}

function summary(alerts: AlertView[], f: Filters, approvals: number, more: boolean): string {
  const by = SEVERITIES.map((s) => [s, alerts.filter((a) => a.severity === s).length] as const).filter(([, n]) => n > 0)
  const what = f.status === 'open' ? 'unreviewed' : f.status === 'any' ? '' : f.status
  const parts = [`${count(alerts.length)}${more ? '+' : ''} ${what} alert${alerts.length === 1 ? '' : 's'}`.replace('  ', ' ')]
  if (by.length) parts.push(by.map(([s, n]) => `${n} ${s}`).join(', '))
  if (approvals) parts.push(`${approvals} approval${approvals === 1 ? '' : 's'} waiting`)
  return parts.join(' · ')
}

function EmptyQueue({ filtered }: { filtered: boolean }) {
  return filtered ? (
    <Empty title="No alert matches these filters">
      <p>
        Widen the filters above, or go <a href={href(['alerts'])}>back to the open queue</a>.
      </p>
    </Empty>
  ) : (
    <Empty title="Nothing to triage">
      <p>
        Every alert has been reviewed. New ones appear here as the rules fire (built-in rules for destructive commands, credential
        reads, exfiltration, blocked and high-risk actions, and your own). To be told without this page open, add a webhook under{' '}
        <a href={href(['settings'], { tab: 'webhooks' })}>Settings → Webhooks</a>.
      </p>
    </Empty>
  )
}

function columns(narrow: boolean, hosts: Map<string, string>, detailHref: (a: AlertView) => string): Column<Row>[] {
  const all: (Column<Row> & { wide?: boolean })[] = [
    {
      key: 'severity',
      label: 'Severity',
      width: '6.5rem',
      cell: (r) =>
        r.kind === 'alert' ? <Badge kind={r.alert.severity}>{r.alert.severity}</Badge> : <Badge kind="approval">approval</Badge>,
    },
    {
      key: 'title',
      label: 'Alert',
      width: 'minmax(12rem, 1fr)',
      cell: (r) =>
        r.kind === 'alert' ? (
          <a href={detailHref(r.alert)} title={r.alert.title}>
            {r.alert.title}
          </a>
        ) : (
          <a href={href(['overrides'], { event: r.approval.event_id })}>
            Approval waiting: event {short(r.approval.event_id, 16)}
          </a>
        ),
    },
    {
      key: 'machine',
      label: 'Machine',
      width: '10rem',
      wide: true,
      cell: (r) =>
        r.kind === 'alert'
          ? (r.alert.machine?.hostname ?? (r.alert.machine_id ? hosts.get(r.alert.machine_id) : null) ?? '—')
          : (r.approval.machine?.hostname ?? (r.approval.machine ? hosts.get(r.approval.machine.id) : null) ?? '—'),
    },
    // Kept beside an opened alert: two alerts of one rule differ by their agent.
    {
      key: 'agent',
      label: 'Agent',
      width: '9rem',
      cell: (r) =>
        r.kind === 'alert'
          ? (r.alert.agent_key ?? '—')
          : (r.approval.event?.agent_id ?? r.approval.requested_by?.agent_id ?? '—'),
    },
    {
      key: 'status',
      label: 'Status',
      width: '7.5rem',
      wide: true,
      cell: (r) => (r.kind === 'alert' ? r.alert.status : 'waiting'),
    },
    {
      key: 'when',
      label: 'When',
      width: '8.5rem',
      cell: (r) => (r.kind === 'alert' ? ago(r.alert.created_at) : `expires ${ago(r.approval.expires_at)}`),
    },
  ]
  return all.filter((c) => !narrow || !c.wide)
}
