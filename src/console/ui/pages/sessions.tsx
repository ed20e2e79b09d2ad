/**
 * @module console/ui/pages/sessions
 * Sessions (issue 12): the agents' sessions, newest first, filtered as `GET /v1/sessions` filters
 * (kept in the hash), and one session's detail at `#/sessions/<id>` (`?at=<event id>` marks one
 * event of its timeline: the Alerts page's "Investigate" links there).
 */
import { useEffect, useMemo, useRef, useState } from 'preact/hooks'
import { api, type Query } from '../api/client.ts'
import { Badge, Empty, ErrorNote, Loading, PageHeader } from '../components/common.tsx'
import { ago, count, riskBand } from '../format.ts'
import { useLiveRefresh } from '../hooks.ts'
import { href, navigate } from '../router.ts'
import type { PageProps } from '../session.ts'
import { fullTime, MachineLink, RiskBadge, useMachines } from './events-parts.tsx'
import { SessionDetail, StateBadge, type SessionView } from './sessions-detail.tsx'
import './events.css'
import './sessions.css'

type Params = Query<'/v1/sessions', 'get'>

const KEYS = ['state', 'platform', 'root_only', 'window', 'machine_id', 'agent_id'] as const
type Key = (typeof KEYS)[number]
const WINDOWS: Record<string, [number, string]> = {
  '1h': [3600_000, 'Last hour'],
  '24h': [24 * 3600_000, 'Last 24 hours'],
  '7d': [7 * 24 * 3600_000, 'Last 7 days'],
  '30d': [30 * 24 * 3600_000, 'Last 30 days'],
}
const PAGE = 50
const REFRESH_MS = 3000

export function Sessions({ route }: PageProps) {
  const machines = useMachines()
  if (route.parts[1]) return <SessionDetail id={route.parts[1]} at={route.query.get('at')} hostname={machines.hostname} />
  return <SessionList query={route.query} machines={machines} />
}

function SessionList({ query, machines }: { query: URLSearchParams; machines: ReturnType<typeof useMachines> }) {
  const filters = useMemo(() => {
    const f: Partial<Record<Key, string>> = {}
    for (const k of KEYS) if (query.get(k)) f[k] = query.get(k)!
    return f
  }, [query.toString()])
  const key = JSON.stringify(filters)
  const params = (): Params => ({
    state: filters.state as Params['state'],
    platform: filters.platform,
    root_only: filters.root_only === 'true' ? true : undefined,
    since:
      filters.window && WINDOWS[filters.window] ? new Date(Date.now() - WINDOWS[filters.window]![0]).toISOString() : undefined,
    machine_id: filters.machine_id,
    agent_id: filters.agent_id,
    limit: PAGE,
  })
  const [rows, setRows] = useState<SessionView[]>([])
  const [cursor, setCursor] = useState<string | null>(null)
  const [loading, setLoading] = useState(true)
  const [error, setError] = useState<Error | null>(null)
  const [generation, setGeneration] = useState(0)

  useEffect(() => {
    const ctl = new AbortController()
    setLoading(true)
    setError(null)
    setRows([])
    api.get('/v1/sessions', { query: params(), signal: ctl.signal }).then(
      (r) => {
        if (ctl.signal.aborted) return
        setRows(r.sessions)
        setCursor(r.next_cursor)
        setLoading(false)
      },
      (err: Error) => !ctl.signal.aborted && (setError(err), setLoading(false)),
    )
    return () => ctl.abort()
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, generation])

  // New events change sessions (counts, state, new ones): the newest page is fetched again, at most
  // every few seconds, and merged into what was paged through (ids are stable: docs/sessions.md).
  const current = useRef(key)
  current.current = key
  const live = useLiveRefresh(
    'events',
    () => {
      const asked = current.current
      api.get('/v1/sessions', { query: params() }).then(
        (r) => asked === current.current && setRows((old) => mergeSessions(old, r.sessions)),
        () => {}, // the next event tries again; the list stays as it was
      )
    },
    { delayMs: REFRESH_MS, accept: (type) => type === 'event' || type === 'gap' },
  )

  const loadMore = () => {
    if (!cursor) return
    const asked = key
    setLoading(true)
    api.get('/v1/sessions', { query: { ...params(), cursor } }).then(
      (r) => {
        if (asked !== current.current) return
        setRows((old) => mergeSessions(old, r.sessions))
        setCursor(r.next_cursor)
        setLoading(false)
      },
      (err: Error) => (setError(err), setLoading(false)),
    )
  }

  const apply = (form: HTMLFormElement) => {
    const data = new FormData(form)
    const next: Record<string, string | undefined> = {}
    for (const k of KEYS) next[k] = ((data.get(k) as string | null) ?? '').trim() || undefined
    navigate(href(['sessions'], next))
  }
  const applyNow = (e: Event) => (e.currentTarget as HTMLElement).closest('form')!.requestSubmit()
  const active = Object.keys(filters).length > 0
  return (
    <div class="sessions-page">
      <PageHeader title="Sessions" live={live} />
      <form
        class="filters"
        key={key}
        aria-label="Filter sessions"
        onSubmit={(e) => {
          e.preventDefault()
          apply(e.currentTarget)
        }}
      >
        <div class="ev-field">
          <label for="ss-f-state">State</label>
          <select id="ss-f-state" name="state" defaultValue={filters.state ?? ''} onChange={applyNow}>
            <option value="">Any state</option>
            <option value="active">Active</option>
            <option value="idle">Idle</option>
            <option value="ended">Ended</option>
          </select>
        </div>
        <div class="ev-field">
          <label for="ss-f-window">Started</label>
          <select id="ss-f-window" name="window" defaultValue={filters.window ?? ''} onChange={applyNow}>
            <option value="">Any time</option>
            {Object.entries(WINDOWS).map(([k, [, label]]) => (
              <option key={k} value={k}>
                {label}
              </option>
            ))}
          </select>
        </div>
        <div class="ev-field">
          <label for="ss-f-machine_id">Machine</label>
          <select id="ss-f-machine_id" name="machine_id" defaultValue={filters.machine_id ?? ''} onChange={applyNow}>
            <option value="">Any machine</option>
            {filters.machine_id && !machines.machines.some((m) => m.id === filters.machine_id) && (
              <option value={filters.machine_id}>{filters.machine_id}</option>
            )}
            {machines.machines.map((m) => (
              <option key={m.id} value={m.id}>
                {m.hostname ?? m.id}
              </option>
            ))}
          </select>
        </div>
        <div class="ev-field">
          <label for="ss-f-agent_id">Agent</label>
          <input id="ss-f-agent_id" name="agent_id" defaultValue={filters.agent_id ?? ''} placeholder="agent key" />
        </div>
        <div class="ev-field">
          <label for="ss-f-platform">Platform</label>
          <input id="ss-f-platform" name="platform" defaultValue={filters.platform ?? ''} placeholder="e.g. claude-code" />
        </div>
        <label class="ss-check">
          <input
            type="checkbox"
            name="root_only"
            value="true"
            defaultChecked={filters.root_only === 'true'}
            onChange={applyNow}
          />
          Top-level sessions only
        </label>
        <div class="filter-buttons">
          <button type="submit" class="primary">
            Apply
          </button>
          <a href={href(['sessions'])}>Clear all</a>
        </div>
      </form>
      <ErrorNote error={error} retry={() => setGeneration((g) => g + 1)} />
      {rows.length === 0 ? (
        loading ? (
          <Loading />
        ) : error ? null : active ? (
          <Empty title="No sessions match these filters">
            <p>
              Choose a longer time window or another state, or <a href={href(['sessions'])}>clear all filters</a>.
            </p>
          </Empty>
        ) : (
          <Empty title="No sessions yet">
            <p>
              A session appears here with the first event an agent sends from it. See <a href={href(['events'])}>Events</a> for
              what has arrived, or install the Quint daemon with a deploy token from{' '}
              <a href={href(['settings'], { tab: 'tokens' })}>Settings → Tokens</a>.
            </p>
          </Empty>
        )
      ) : (
        <SessionTable rows={rows} hostname={machines.hostname} />
      )}
      <div class="events-more">
        {cursor ? (
          <button type="button" onClick={loadMore} disabled={loading}>
            {loading ? 'Loading…' : 'Load more'}
          </button>
        ) : rows.length > 0 ? (
          <span class="hint">That is every session these filters match.</span>
        ) : null}
      </div>
    </div>
  )
}

