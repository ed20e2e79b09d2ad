/**
 * @module console/ui/pages/fleet
 * The fleet (`#/fleet`): every machine running the daemon, newest registered first, with the
 * filters of `GET /v1/machines` kept in the address (a pasted link shows the same machines), each
 * machine's daemon version against the latest, whether it reports, its status and policy sync.
 * `#/fleet/<machine id>` is one machine (./fleet-detail.tsx).
 */
import { useEffect, useState } from 'preact/hooks'
import { api, type Query } from '../api/client.ts'
import { Empty, Loading, PageHeader } from '../components/common.tsx'
import { VirtualTable, type Column } from '../components/virtual-table.tsx'
import { ago, count, when } from '../format.ts'
import { href, navigate, type Route } from '../router.ts'
import { can, useIdentity, type PageProps } from '../session.ts'
import { MachinePage } from './fleet-detail.tsx'
import {
  InstallHelp,
  isBehind,
  PolicyBadge,
  SeenText,
  StatusBadge,
  useFleetLive,
  useLatestVersion,
  VersionText,
  type Machine,
} from './fleet-parts.tsx'
import { MoreButton, Problem, usePaged, valueOf } from './settings-ui.tsx'

const PAGE = 100
const FILTERS = ['status', 'online', 'os', 'hostname', 'tag'] as const
type Filter = (typeof FILTERS)[number]
type Filters = Partial<Record<Filter, string>>

export function Fleet({ route }: PageProps) {
  const id = route.parts[1]
  return id ? <MachinePage id={id} /> : <FleetList route={route} />
}

function filtersOf(route: Route): Filters {
  const f: Filters = {}
  for (const k of FILTERS) {
    const v = route.query.get(k)
    if (v) f[k] = v
  }
  return f
}

/** The URL's text as the API's query; a value the API does not accept is sent as is, and its 400 is shown. */
function queryOf(f: Filters): Query<'/v1/machines', 'get'> {
  return {
    status: f.status as Query<'/v1/machines', 'get'>['status'],
    online:
      f.online === undefined ? undefined : ((f.online === 'true' ? true : f.online === 'false' ? false : f.online) as boolean),
    os: f.os,
    hostname: f.hostname,
    tag: f.tag,
  }
}

function FleetList({ route }: { route: Route }) {
  const identity = useIdentity()
  const filters = filtersOf(route)
  const key = JSON.stringify(filters)
  const latest = useLatestVersion()
  const machines = usePaged<Machine>(
    async (cursor, signal) => {
      const page = await api.get('/v1/machines', { query: { ...queryOf(filters), limit: PAGE, cursor }, signal })
      return { items: page.machines, next: page.next_cursor }
    },
    [key],
  )

  const live = useFleetLive(machines.reload)

  const filtered = Object.keys(filters).length > 0
  const rows = machines.items
  const online = rows.filter((m) => m.online).length
  const behind = rows.filter((m) => isBehind(m.daemon_version, latest)).length
  return (
    <section aria-label="Fleet">
      <PageHeader title="Fleet" live={live} />
      <FilterForm filters={filters} />
      <Problem error={machines.error} retry={machines.reload} />
      {!machines.ready ? (
        machines.error ? null : (
          <Loading />
        )
      ) : rows.length === 0 ? (
        filtered ? (
          <Empty title="No machine matches these filters">
            <p>
              <a href={href(['fleet'])}>Clear the filters</a> to see the whole fleet.
            </p>
          </Empty>
        ) : (
          <InstallHelp canManage={can(identity, 'manage')} />
        )
      ) : (
        <>
          <p class="fleet-summary">
            {count(rows.length)}
            {machines.next ? '+' : ''} machines · {count(online)} online
            {latest ? ` · ${count(behind)} behind the latest daemon (${latest})` : ''}
          </p>
          <MachineTable rows={rows} latest={latest} />
          <div class="row fleet-more">
            <MoreButton paged={machines} what="machines" />
          </div>
        </>
      )}
    </section>
  )
}

