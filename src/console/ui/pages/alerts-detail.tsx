/**
 * @module console/ui/pages/alerts-detail
 * One alert, opened (`GET /v1/alerts/{id}`): what matched, on which machine and agent, the
 * triggering event's arguments and the session's events that led up to it; and what a
 * responder does next: triage it, investigate the session at that event, write a policy from
 * it, or block the agent everywhere.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import { api, type Ok } from '../api/client.ts'
import { Badge, ErrorNote, Loading } from '../components/common.tsx'
import { ago, riskBand, when } from '../format.ts'
import { useLoad } from '../hooks.ts'
import { href } from '../router.ts'
import { can, useIdentity } from '../session.ts'
import { BlockAgent } from './alerts-block.tsx'
import type { AlertStatus, AlertView } from './alerts-queue.ts'

type Detail = Ok<'/v1/alerts/{id}', 'get'>
type EventView = Detail['preceding_events'][number]

const TRIAGE: { to: AlertStatus; label: string; done: string; from: AlertStatus[] }[] = [
  { to: 'acknowledged', label: 'Acknowledge', done: 'acknowledged', from: ['open'] },
  { to: 'resolved', label: 'Resolve', done: 'resolved', from: ['open', 'acknowledged'] },
  { to: 'dismissed', label: 'Dismiss', done: 'dismissed', from: ['open', 'acknowledged'] },
  { to: 'open', label: 'Reopen', done: 'reopened', from: ['acknowledged', 'resolved', 'dismissed'] },
]

/** The time of day: the story's events are minutes apart; the full date is in the title. */
const clock = (iso: string) =>
  new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })

const str = (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? String(v) : null)

/** One line for an event: its command, path or URL when it has one. */
function gist(e: EventView): string {
  const a = e.arguments
  if (a && typeof a === 'object' && !Array.isArray(a)) {
    const o = a as Record<string, unknown>
    const hit = ['command', 'cmd', 'file_path', 'path', 'url', 'pattern', 'query'].map((k) => str(o[k])).find(Boolean)
    if (hit) return hit
  }
  if (Array.isArray(a)) return a.map(String).join(' ')
  return e.action ?? ''
}

