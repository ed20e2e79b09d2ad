/**
 * @module console/ui/pages/sessions-timeline
 * A session's timeline (`GET /v1/sessions/{id}/timeline`, docs/causal-chain.md): its events oldest
 * first, each tool call with what it caused nested beneath it (shell → commands → files and
 * connections), including what a sub-agent's call caused where the edge attributed it.
 *
 * `at` (an event's id, from `?at=`) is looked for page after page, then scrolled to, marked and
 * focused: a responder following an alert lands on the action, inside its context.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import { api } from '../api/client.ts'
import { Empty, ErrorNote, Loading } from '../components/common.tsx'
import { count } from '../format.ts'
import { href } from '../router.ts'
import { ChainTree, findIn, type ChainNode } from './events-parts.tsx'

const PAGE = 50
/** Pages read automatically looking for `at` (then the responder is offered the event on its own). */
const SEEK_PAGES = 40

interface State {
  items: ChainNode[]
  cursor: string | null
  loading: boolean
  error: Error | null
  truncated: boolean
  pages: number
}

export function Timeline({ id, sessionKey, at }: { id: string; sessionKey: string; at: string | null }) {
  const [s, setS] = useState<State>({ items: [], cursor: null, loading: true, error: null, truncated: false, pages: 0 })
  const abort = useRef<AbortController | null>(null)

  const load = (cursor: string | null) => {
    abort.current?.abort()
    const ctl = new AbortController()
    abort.current = ctl
    setS((x) => ({ ...x, loading: true, error: null }))
    api
      .get('/v1/sessions/{id}/timeline', {
        path: { id },
        query: { limit: PAGE, cursor: cursor ?? undefined },
        signal: ctl.signal,
      })
      .then(
        (r) =>
          !ctl.signal.aborted &&
          setS((x) => ({
            items: cursor ? [...x.items, ...r.items] : r.items,
            cursor: r.next_cursor,
            loading: false,
            error: null,
            truncated: x.truncated || r.truncated,
            pages: x.pages + 1,
          })),
        (error: Error) => !ctl.signal.aborted && setS((x) => ({ ...x, loading: false, error })),
      )
  }
  useEffect(() => {
    load(null)
    return () => abort.current?.abort()
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [id])

  const found = at ? findIn(s.items, at) : false
  const seeking = Boolean(at) && !found && s.cursor !== null && s.pages < SEEK_PAGES
  useEffect(() => {
    if (seeking && !s.loading && !s.error) load(s.cursor)
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [seeking, s.loading, s.cursor])

  // Scrolled to and focused once per `at`, when it first appears.
  const shown = useRef<string | null>(null)
  useEffect(() => {
    if (!at || !found || shown.current === at) return
    shown.current = at
    const el = document.getElementById(`ev-${at}`)
    el?.scrollIntoView({ block: 'center' })
    el?.focus({ preventScroll: true })
  }, [at, found])

  return (
    <section class="card session-timeline" aria-labelledby="session-timeline">
      <h2 id="session-timeline">
        Timeline <small>oldest first; what each tool call caused is nested beneath it</small>
      </h2>
      {at && (
        <p class={found ? 'at-note' : 'hint'} role="status">
          {found ? (
            <>
              The marked event is the one the link points to (
              <button type="button" class="link" onClick={() => reveal(at)}>
                show it
              </button>
              ).
            </>
          ) : seeking || s.loading ? (
            'Looking for the linked event in this timeline…'
          ) : (
            <>
              The linked event is not in the {count(s.items.length)} items read of this timeline.{' '}
              <a href={href(['events', at])}>Open the event on its own</a>
              {s.cursor ? ', or load more below.' : '.'}
            </>
          )}
        </p>
      )}
      <ErrorNote error={s.error} retry={() => load(s.items.length ? s.cursor : null)} />
      {s.items.length === 0 ? (
        s.loading ? (
          <Loading />
        ) : s.error ? null : (
          <Empty title="No events in this session yet">
            <p>Its events appear here as they are stored; the delegation tree above may list sub-agents that have some.</p>
          </Empty>
        )
      ) : (
        <ChainTree root label="Timeline" nodes={s.items} current={at} session={sessionKey} link={(e) => href(['events', e])} />
      )}
      {s.truncated && (
        <p class="hint">
          Some nested events were cut (1,000 per page, 32 levels):{' '}
          <a href={href(['events'], { session_id: sessionKey })}>list every event</a>.
        </p>
      )}
      <div class="events-more">
        {s.cursor ? (
          <button type="button" onClick={() => load(s.cursor)} disabled={s.loading}>
            {s.loading ? 'Loading…' : 'Load more'}
          </button>
        ) : (
          s.items.length > 0 && <span class="hint">End of the timeline.</span>
        )}
      </div>
    </section>
  )
}

function reveal(id: string) {
  const el = document.getElementById(`ev-${id}`)
  el?.scrollIntoView({ block: 'center' })
  el?.focus({ preventScroll: true })
}
