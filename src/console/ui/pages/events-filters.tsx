/**
 * @module console/ui/pages/events-filters
 * The Events page's filters: the query parameters of `GET /v1/events` (docs/events.md), kept in the
 * hash under the API's own names so a pasted link reproduces the view, plus `window` (a time window
 * relative to now: `15m`, `1h`, `24h`, `7d`, `30d`). The same filters are applied here to live
 * events, which arrive unfiltered.
 */
import { useState } from 'preact/hooks'
import type { Query } from '../api/client.ts'
import { href } from '../router.ts'
import type { EventView } from './events-parts.tsx'

export const FILTER_KEYS = [
  'q',
  'machine_id',
  'agent_id',
  'session_id',
  'tool_name',
  'action_type',
  'decision',
  'platform',
  'blocked',
  'redacted',
  'risk_min',
  'risk_max',
  'window',
  'since',
  'until',
] as const
export type FilterKey = (typeof FILTER_KEYS)[number]
export type Filters = Partial<Record<FilterKey, string>>

export const WINDOWS: Record<string, { ms: number; label: string }> = {
  '15m': { ms: 15 * 60_000, label: 'Last 15 minutes' },
  '1h': { ms: 3600_000, label: 'Last hour' },
  '24h': { ms: 24 * 3600_000, label: 'Last 24 hours' },
  '7d': { ms: 7 * 24 * 3600_000, label: 'Last 7 days' },
  '30d': { ms: 30 * 24 * 3600_000, label: 'Last 30 days' },
}

/** Filters that make the API limit the request to a time window (docs/events.md, "The window rule"). */
const WIDE: readonly FilterKey[] = ['action_type', 'decision', 'platform', 'blocked', 'redacted', 'risk_min', 'risk_max', 'q']

export function filtersOf(query: URLSearchParams): Filters {
  const f: Filters = {}
  for (const k of FILTER_KEYS) {
    const v = query.get(k)?.trim()
    if (v) f[k] = v
  }
  // A relative window and absolute bounds contradict each other: the bounds win (a pasted incident link).
  if (f.window && (f.since || f.until || !WINDOWS[f.window])) delete f.window
  return f
}

/** The instant the window starts and ends, as the API and the live filter read them. */
export function bounds(f: Filters, now = Date.now()): { since?: string; until?: string } {
  if (f.window) return { since: new Date(now - WINDOWS[f.window]!.ms).toISOString() }
  return { since: f.since, until: f.until }
}

const int = (v: string | undefined) => (v === undefined || !/^\d+$/.test(v) ? undefined : Number(v))
const bool = (v: string | undefined) => (v === 'true' ? true : v === 'false' ? false : undefined)

export function apiQuery(f: Filters, now = Date.now()): Query<'/v1/events', 'get'> {
  return {
    q: f.q,
    machine_id: f.machine_id,
    agent_id: f.agent_id,
    session_id: f.session_id,
    tool_name: f.tool_name,
    action_type: f.action_type,
    decision: f.decision,
    platform: f.platform,
    blocked: bool(f.blocked),
    redacted: bool(f.redacted),
    risk_min: int(f.risk_min),
    risk_max: int(f.risk_max),
    ...bounds(f, now),
  }
}

/** Whether new events can match: not when the window ended in the past. */
export function liveAllowed(f: Filters, now = Date.now()): boolean {
  const { until } = bounds(f, now)
  return !until || Date.parse(until) > now
}

/**
 * The API's filters, applied to one event in the browser (exact and case-sensitive but `q`; a
 * score filter never matches an unscored event). `sessionKey` is the session filter as events
 * carry it, when the filter named the session by its UUID.
 */
export function matches(e: EventView, f: Filters, sessionKey?: string | null, now = Date.now()): boolean {
  const exact: [FilterKey, string | null][] = [
    ['machine_id', e.machine_id],
    ['agent_id', e.agent_id],
    ['tool_name', e.tool_name],
    ['action_type', e.action_type],
    ['decision', e.decision],
    ['platform', e.platform],
    ['blocked', String(e.blocked)],
    ['redacted', String(e.redacted)],
  ]
  for (const [k, v] of exact) if (f[k] !== undefined && f[k] !== v) return false
  if (f.session_id && e.session_id !== f.session_id && e.session_id !== sessionKey) return false
  const min = int(f.risk_min)
  const max = int(f.risk_max)
  if ((min !== undefined || max !== undefined) && e.risk_score === null) return false
  if (min !== undefined && e.risk_score! < min) return false
  if (max !== undefined && e.risk_score! > max) return false
  const { since, until } = bounds(f, now)
  const t = Date.parse(e.timestamp)
  if (since && t < Date.parse(since)) return false
  if (until && t >= Date.parse(until)) return false
  if (f.q) {
    const q = f.q.toLowerCase()
    if (!(e.tool_name ?? '').toLowerCase().includes(q) && !(e.action ?? '').toLowerCase().includes(q)) return false
  }
  return true
}