export function AlertDetail(p: {
  id: string
  live: AlertView | undefined
  next: AlertView | null
  nextHref: (a: AlertView) => string
  onChanged(a: AlertView): void
}) {
  const identity = useIdentity()
  const triage = can(identity, 'triage')
  const manage = can(identity, 'manage')
  const loaded = useLoad((signal) => api.get('/v1/alerts/{id}', { path: { id: p.id }, query: { preceding: 20 }, signal }), [p.id])
  const [notice, setNotice] = useState<string | null>(null)
  const [failure, setFailure] = useState<Error | null>(null)
  const [busy, setBusy] = useState(false)
  const noticeRef = useRef<HTMLDivElement>(null)
  const heading = useRef<HTMLHeadingElement>(null)
  useEffect(() => {
    setNotice(null)
    setFailure(null)
  }, [p.id])
  useEffect(() => {
    if (notice) noticeRef.current?.focus()
  }, [notice])
  // Opening an alert (from the queue, or a pasted link) takes the reader to it, once per alert.
  const loadedId = loaded.data?.id
  useEffect(() => {
    if (loadedId === p.id) heading.current?.focus()
  }, [loadedId])

  // A status change made elsewhere (another responder) arrives live and wins over what was loaded.
  const a = loaded.data && p.live && p.live.updated_at >= loaded.data.updated_at ? { ...loaded.data, ...p.live } : loaded.data

  const setStatus = async (t: (typeof TRIAGE)[number]) => {
    setBusy(true)
    setFailure(null)
    try {
      const updated = await api.patch('/v1/alerts/{id}', { path: { id: p.id }, body: { status: t.to } })
      p.onChanged(updated)
      setNotice(`Alert ${t.done}.`)
      loaded.reload()
    } catch (err) {
      setFailure(err as Error)
    } finally {
      setBusy(false)
    }
  }

  if (!a) {
    return (
      <article class="card alert-detail" aria-label="Alert">
        <ErrorNote error={loaded.error} retry={loaded.reload} />
        {!loaded.error && <Loading />}
      </article>
    )
  }
  const ctx = a.context
  const sessionId = a.session?.id ?? a.session_key
  const at = a.action_id ?? a.event?.id ?? undefined
  return (
    <article class="card alert-detail" aria-labelledby="alert-title">
      <header class="alert-head">
        <Badge kind={a.severity}>{a.severity}</Badge> <Badge kind={`status-${a.status}`}>{a.status}</Badge>
        <h2 id="alert-title" tabIndex={-1} ref={heading}>
          {a.title}
        </h2>
      </header>
      {notice && (
        <div class="notice" role="status" tabIndex={-1} ref={noticeRef}>
          {notice}{' '}
          {p.next ? (
            <a href={p.nextHref(p.next)}>Next in the queue: {p.next.title}</a>
          ) : (
            <span>The queue has nothing else in this view.</span>
          )}
        </div>
      )}
      <ErrorNote error={failure} />
      {triage && (
        <div class="row alert-actions" role="group" aria-label="Triage">
          {TRIAGE.filter((t) => t.from.includes(a.status)).map((t) => (
            <button
              key={t.to}
              type="button"
              class={t.to === 'acknowledged' ? 'primary' : ''}
              disabled={busy}
              onClick={() => void setStatus(t)}
            >
              {t.label}
            </button>
          ))}
        </div>
      )}
      <div class="row alert-actions" role="group" aria-label="Respond">
        {sessionId && (
          <a class="button" href={href(['sessions', sessionId], { at })}>
            Investigate
          </a>
        )}
        {manage && (
          <a class="button" href={href(['policies', 'new'], { from_alert: a.id })}>
            Create policy
          </a>
        )}
        {manage && a.agent_key && <BlockAgent agent={a.agent_key} alertId={a.id} />}
      </div>
      <dl class="facts">
        <dt>Rule</dt>
        <dd>
          <code>{a.rule_key}</code>
        </dd>
        <dt>Matched</dt>
        <dd>{str(ctx.detail) ? <code class="matched">{str(ctx.detail)}</code> : '—'}</dd>
        <dt>Machine</dt>
        <dd>
          {a.machine ? (
            <a href={href(['fleet', a.machine.id])}>{a.machine.hostname ?? a.machine.id}</a>
          ) : (
            'none (sent without a machine credential)'
          )}
        </dd>
        <dt>Agent</dt>
        <dd>{a.agent_key ? <a href={href(['alerts'], { agent: a.agent_key })}>{a.agent_key}</a> : '—'}</dd>
        <dt>Tool</dt>
        <dd>
          <code>{str(ctx.tool_name) ?? str(ctx.action) ?? '—'}</code>{' '}
          {str(ctx.platform) ? <small>on {str(ctx.platform)}</small> : null}
        </dd>
        <dt>Decision</dt>
        <dd>
          {str(ctx.decision) ?? '—'}
          {ctx.blocked === true ? ' (blocked)' : ''}, risk {str(ctx.risk_score) ?? 'not scored'}
        </dd>
        <dt>Raised</dt>
        <dd>
          {when(a.created_at)} ({ago(a.created_at)})
        </dd>
        <dt>Session</dt>
        <dd>{a.session_key ? <code>{a.session_key}</code> : 'none'}</dd>
      </dl>
      <section aria-labelledby="alert-args">
        <h3 id="alert-args">Arguments of the triggering event</h3>
        {a.event ? (
          <pre>{JSON.stringify(a.event.arguments, null, 2)}</pre>
        ) : (
          <p class="hint">The event is not stored yet (alerts are raised beside the pipeline) or was removed by retention.</p>
        )}
      </section>
      <Preceding events={a.preceding_events} trigger={a.event?.id ?? a.action_id} />
    </article>
  )
}

function Preceding({ events, trigger }: { events: EventView[]; trigger: string | null }) {
  return (
    <section aria-labelledby="alert-story">
      <h3 id="alert-story">What led up to it</h3>
      {events.length === 0 ? (
        <p class="hint">No earlier event of this session is stored.</p>
      ) : (
        <ol class="story">
          {events.map((e) => (
            <li key={e.id} class={e.id === trigger ? 'trigger' : ''} aria-current={e.id === trigger ? 'true' : undefined}>
              <time class="story-time" dateTime={e.timestamp} title={when(e.timestamp)}>
                {clock(e.timestamp)}
              </time>
              <code class="story-tool">{e.tool_name ?? e.action ?? e.action_type ?? 'event'}</code>
              <span class="story-gist" title={gist(e)}>
                {gist(e)}
              </span>
              <span>
                {e.decision ? <Badge kind={e.decision}>{e.decision}</Badge> : null}{' '}
                {e.risk_score !== null ? <Badge kind={riskBand(e.risk_score)}>risk {e.risk_score}</Badge> : null}
              </span>
              {e.id === trigger && <strong class="story-mark">this alert</strong>}
            </li>
          ))}
        </ol>
      )}
    </section>
  )
}
