/**
 * @module console/ui/pages/events
 * Events (issue 12): every event of the org, newest first, filtered by what `GET /v1/events`
 * filters on (kept in the hash: a pasted link reproduces the view), followed live, with one
 * event's detail and causal chain beside the list (`?event=<id>`, so the list keeps its rows and
 * scroll) or on its own (`#/events/<id>`, for links from other pages).
 */
import { useMemo } from 'preact/hooks'
import { api } from '../api/client.ts'
import { Empty, ErrorNote, Loading, PageHeader } from '../components/common.tsx'
import { VirtualTable, type Column } from '../components/virtual-table.tsx'
import { ago, count } from '../format.ts'
import { useLive, useLoad } from '../hooks.ts'
import { href, navigate } from '../router.ts'
import type { PageProps } from '../session.ts'
import { EventDetail } from './events-detail.tsx'
import { MAX_ROWS, useEventFeed } from './events-feed.ts'
import { ActiveFilters, FilterForm, filtersOf, liveAllowed, windowNote } from './events-filters.tsx'
import { actionTitle, argSummary, DecisionBadge, RiskBadge, stamp, useMachines, type EventView } from './events-parts.tsx'
import './events.css'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const ROW_HEIGHT = 34

export function Events({ route }: PageProps) {
  const { hostname, machines } = useMachines()
  if (route.parts[1]) {
    const id = route.parts[1]
    return (
      <div class="events-page">
        <p class="events-back">
          <a href={href(['events'])}>← All events</a>
        </p>
        <EventDetail id={id} link={(to) => href(['events', to])} hostname={hostname} />
      </div>
    )
  }
  return <EventList query={route.query} hostname={hostname} machines={machines} />
}

interface ListProps {
  query: URLSearchParams
  hostname(id: string | null): string | null
  machines: readonly { id: string; hostname: string | null }[]
}

