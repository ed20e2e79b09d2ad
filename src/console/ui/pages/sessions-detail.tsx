/**
 * @module console/ui/pages/sessions-detail
 * One session: its facts, where it sits in the delegation tree (the sessions above it, the
 * sub-agents below it, `GET /v1/sessions/{id}/tree`), and its timeline with each tool call's
 * causal chain beneath it (./sessions-timeline.tsx).
 */
import { Fragment, type ComponentChildren } from 'preact'
import { useRef, useState } from 'preact/hooks'
import { api, ApiError, type Ok, type Schema } from '../api/client.ts'
import { Badge, Empty, ErrorNote, Loading, PageHeader } from '../components/common.tsx'
import { ago, count } from '../format.ts'
import { useLive, useLoad } from '../hooks.ts'
import { href } from '../router.ts'
import { fullTime, MachineLink, type EventView } from './events-parts.tsx'
import { Timeline } from './sessions-timeline.tsx'

export type SessionView = Ok<'/v1/sessions', 'get'>['sessions'][number]
type TreeNode = Schema<'SessionTreeNode'>
const MAX_NODES = 500

export interface SessionDetailProps {
  id: string
  at: string | null
  hostname(id: string | null): string | null
}

export function SessionDetail({ id, at, hostname }: SessionDetailProps) {
  const [generation, setGeneration] = useState(0)
  const loaded = useLoad(
    async (signal) => {
      const [session, tree] = await Promise.all([
        api.get('/v1/sessions/{id}', { path: { id }, signal }),
        api.get('/v1/sessions/{id}/tree', { path: { id }, query: { max_nodes: MAX_NODES }, signal }),
      ])
      return { session, tree }
    },
    [id, generation],
  )
  // New events of this session or its sub-agents: offered, not applied, so the view a responder
  // is reading (and `?at=`) does not move under them.
  const [fresh, setFresh] = useState(0)
  const family = useRef<Set<string>>(new Set())
  const live = useLive('events', (type, data) => {
    if (type === 'event' && family.current.has((data as EventView | null)?.session_id ?? '')) setFresh((n) => n + 1)
  })
  const d = loaded.data
  if (d) family.current = new Set(keysOf(d.tree.root))
  const s = d?.session

  if (loaded.error instanceof ApiError && loaded.error.status === 404) {
    return (
      <div class="sessions-page">
        <PageHeader title="Session" />
        <Empty title="No such session">
          <p>
            No session <code>{id}</code> in this organization: it may have passed the retention period. Find it among{' '}
            <a href={href(['sessions'])}>all sessions</a>, or search the <a href={href(['events'], { session_id: id })}>events</a>{' '}
            by its key.
          </p>
        </Empty>
      </div>
    )
  }
  return (
    <div class="sessions-page">
      <p class="events-back">
        <a href={href(['sessions'])}>← All sessions</a>
      </p>
      <PageHeader title={s ? `Session ${s.session_name ?? s.session_key}` : 'Session'} live={live}>
        {fresh > 0 && (
          <button
            type="button"
            onClick={() => {
              setFresh(0)
              setGeneration((g) => g + 1)
            }}
          >
            {count(fresh)} new event{fresh === 1 ? '' : 's'}: refresh
          </button>
        )}
      </PageHeader>
      <ErrorNote error={loaded.error} retry={loaded.reload} />
      {!d || !s ? (
        !loaded.error && <Loading />
      ) : (
        <>
          {d.tree.ancestors.length > 0 && <Path ancestors={d.tree.ancestors} self={s} />}
          <div class="session-top">
            <section class="card" aria-labelledby="session-facts">
              <h2 id="session-facts">Facts</h2>
              <Facts s={s} hostname={hostname} />
            </section>
            <section class="card" aria-labelledby="session-tree">
              <h2 id="session-tree">
                Delegation tree{' '}
                <small>
                  {count(d.tree.node_count)} session{d.tree.node_count === 1 ? '' : 's'}
                </small>
              </h2>
              {d.tree.root.children.length === 0 && <p class="hint">No sub-agents were delegated from this session.</p>}
              <ul class="stree stree-root">
                <TreeItem n={d.tree.root} current={s.id} />
              </ul>
              {d.tree.truncated && (
                <p class="hint">
                  Only the first {count(MAX_NODES)} sessions of the tree are shown; open a sub-agent to see the sessions below it.
                </p>
              )}
              {s.children_truncated && <p class="hint">This session has {count(s.children_count)} direct sub-agents.</p>}
            </section>
          </div>
          <Timeline key={`${s.id}:${generation}`} id={s.id} sessionKey={s.session_key} at={at} />
        </>
      )}
    </div>
  )
}