/** The note a responder needs when the API narrows the search to the last day by itself. */
export function windowNote(f: Filters): string | null {
  if (f.session_id || f.window || f.since || f.until) return null
  if (!WIDE.some((k) => f[k] !== undefined)) return null
  return `These filters search the last 24 hours unless you choose a time window (at most 30 days${f.q ? ', 7 with a search' : ''}).`
}

const LABELS: Record<FilterKey, string> = {
  q: 'search',
  machine_id: 'machine',
  agent_id: 'agent',
  session_id: 'session',
  tool_name: 'tool',
  action_type: 'action type',
  decision: 'decision',
  platform: 'platform',
  blocked: 'blocked',
  redacted: 'redacted',
  risk_min: 'risk at least',
  risk_max: 'risk at most',
  window: 'window',
  since: 'from',
  until: 'before',
}

// Local time in a datetime-local input, ISO (UTC) in the URL and the API.
const toLocalInput = (iso: string | undefined) => {
  if (!iso || Number.isNaN(Date.parse(iso))) return ''
  const d = new Date(iso)
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16)
}
const fromLocalInput = (v: string) => (v ? new Date(v).toISOString() : undefined)

const ACTION_TYPES = ['tools/call', 'PROCESS_EXEC', 'FILE_READ', 'FILE_WRITE', 'FILE_DELETE', 'NETWORK_CONNECT', 'http']
const DECISIONS = ['allow', 'block', 'deny', 'ask']
const RISKS: [string, string][] = [
  ['', 'Any risk'],
  ['11', 'Low or above (11+)'],
  ['31', 'Medium or above (31+)'],
  ['61', 'High or above (61+)'],
  ['81', 'Critical (81+)'],
]

export interface FilterFormProps {
  filters: Filters
  machines: readonly { id: string; hostname: string | null }[]
  onApply(next: Filters): void
}

/**
 * Text fields apply on Enter or "Apply" (not per keystroke: each change is a request); the
 * selects apply at once. Keyed by the filters, so the fields follow the URL (back button, chips).
 */