function EventList({ query, hostname, machines }: ListProps) {
  const filters = useMemo(() => filtersOf(query), [query.toString()])
  const key = JSON.stringify(filters)
  const selected = query.get('event')
  const live = liveAllowed(filters)
  // A session filter given as a UUID: live events carry the session's key, so look it up once.
  const session = useLoad(
    async (signal) =>
      filters.session_id && UUID.test(filters.session_id)
        ? (await api.get('/v1/sessions/{id}', { path: { id: filters.session_id }, signal })).session_key
        : null,
    [filters.session_id],
  )
  const f = useEventFeed(filters, key, live, session.data ?? null)
  const state = useLive('events', f.onLive)

  const detailOf = (id: string) => href(['events'], { ...filters, event: id })
  const columns = useMemo<Column<EventView>[]>(
    () => [
      {
        key: 'time',
        label: 'Time',
        width: '9.5rem',
        cell: (e) => (
          <a href={detailOf(e.id)} title={`${e.timestamp} (${ago(e.timestamp)}): open this event`}>
            {stamp(e.timestamp)}
          </a>
        ),
      },
      {
        key: 'machine',
        label: 'Machine',
        width: 'minmax(6rem, 1fr)',
        cell: (e) => (
          <span title={e.machine_id ?? 'no machine'}>
            {e.machine_id ? (hostname(e.machine_id) ?? e.machine_id.slice(0, 8)) : '—'}
          </span>
        ),
      },
      {
        key: 'agent',
        label: 'Agent',
        width: 'minmax(6rem, 1fr)',
        cell: (e) => <span title={e.agent_id ?? ''}>{e.agent_id ?? '—'}</span>,
      },
      {
        key: 'tool',
        label: 'Tool',
        width: 'minmax(6rem, 1fr)',
        cell: (e) => <span title={e.action_type ?? ''}>{actionTitle(e)}</span>,
      },
      {
        key: 'args',
        label: 'Arguments',
        width: 'minmax(10rem, 3fr)',
        cell: (e) => {
          const s = argSummary(e.arguments)
          return s ? <code title={s}>{s}</code> : <span class="hint">—</span>
        },
      },
      {
        key: 'decision',
        label: 'Decision',
        width: '6rem',
        cell: (e) => <DecisionBadge decision={e.decision} blocked={e.blocked} />,
      },
      { key: 'risk', label: 'Risk', width: '7.5rem', cell: (e) => <RiskBadge score={e.risk_score} band={e.risk_band} /> },
    ],
    // The cells read the filters (links keep them) and the machine names.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [key, hostname],
  )

  const { feed } = f
  const active = Object.keys(filters).length > 0
  const note = windowNote(filters)
  return (
    <div class="events-page">
      <PageHeader title="Events" live={state}>
        {live ? (
          <button type="button" aria-pressed={f.paused} onClick={() => f.setPaused(!f.paused)}>
            {f.paused ? `Resume live${feed.held ? ` (${count(feed.held)} new)` : ''}` : 'Pause live'}
          </button>
        ) : (
          <span class="hint">Live updates off: the time window has ended.</span>
        )}
      </PageHeader>
      <FilterForm key={key} filters={filters} machines={machines} onApply={(next) => navigate(href(['events'], next))} />
      <ActiveFilters filters={filters} hostname={hostname} />
      {note && <p class="hint">{note}</p>}
      <ErrorNote error={feed.error} retry={f.reload} />
      <div class={`events-split${selected ? ' with-detail' : ''}`}>
        <div class="events-list">
          <p class="events-status" id="events-status">
            {feed.loading && feed.rows.length === 0
              ? 'Loading…'
              : `${count(feed.rows.length)} event${feed.rows.length === 1 ? '' : 's'} shown, newest first`}
            {f.paused && live && <strong> · Paused{feed.held ? `: ${count(feed.held)} new held` : ''}</strong>}
          </p>
          {feed.rows.length === 0 ? (
            feed.loading ? (
              <Loading />
            ) : feed.error ? null : (
              <NoEvents filtered={active} live={live} />
            )
          ) : (
            <VirtualTable
              label="Events, newest first"
              rows={feed.rows}
              columns={selected ? columns.filter((c) => c.key !== 'agent' && c.key !== 'machine') : columns}
              rowKey={(e) => e.id}
              rowHeight={ROW_HEIGHT}
              // As tall as the rows, up to what fits the screen under the filters.
              height={`min(calc(100vh - 20rem), ${feed.rows.length * ROW_HEIGHT + 2}px)`}
              onRowClick={(e) => navigate(detailOf(e.id))}
              rowClass={(e) =>
                `${feed.fresh.has(e.id) ? 'fresh' : ''}${e.id === selected ? ' selected' : ''}${e.blocked ? ' ev-blocked' : ''}`
              }
            />
          )}
          <div class="events-more">
            {feed.cursor ? (
              <button type="button" onClick={f.loadOlder} disabled={feed.loadingOlder || feed.refreshing}>
                {feed.loadingOlder ? 'Loading older…' : 'Load older'}
              </button>
            ) : feed.complete && feed.rows.length > 0 ? (
              <span class="hint">That is every event these filters match.</span>
            ) : null}
            {feed.dropped > 0 && (
              <p class="hint" role="note">
                The table keeps the newest {count(MAX_ROWS)} events; older ones are no longer shown ({count(feed.dropped)} dropped
                from view so far). To see them, choose a time window or narrow the filters.
              </p>
            )}
          </div>
        </div>
        {selected && (
          <aside
            class="events-aside"
            aria-label="Event details"
            onKeyDown={(e) => {
              // Escape closes the detail and returns to the row it was opened from, when it is in view.
              if (e.key !== 'Escape') return
              navigate(href(['events'], filters))
              document.querySelector<HTMLElement>(`.vtable a[href="${CSS.escape(detailOf(selected))}"]`)?.focus()
            }}
          >
            <EventDetail id={selected} link={detailOf} hostname={hostname} close={href(['events'], filters)} />
          </aside>
        )}
      </div>
    </div>
  )
}

function NoEvents({ filtered, live }: { filtered: boolean; live: boolean }) {
  if (filtered) {
    return (
      <Empty title="No events match these filters">
        <p>
          Widen the time window, remove a filter above, or <a href={href(['events'])}>clear all filters</a>.
          {live && ' Matching events will appear here as they arrive.'}
        </p>
      </Empty>
    )
  }
  return (
    <Empty title="No events yet">
      <p>
        Events appear here, live, as soon as a machine sends them. Install the Quint daemon on a developer machine with a deploy
        token from <a href={href(['settings'], { tab: 'tokens' })}>Settings → Tokens</a>, or send one yourself with{' '}
        <code>POST /v1/ingest</code> (see <a href="/docs">the API reference</a>).
      </p>
    </Empty>
  )
}