export function StateBadge({ state }: { state: SessionView['state'] }) {
  return <Badge kind={state === 'active' ? 'ok' : 'muted'}>{state}</Badge>
}

function keysOf(n: TreeNode): string[] {
  return [n.session_key, ...n.children.flatMap(keysOf)]
}

/** The sessions above this one, top-level first: the way back up the delegation. */
function Path({ ancestors, self }: { ancestors: readonly SessionView[]; self: SessionView }) {
  return (
    <nav class="session-path" aria-label="Delegated from">
      <ol>
        {ancestors.map((a) => (
          <li key={a.id}>
            <a href={href(['sessions', a.id])}>{a.session_name ?? a.session_key}</a>
          </li>
        ))}
        <li>
          <span aria-current="page">{self.session_name ?? self.session_key}</span>
        </li>
      </ol>
    </nav>
  )
}

function TreeItem({ n, current }: { n: TreeNode; current: string }) {
  const here = n.id === current
  return (
    <li>
      <div class={`stree-node${here ? ' stree-current' : ''}`}>
        {here ? (
          <strong aria-current="page">{n.session_name ?? n.session_key}</strong>
        ) : (
          <a href={href(['sessions', n.id])}>{n.session_name ?? n.session_key}</a>
        )}
        {n.depth > 0 && <span class="hint">sub-agent</span>}
        <StateBadge state={n.state} />
        <span class="hint">
          {count(n.risk_summary.total_events)} events · started {ago(n.started_at)}
        </span>
        {n.blocked_count > 0 && <Badge kind="block">{count(n.blocked_count)} blocked</Badge>}
        {n.risk_summary.max_risk !== null && n.risk_summary.max_risk > 60 && (
          <Badge kind={n.risk_summary.max_risk > 80 ? 'critical' : 'high'}>max risk {n.risk_summary.max_risk}</Badge>
        )}
      </div>
      {n.children.length > 0 && (
        <ul class="stree">
          {n.children.map((c) => (
            <TreeItem key={c.id} n={c} current={current} />
          ))}
        </ul>
      )}
    </li>
  )
}

function Facts({ s, hostname }: { s: SessionView; hostname(id: string | null): string | null }) {
  const rows: [string, ComponentChildren][] = [
    ['Session key', <code>{s.session_key}</code>],
    ['Name', s.session_name ?? '—'],
    ['State', <StateBadge state={s.state} />],
    ['Agent', s.agent_id ? <a href={href(['events'], { agent_id: s.agent_id })}>{s.agent_id}</a> : '—'],
    ['Machine', <MachineLink id={s.machine_id} hostname={hostname(s.machine_id)} />],
    ['Platform', s.platform ?? '—'],
    ['Model', s.model ?? '—'],
    ['Started', <time dateTime={s.started_at}>{fullTime(s.started_at)}</time>],
    ['Ended', s.ended_at ? fullTime(s.ended_at) : s.state === 'ended' ? '—' : 'still open'],
    ['Last event', s.last_event_at ? `${fullTime(s.last_event_at)} (${ago(s.last_event_at)})` : '—'],
    [
      'Events',
      <>
        {count(s.risk_summary.total_events)} · <a href={href(['events'], { session_id: s.session_key })}>list them</a>
      </>,
    ],
    ['Blocked', s.blocked_count > 0 ? <Badge kind="block">{count(s.blocked_count)}</Badge> : '0'],
    [
      'Risk',
      s.risk_summary.max_risk === null ? 'unscored' : `max ${s.risk_summary.max_risk}, average ${s.risk_summary.avg_risk ?? '—'}`,
    ],
    ['Signing id', s.signing_id ? <code>{s.signing_id}</code> : '—'],
    ['Id', <code>{s.id}</code>],
  ]
  return (
    <dl class="facts">
      {rows.map(([term, value]) => (
        <Fragment key={term}>
          <dt>{term}</dt>
          <dd>{value}</dd>
        </Fragment>
      ))}
    </dl>
  )
}
