/**
 * @module console/ui/pages/events-detail
 * One event, whole: every field, its arguments pretty-printed, and its causal chain from
 * `GET /v1/events/{id}/chain` (what led to it, root-most first, and what it caused), with links to
 * its session (at this event), its machine and its agent's other events.
 */
import type { ComponentChildren } from 'preact'
import { useEffect, useRef } from 'preact/hooks'
import { api, ApiError, type Ok } from '../api/client.ts'
import { Empty, ErrorNote, Loading } from '../components/common.tsx'
import { ago } from '../format.ts'
import { useLoad } from '../hooks.ts'
import { href } from '../router.ts'
import {
  actionTitle,
  ChainLine,
  ChainTree,
  DecisionBadge,
  fullTime,
  LINK_TEXT,
  MachineLink,
  prettyArguments,
  RiskBadge,
  type EventView,
} from './events-parts.tsx'

export interface EventDetailProps {
  id: string
  /** Where an event of the chain links to (the list keeps its filters; the standalone page its route). */
  link(id: string): string
  hostname(id: string | null): string | null
  /** The list's "close" link, when shown beside it. */
  close?: string
}

export function EventDetail({ id, link, hostname, close }: EventDetailProps) {
  const chain = useLoad((signal) => api.get('/v1/events/{id}/chain', { path: { id }, signal }), [id])
  const heading = useRef<HTMLHeadingElement>(null)
  // Keyboard and screen-reader users land on what they opened.
  useEffect(() => heading.current?.focus(), [id, chain.data !== undefined])
  const c = chain.data
  const e = c?.event.id === id ? c.event : undefined
  return (
    <section class="event-detail" aria-labelledby="event-detail-title">
      <div class="event-detail-head">
        <h2 id="event-detail-title" ref={heading} tabIndex={-1}>
          {e ? actionTitle(e) : 'Event'}
        </h2>
        {e && <DecisionBadge decision={e.decision} blocked={e.blocked} />}
        {e && <RiskBadge score={e.risk_score} band={e.risk_band} />}
        {close && (
          <a href={close} class="event-close">
            Close<span class="ev-sr"> event details</span>
          </a>
        )}
      </div>
      {chain.error instanceof ApiError && chain.error.status === 404 ? (
        <Empty title="No such event">
          <p>
            No event <code>{id}</code> in this organization: it may have passed the retention period. Search the{' '}
            <a href={href(['events'])}>events</a> instead.
          </p>
        </Empty>
      ) : (
        <ErrorNote error={chain.error} retry={chain.reload} />
      )}
      {!e ? (
        !chain.error && <Loading />
      ) : (
        <>
          <Facts e={e} hostname={hostname} sessionId={c!.session?.id ?? null} />
          <h3>Arguments{e.redacted && <small> (secrets redacted at ingest)</small>}</h3>
          <pre class="event-args">{prettyArguments(e.arguments)}</pre>
          {Object.keys(e.labels).length > 0 && (
            <>
              <h3>Labels</h3>
              <dl class="facts">
                {Object.entries(e.labels).map(([k, v]) => (
                  <Fact key={k} term={k}>
                    <code>{v}</code>
                  </Fact>
                ))}
              </dl>
            </>
          )}
          {Object.keys(e.extra).length > 0 && (
            <>
              <h3>Other fields sent</h3>
              <pre>{JSON.stringify(e.extra, null, 2)}</pre>
            </>
          )}
          <h3>Causal chain</h3>
          <CausalChain c={c!} link={link} />
        </>
      )}
    </section>
  )
}

function Fact({ term, children }: { term: string; children: ComponentChildren }) {
  return (
    <>
      <dt>{term}</dt>
      <dd>{children}</dd>
    </>
  )
}