function MachineTable({ rows, latest }: { rows: Machine[]; latest: string | null }) {
  const columns: Column<Machine>[] = [
    {
      key: 'host',
      label: 'Hostname',
      width: 'minmax(9rem, 1.5fr)',
      cell: (m) => <a href={href(['fleet', m.id])}>{m.hostname ?? m.client_machine_id}</a>,
    },
    { key: 'os', label: 'OS / arch', width: '8rem', cell: (m) => `${m.os ?? '?'} / ${m.arch ?? '?'}` },
    {
      key: 'version',
      label: 'Daemon',
      width: 'minmax(12rem, 1.2fr)',
      cell: (m) => <VersionText version={m.daemon_version} latest={latest} />,
    },
    { key: 'seen', label: 'Reporting', width: 'minmax(15rem, 1.5fr)', cell: (m) => <SeenText m={m} /> },
    {
      key: 'tags',
      label: 'Tags',
      width: 'minmax(5rem, 1fr)',
      cell: (m) => <span title={m.tags.join(', ')}>{m.tags.join(', ') || '—'}</span>,
    },
    { key: 'status', label: 'Status', width: '6rem', cell: (m) => <StatusBadge status={m.status} /> },
    { key: 'policy', label: 'Policy', width: '8rem', cell: (m) => <PolicyBadge m={m} /> },
    {
      key: 'registered',
      label: 'Registered',
      width: '8rem',
      cell: (m) => <span title={when(m.registered_at)}>{ago(m.registered_at)}</span>,
    },
  ]
  return (
    <VirtualTable
      label="Machines"
      rows={rows}
      columns={columns}
      rowKey={(m) => m.id}
      rowClass={(m) => (m.status === 'disabled' ? 'fleet-row-disabled' : '')}
      onRowClick={(m) => navigate(href(['fleet', m.id]))}
      height={`${Math.min(rows.length, 18) * 32 + 2}px`}
    />
  )
}

/** Selects apply at once; text filters on Enter or "Apply", so typing does not refetch per key. */
function FilterForm({ filters }: { filters: Filters }) {
  const [text, setText] = useState({ os: filters.os ?? '', hostname: filters.hostname ?? '', tag: filters.tag ?? '' })
  useEffect(
    () => setText({ os: filters.os ?? '', hostname: filters.hostname ?? '', tag: filters.tag ?? '' }),
    [filters.os, filters.hostname, filters.tag],
  )
  const go = (change: Filters) => navigate(href(['fleet'], { ...filters, ...change }))
  return (
    <form
      class="filters"
      aria-label="Filter machines"
      onSubmit={(e) => {
        e.preventDefault()
        go({ os: text.os.trim(), hostname: text.hostname.trim(), tag: text.tag.trim() })
      }}
    >
      <label>
        Status
        <select value={filters.status ?? ''} onChange={(e) => go({ status: valueOf(e) })}>
          <option value="">any</option>
          <option value="active">active</option>
          <option value="disabled">disabled</option>
        </select>
      </label>
      <label>
        Reporting
        <select value={filters.online ?? ''} onChange={(e) => go({ online: valueOf(e) })}>
          <option value="">any</option>
          <option value="true">online (seen in the last 2 min)</option>
          <option value="false">offline</option>
        </select>
      </label>
      <label>
        Hostname contains
        <input value={text.hostname} onInput={(e) => setText({ ...text, hostname: valueOf(e) })} />
      </label>
      <label>
        OS (exact)
        <input value={text.os} placeholder="darwin, linux…" onInput={(e) => setText({ ...text, os: valueOf(e) })} />
      </label>
      <label>
        Tag
        <input value={text.tag} onInput={(e) => setText({ ...text, tag: valueOf(e) })} />
      </label>
      <button type="submit">Apply</button>
      {Object.keys(filters).length > 0 && <a href={href(['fleet'])}>Clear filters</a>}
    </form>
  )
}