/** Newest first by `started_at`, deduplicated by id (the later copy wins). */
function mergeSessions(a: readonly SessionView[], b: readonly SessionView[]): SessionView[] {
  const byId = new Map<string, SessionView>()
  for (const s of [...b, ...a]) byId.set(s.id, s)
  return [...byId.values()].sort((x, y) =>
    x.started_at < y.started_at ? 1 : x.started_at > y.started_at ? -1 : x.id < y.id ? 1 : -1,
  )
}

function SessionTable({ rows, hostname }: { rows: readonly SessionView[]; hostname(id: string | null): string | null }) {
  return (
    <div class="table-scroll">
      <table class="plain sessions-table">
        <caption class="ev-sr">Sessions, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Session</th>
            <th scope="col">Started</th>
            <th scope="col">Agent</th>
            <th scope="col">Machine</th>
            <th scope="col">State</th>
            <th scope="col">Events</th>
            <th scope="col">Blocked</th>
            <th scope="col">Max risk</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((s) => (
            <tr key={s.id} class={s.blocked_count > 0 ? 'has-blocked' : undefined}>
              <th scope="row">
                <a href={href(['sessions', s.id])}>{s.session_name ?? s.session_key}</a>
                {s.parent_key && (
                  <div class="hint">
                    sub-agent of {s.parent_id ? <a href={href(['sessions', s.parent_id])}>{s.parent_key}</a> : s.parent_key}
                  </div>
                )}
                {s.session_name && <div class="hint">{s.session_key}</div>}
              </th>
              <td>
                <time dateTime={s.started_at} title={s.started_at}>
                  {fullTime(s.started_at)}
                </time>
                <div class="hint">last event {ago(s.last_event_at)}</div>
              </td>
              <td>{s.agent_id ?? '—'}</td>
              <td>
                <MachineLink id={s.machine_id} hostname={hostname(s.machine_id)} />
              </td>
              <td>
                <StateBadge state={s.state} />
              </td>
              <td class="ss-num">{count(s.risk_summary.total_events)}</td>
              <td class="ss-num">{s.blocked_count > 0 ? <Badge kind="block">{count(s.blocked_count)}</Badge> : '0'}</td>
              <td>
                <RiskBadge score={s.risk_summary.max_risk} band={riskBand(s.risk_summary.max_risk)} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  )
}
