/** @module console/ui/components/common — the small pieces every page uses. */
import type { ComponentChildren } from 'preact'
import { ApiError } from '../api/client.ts'
import type { LiveState } from '../live.ts'

export function PageHeader(p: { title: string; children?: ComponentChildren; live?: LiveState }) {
  return (
    <header class="page-header">
      <h1>{p.title}</h1>
      {p.live && <LiveBadge state={p.live} />}
      <div class="page-actions">{p.children}</div>
    </header>
  )
}

export function LiveBadge({ state }: { state: LiveState }) {
  const label = state === 'live' ? 'Live' : state === 'connecting' ? 'Connecting…' : 'Offline: reconnecting'
  return (
    <span class={`live live-${state}`} role="status" aria-live="polite">
      <span class="dot" aria-hidden="true" />
      {label}
    </span>
  )
}

/** An empty state says what to do next. */
export function Empty(p: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty">
      <h2>{p.title}</h2>
      {p.children}
    </div>
  )
}

/** A failed request, as the API explained it (RFC 9457), with what to try. */
export function ErrorNote({ error, retry }: { error: Error | null; retry?: () => void }) {
  if (!error) return null
  const problem = error instanceof ApiError ? error.problem : null
  return (
    <div class="error" role="alert">
      <strong>{problem?.title ?? 'Something went wrong'}</strong>
      {problem?.status ? ` (${problem.status}${problem.code ? ` ${problem.code}` : ''})` : ''}
      <div>{error.message}</div>
      {problem?.errors?.length ? (
        <ul>
          {problem.errors.map((e) => (
            <li key={`${e.path}:${e.message}`}>
              {e.path ? <code>{e.path}</code> : null} {e.message}
            </li>
          ))}
        </ul>
      ) : null}
      {retry && (
        <button type="button" onClick={retry}>
          Try again
        </button>
      )}
    </div>
  )
}

export function Badge({ kind, children }: { kind: string; children: ComponentChildren }) {
  return <span class={`badge badge-${kind}`}>{children}</span>
}

export function Loading() {
  return (
    <p class="loading" role="status">
      Loading…
    </p>
  )
}
