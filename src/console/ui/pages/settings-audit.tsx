/**
 * @module console/ui/pages/settings-audit
 * The audit log (`GET /v1/audit-log`, docs/audit-log.md): every administrative change, newest
 * first, with who, what, on which thing and what changed. Filters live in the address, so an
 * investigation is a link; pages follow the API's cursor.
 */
import { useEffect, useState } from 'preact/hooks'
import { api, type Ok, type Query } from '../api/client.ts'
import { Empty, Loading } from '../components/common.tsx'
import { ago, short, when } from '../format.ts'
import { href, navigate } from '../router.ts'
import type { PageProps } from '../session.ts'
import { MoreButton, Problem, usePaged, valueOf } from './settings-ui.tsx'

type Entry = Ok<'/v1/audit-log', 'get'>['entries'][number]
const FIELDS = ['action', 'actor_id', 'target_type', 'target_id', 'since', 'until'] as const
type Field = (typeof FIELDS)[number]
type Filters = Partial<Record<Field, string>>

const LABELS: Record<Field, string> = {
  action: 'Action (member.* for a kind)',
  actor_id: 'Actor id',
  target_type: 'Target type',
  target_id: 'Target id',
  since: 'Since',
  until: 'Until',
}

/** A `datetime-local` value is the browser's local time; the API wants an instant. */
const instant = (local: string | undefined) => {
  if (!local) return undefined
  const d = new Date(local)
  // Not a date: sent as typed, and the API's 400 names the parameter.
  return Number.isNaN(d.getTime()) ? local : d.toISOString()
}

export function AuditTab({ route }: PageProps) {
  const filters: Filters = {}
  for (const f of FIELDS) {
    const v = route.query.get(f)
    if (v) filters[f] = v
  }
  const key = JSON.stringify(filters)
  const entries = usePaged<Entry>(
    async (cursor, signal) => {
      const query: Query<'/v1/audit-log', 'get'> = {
        ...filters,
        since: instant(filters.since),
        until: instant(filters.until),
        limit: 100,
        cursor,
      }
      const page = await api.get('/v1/audit-log', { query, signal })
      return { items: page.entries, next: page.next_cursor }
    },
    [key],
  )
  const filtered = Object.keys(filters).length > 0
  return (
    <div class="stack">
      <p class="lede">
        Every administrative change: members, tokens, machines disabled or enabled, rules, webhooks, settings. Entries are never
        changed or deleted, and retention does not remove them.
      </p>
      <AuditFilters filters={filters} />
      <Problem error={entries.error} retry={entries.reload} />
      {!entries.ready ? (
        entries.error ? null : (
          <Loading />
        )
      ) : entries.items.length === 0 ? (
        <Empty title={filtered ? 'No entry matches these filters' : 'Nothing has been changed yet'}>
          <p>
            {filtered ? (
              <a href={href(['settings'], { tab: 'audit' })}>Clear the filters</a>
            ) : (
              'Invitations, tokens, webhooks and setting changes appear here as they are made.'
            )}
          </p>
        </Empty>
      ) : (
        <table class="plain settings-audit">
          <caption class="settings-caption">Audit log, newest first</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Action</th>
              <th scope="col">Actor</th>
              <th scope="col">Target</th>
              <th scope="col">From</th>
              <th scope="col">Details</th>
            </tr>
          </thead>
          <tbody>
            {entries.items.map((e) => (
              <AuditRow key={e.id} e={e} />
            ))}
          </tbody>
        </table>
      )}
      <MoreButton paged={entries} what="entries" />
    </div>
  )
}

function AuditRow({ e }: { e: Entry }) {
  const filterBy = (f: Field, v: string | null) => (v ? href(['settings'], { tab: 'audit', [f]: v }) : undefined)
  return (
    <tr>
      <td title={when(e.occurred_at)}>
        {when(e.occurred_at)}
        <div class="hint">{ago(e.occurred_at)}</div>
      </td>
      <td>
        <a href={filterBy('action', e.action)} aria-label={`Only ${e.action} entries`}>
          <code>{e.action}</code>
        </a>
      </td>
      <td>
        {e.actor_type}{' '}
        {e.actor_id && (
          <a href={filterBy('actor_id', e.actor_id)} title={e.actor_id} aria-label={`Only entries by ${short(e.actor_id)}`}>
            {short(e.actor_id)}
          </a>
        )}
      </td>
      <td>
        {e.target_type ?? '—'}{' '}
        {e.target_id && (
          <a
            href={filterBy('target_id', e.target_id)}
            title={e.target_id}
            aria-label={`Only entries about ${short(e.target_id)}`}
          >
            {short(e.target_id)}
          </a>
        )}
      </td>
      <td>
        <span title={e.user_agent ?? undefined}>{e.source_ip ?? '—'}</span>
      </td>
      <td>
        <details>
          <summary>What changed</summary>
          <pre class="settings-json">{JSON.stringify(e.details, null, 2)}</pre>
          {e.user_agent && <p class="hint">User agent: {e.user_agent}</p>}
          {e.request_id && <p class="hint">Request {e.request_id}</p>}
        </details>
      </td>
    </tr>
  )
}

function AuditFilters({ filters }: { filters: Filters }) {
  const [draft, setDraft] = useState<Filters>(filters)
  const key = JSON.stringify(filters)
  useEffect(() => setDraft(filters), [key])
  return (
    <form
      class="filters"
      aria-label="Filter the audit log"
      onSubmit={(e) => {
        e.preventDefault()
        const clean: Record<string, string | undefined> = { tab: 'audit' }
        for (const f of FIELDS) clean[f] = draft[f]?.trim() || undefined
        navigate(href(['settings'], clean))
      }}
    >
      {FIELDS.map((f) => (
        <label key={f}>
          {LABELS[f]}
          {f === 'since' || f === 'until' ? (
            <input type="datetime-local" value={draft[f] ?? ''} onInput={(e) => setDraft({ ...draft, [f]: valueOf(e) })} />
          ) : (
            <input type="text" value={draft[f] ?? ''} onInput={(e) => setDraft({ ...draft, [f]: valueOf(e) })} />
          )}
        </label>
      ))}
      <button type="submit">Apply</button>
      {Object.keys(filters).length > 0 && <a href={href(['settings'], { tab: 'audit' })}>Clear filters</a>}
    </form>
  )
}