function Facts({
  e,
  hostname,
  sessionId,
}: {
  e: EventView
  hostname(id: string | null): string | null
  sessionId: string | null
}) {
  return (
    <dl class="facts">
      <Fact term="Time">
        <time dateTime={e.timestamp}>{fullTime(e.timestamp)}</time> <span class="hint">({ago(e.timestamp)})</span>
        <div class="hint">
          <code>{e.timestamp}</code> (UTC)
        </div>
        {e.client_timestamp && <div class="hint">The client said {e.client_timestamp}; clamped at ingest.</div>}
      </Fact>
      <Fact term="Received">{fullTime(e.received_at)}</Fact>
      <Fact term="Session">
        {e.session_id ? (
          <a href={href(['sessions', sessionId ?? e.session_id], { at: e.id })}>{e.session_id}</a>
        ) : (
          <span class="hint">none</span>
        )}
      </Fact>
      <Fact term="Machine">
        <MachineLink id={e.machine_id} hostname={hostname(e.machine_id)} />
      </Fact>
      <Fact term="Agent">
        {e.agent_id ? <a href={href(['events'], { agent_id: e.agent_id })}>{e.agent_id}</a> : <span class="hint">none</span>}
      </Fact>
      <Fact term="Action type">{e.action_type ?? '—'}</Fact>
      <Fact term="Tool">{e.tool_name ?? '—'}</Fact>
      <Fact term="Action">{e.action ?? '—'}</Fact>
      <Fact term="Decision">
        {e.decision ?? '—'}
        {e.blocked && ' (blocked)'}
      </Fact>
      <Fact term="Risk">{e.risk_score === null ? 'unscored' : `${e.risk_score} (${e.risk_band})`}</Fact>
      <Fact term="Platform">{e.platform ?? '—'}</Fact>
      <Fact term="Source">{e.source ?? '—'}</Fact>
      <Fact term="Schema version">{e.schema_version ?? '—'}</Fact>
      <Fact term="Redacted">{e.redacted ? 'yes: ingest replaced a secret' : 'no'}</Fact>
      <Fact term="Event id (client)">
        <code>{e.event_id}</code>
      </Fact>
      <Fact term="Dedupe key">
        <code>{e.event_key}</code>
      </Fact>
      <Fact term="Stored id">
        <code>{e.id}</code>
      </Fact>
      <Fact term="Caused by">
        {e.parent_id ? (
          <>
            <a href={href(['events', e.parent_id])}>{e.parent_id}</a>{' '}
            <span class="hint">({LINK_TEXT[e.parent_link ?? ''] ?? e.parent_link})</span>
          </>
        ) : (
          <span class="hint">nothing linked (the top of its chain)</span>
        )}
      </Fact>
    </dl>
  )
}

type Chain = Ok<'/v1/events/{id}/chain', 'get'>

/** Ancestors root-most first, then this event with its effects nested beneath it. */
function CausalChain({ c, link }: { c: Chain; link(id: string): string }) {
  if (c.ancestors.length === 0 && c.effects.length === 0) {
    return (
      <p class="hint">
        Nothing linked to this event: it caused nothing that was reported, and no tool call or process is known to have caused it.
      </p>
    )
  }
  // Each level nests in the previous one: tool call → shell → command → this event.
  const chainOf = (depth: number): ComponentChildren => {
    if (depth < c.ancestors.length) {
      const a = c.ancestors[depth]!
      return (
        <li>
          <ChainLine e={a} link={link} session={c.event.session_id} />
          <ul class="chain">{chainOf(depth + 1)}</ul>
        </li>
      )
    }
    return (
      <li class="chain-current">
        <ChainLine e={c.event} current link={link} session={c.event.session_id} />
        <ChainTree nodes={c.effects} link={link} session={c.event.session_id} />
      </li>
    )
  }
  return (
    <>
      <ul class="chain chain-root" aria-label="Causal chain: each event with what it caused beneath it">
        {chainOf(0)}
      </ul>
      {c.truncated && <p class="hint">The effects were cut at 1,000 events or 32 levels.</p>}
    </>
  )
}