export function FilterForm({ filters, machines, onApply }: FilterFormProps) {
  const [custom, setCustom] = useState(Boolean(filters.since || filters.until))
  const submit = (form: HTMLFormElement) => {
    const data = new FormData(form)
    const next: Filters = {}
    for (const k of FILTER_KEYS) {
      const v = data.get(k)
      if (typeof v === 'string' && v.trim()) next[k] = v.trim()
    }
    const win = data.get('window_choice') as string
    if (win === 'custom') {
      next.since = fromLocalInput((data.get('since_local') as string) ?? '')
      next.until = fromLocalInput((data.get('until_local') as string) ?? '')
    } else if (win) next.window = win
    // Filters the form has no field for (a pasted link's risk_max) are kept until removed.
    next.risk_max = filters.risk_max
    onApply(next)
  }
  const applyNow = (e: Event) => (e.currentTarget as HTMLElement).closest('form')!.requestSubmit()
  const machineKnown = !filters.machine_id || machines.some((m) => m.id === filters.machine_id)
  return (
    <form
      class="filters"
      aria-label="Filter events"
      onSubmit={(e) => {
        e.preventDefault()
        submit(e.currentTarget)
      }}
    >
      <div class="ev-field">
        <label for="ev-f-q">Search tool or action</label>
        <input id="ev-f-q" name="q" type="search" defaultValue={filters.q ?? ''} maxLength={100} placeholder="e.g. Bash" />
      </div>
      <div class="ev-field">
        <label for="ev-f-machine_id">Machine</label>
        <select id="ev-f-machine_id" name="machine_id" defaultValue={filters.machine_id ?? ''} onChange={applyNow}>
          <option value="">Any machine</option>
          {!machineKnown && <option value={filters.machine_id}>{filters.machine_id}</option>}
          {[...machines]
            .sort((a, b) => (a.hostname ?? a.id).localeCompare(b.hostname ?? b.id))
            .map((m) => (
              <option key={m.id} value={m.id}>
                {m.hostname ?? m.id}
              </option>
            ))}
        </select>
      </div>
      <div class="ev-field">
        <label for="ev-f-agent_id">Agent</label>
        <input id="ev-f-agent_id" name="agent_id" defaultValue={filters.agent_id ?? ''} placeholder="agent key" />
      </div>
      <div class="ev-field">
        <label for="ev-f-session_id">Session</label>
        <input id="ev-f-session_id" name="session_id" defaultValue={filters.session_id ?? ''} placeholder="session key or id" />
      </div>
      <div class="ev-field">
        <label for="ev-f-tool_name">Tool</label>
        <input id="ev-f-tool_name" name="tool_name" defaultValue={filters.tool_name ?? ''} placeholder="exact, e.g. Bash" />
      </div>
      <div class="ev-field">
        <label for="ev-f-action_type">Action type</label>
        <input id="ev-f-action_type" name="action_type" list="events-action-types" defaultValue={filters.action_type ?? ''} />
      </div>
      <div class="ev-field">
        <label for="ev-f-decision">Decision</label>
        <input id="ev-f-decision" name="decision" list="events-decisions" defaultValue={filters.decision ?? ''} />
      </div>
      <div class="ev-field">
        <label for="ev-f-platform">Platform</label>
        <input id="ev-f-platform" name="platform" defaultValue={filters.platform ?? ''} placeholder="e.g. claude-code" />
      </div>
      <div class="ev-field">
        <label for="ev-f-risk_min">Risk</label>
        <select id="ev-f-risk_min" name="risk_min" defaultValue={filters.risk_min ?? ''} onChange={applyNow}>
          {!RISKS.some(([v]) => v === (filters.risk_min ?? '')) && <option value={filters.risk_min}>{filters.risk_min}+</option>}
          {RISKS.map(([v, l]) => (
            <option key={v} value={v}>
              {l}
            </option>
          ))}
        </select>
      </div>
      <div class="ev-field">
        <label for="ev-f-blocked">Blocked</label>
        <select id="ev-f-blocked" name="blocked" defaultValue={filters.blocked ?? ''} onChange={applyNow}>
          <option value="">Blocked or not</option>
          <option value="true">Blocked only</option>
          <option value="false">Not blocked</option>
        </select>
      </div>
      <div class="ev-field">
        <label for="ev-f-redacted">Secrets</label>
        <select id="ev-f-redacted" name="redacted" defaultValue={filters.redacted ?? ''} onChange={applyNow}>
          <option value="">Any</option>
          <option value="true">A secret was redacted</option>
          <option value="false">No secret redacted</option>
        </select>
      </div>
      <div class="ev-field">
        <label for="ev-f-window">Time</label>
        <select
          id="ev-f-window"
          name="window_choice"
          defaultValue={custom ? 'custom' : (filters.window ?? '')}
          onChange={(e) => {
            const v = e.currentTarget.value
            setCustom(v === 'custom')
            if (v !== 'custom') applyNow(e)
          }}
        >
          <option value="">Any time</option>
          {Object.entries(WINDOWS).map(([k, w]) => (
            <option key={k} value={k}>
              {w.label}
            </option>
          ))}
          <option value="custom">Between…</option>
        </select>
      </div>
      {custom && (
        <>
          <div class="ev-field">
            <label for="ev-f-since_local">From (local time)</label>
            <input id="ev-f-since_local" name="since_local" type="datetime-local" defaultValue={toLocalInput(filters.since)} />
          </div>
          <div class="ev-field">
            <label for="ev-f-until_local">Before (local time)</label>
            <input id="ev-f-until_local" name="until_local" type="datetime-local" defaultValue={toLocalInput(filters.until)} />
          </div>
        </>
      )}
      <datalist id="events-action-types">
        {ACTION_TYPES.map((a) => (
          <option key={a} value={a} />
        ))}
      </datalist>
      <datalist id="events-decisions">
        {DECISIONS.map((d) => (
          <option key={d} value={d} />
        ))}
      </datalist>
      <div class="filter-buttons">
        <button type="submit" class="primary">
          Apply
        </button>
        <a href={href(['events'])}>Clear all</a>
      </div>
    </form>
  )
}

/** The filters in force, each a link that removes it. */
export function ActiveFilters({ filters, hostname }: { filters: Filters; hostname(id: string): string | null }) {
  const keys = FILTER_KEYS.filter((k) => filters[k] !== undefined)
  if (keys.length === 0) return null
  const shown = (k: FilterKey, v: string) =>
    k === 'machine_id'
      ? (hostname(v) ?? v)
      : k === 'window'
        ? (WINDOWS[v]?.label.toLowerCase() ?? v)
        : k === 'since' || k === 'until'
          ? new Date(v).toLocaleString()
          : v
  return (
    <ul class="chips" aria-label="Filters in force">
      {keys.map((k) => (
        <li key={k}>
          <a
            href={href(['events'], { ...filters, [k]: undefined })}
            aria-label={`Remove filter ${LABELS[k]} ${shown(k, filters[k]!)}`}
          >
            {LABELS[k]}: <strong>{shown(k, filters[k]!)}</strong> <span aria-hidden="true">×</span>
          </a>
        </li>
      ))}
    </ul>
  )
}
