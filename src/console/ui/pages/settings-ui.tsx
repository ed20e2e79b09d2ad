/**
 * @module console/ui/pages/settings-ui
 * The pieces the Settings tabs and the Fleet page share for changing things: a confirmation
 * dialog for destructive actions, a secret shown once, an action's outcome (announced and
 * focused, so a keyboard or screen-reader user learns what happened without hunting for it),
 * the API's refusals explained, and keyset paging. They live here rather than in components/
 * because only these two pages use them so far.
 */
import type { ComponentChildren } from 'preact'
import { useEffect, useId, useRef, useState } from 'preact/hooks'
import { ApiError } from '../api/client.ts'
import { Badge, ErrorNote } from '../components/common.tsx'
import './settings.css'

/**
 * What a problem code means for the person who just clicked, beyond the API's own words. The
 * API stays the authority (a 403 is shown as such); this says what to do next.
 */
export function explain(error: Error | null): string | null {
  if (!(error instanceof ApiError)) return null
  const { status, code } = error.problem
  if (code === 'last_owner') {
    return 'An organization always keeps one active owner. Make another member owner first, then change or remove this one.'
  }
  if (code === 'member_exists')
    return 'That address is already a member or has a pending invitation: change its role in the list instead.'
  if (code === 'token_not_active') return 'This token is revoked, expired or was rotated already: create a new one instead.'
  if (code === 'webhook_disabled')
    return 'This webhook is disabled: edit it and tick "Enabled" before sending a test or redelivering.'
  if (code === 'delivery_in_progress')
    return 'This delivery is still being attempted. Redeliver it once it has succeeded, failed or died.'
  if (status === 403) {
    return 'The server refused: the credential you signed in with does not hold the permission this needs (see Settings → Members for what each role may do). Nothing was changed.'
  }
  return null
}

/** A refused request: the API's problem (title, status, code, detail, field errors) and what to do. */
export function Problem({ error, retry }: { error: Error | null; retry?: () => void }) {
  if (!error) return null
  const hint = explain(error)
  return (
    <div class="settings-problem">
      <ErrorNote error={error} retry={retry} />
      {hint && <p class="hint">{hint}</p>}
    </div>
  )
}

export interface Action {
  busy: string | null
  error: Error | null
  done: string | null
  /** Runs `fn` (one at a time); its string result is announced as the outcome. */
  run(label: string, fn: () => Promise<string | void>): Promise<boolean>
  clear(): void
}

export function useAction(): Action {
  const [busy, setBusy] = useState<string | null>(null)
  const [error, setError] = useState<Error | null>(null)
  const [done, setDone] = useState<string | null>(null)
  return {
    busy,
    error,
    done,
    clear: () => {
      setError(null)
      setDone(null)
    },
    async run(label, fn) {
      setBusy(label)
      setError(null)
      setDone(null)
      try {
        const message = await fn()
        if (message) setDone(message)
        return true
      } catch (err) {
        setError(err as Error)
        return false
      } finally {
        setBusy(null)
      }
    },
  }
}

/**
 * The outcome of the last action, focused when it appears: after a row is removed or a dialog
 * closes, focus would otherwise fall back to the page's top.
 */
export function ActionNote({ action }: { action: Action }) {
  const box = useRef<HTMLDivElement>(null)
  useEffect(() => {
    if (action.done || action.error) box.current?.focus()
  }, [action.done, action.error])
  return (
    <div ref={box} tabIndex={-1} class="settings-note">
      <div role="status">{action.done && <p class="settings-done">{action.done}</p>}</div>
      <Problem error={action.error} />
    </div>
  )
}

export interface ConfirmProps {
  /** The button that opens the dialog. */
  label: string
  /** The dialog's heading: the question. */
  title: string
  /** What happens, in plain words. */
  children: ComponentChildren
  /** The confirming button's text ("Revoke token"). */
  confirm: string
  onConfirm(): void | Promise<unknown>
  danger?: boolean
  disabled?: boolean
  /** The trigger's accessible name when `label` alone is ambiguous in a list ("Revoke ci-token"). */
  ariaLabel?: string
}

/**
 * A destructive action behind a modal `<dialog>`: the browser traps focus in it, Escape cancels,
 * and closing returns focus to the trigger. Cancel is focused first so a stray Enter does nothing.
 */
export function ConfirmButton(p: ConfirmProps) {
  const dialog = useRef<HTMLDialogElement>(null)
  const [open, setOpen] = useState(false)
  const id = useId()
  useEffect(() => {
    if (open && !dialog.current?.open) dialog.current?.showModal()
  }, [open])
  const close = () => {
    dialog.current?.close()
    setOpen(false)
  }
  return (
    <>
      <button
        type="button"
        class={p.danger ? 'danger' : ''}
        disabled={p.disabled}
        aria-label={p.ariaLabel}
        onClick={() => setOpen(true)}
      >
        {p.label}
      </button>
      {open && (
        <dialog ref={dialog} class="settings-dialog" aria-labelledby={`${id}-title`} onClose={() => setOpen(false)}>
          <h2 id={`${id}-title`}>{p.title}</h2>
          <div class="settings-dialog-body">{p.children}</div>
          <div class="row settings-dialog-actions">
            <button type="button" autofocus onClick={close}>
              Cancel
            </button>
            <button
              type="button"
              class={p.danger ? 'danger' : 'primary'}
              onClick={() => {
                close()
                void p.onConfirm()
              }}
            >
              {p.confirm}
            </button>
          </div>
        </dialog>
      )}
    </>
  )
}

/**
 * A secret the API returns once (a token, a webhook secret): focused when it appears, with a copy
 * button and the warning that it cannot be shown again.
 */
export function SecretOnce(p: { label: string; value: string; children?: ComponentChildren; onDismiss(): void }) {
  const field = useRef<HTMLInputElement>(null)
  const [copied, setCopied] = useState<string>('')
  const id = useId()
  useEffect(() => {
    field.current?.focus()
    field.current?.select()
  }, [p.value])
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(p.value)
      setCopied('Copied to the clipboard.')
    } catch {
      // No clipboard permission (an insecure origin, a locked-down browser): leave it selected.
      field.current?.select()
      setCopied('Copying was refused by the browser: the value is selected, press Ctrl+C (⌘C).')
    }
  }
  return (
    <section class="settings-secret" aria-labelledby={`${id}-h`}>
      <h3 id={`${id}-h`}>Copy it now: it is shown only this once</h3>
      <p>quint-cloud keeps only a hash of it. If it is lost, make a new one and revoke this one. {p.children}</p>
      <label for={`${id}-v`}>{p.label}</label>
      <div class="row">
        <input
          id={`${id}-v`}
          ref={field}
          class="settings-secret-value"
          readOnly
          spellcheck={false}
          value={p.value}
          onFocus={(e) => (e.target as HTMLInputElement).select()}
        />
        <button type="button" class="primary" onClick={() => void copy()}>
          Copy
        </button>
        <button type="button" onClick={p.onDismiss}>
          I have saved it
        </button>
      </div>
      <p role="status" class="hint">
        {copied}
      </p>
    </section>
  )
}

export interface Paged<T> {
  items: T[]
  next: string | null
  ready: boolean
  loading: boolean
  error: Error | null
  more(): void
  reload(): void
}

/**
 * A keyset-paged list: the first page when `deps` change or on `reload()`, the following pages
 * appended by `more()`. A reload starts from the first page again: a later page's cursor would
 * skip whatever is new.
 */
export function usePaged<T>(
  load: (cursor: string | undefined, signal: AbortSignal) => Promise<{ items: T[]; next: string | null }>,
  deps: readonly unknown[],
): Paged<T> {
  const [state, setState] = useState<{ items: T[]; next: string | null; ready: boolean; loading: boolean; error: Error | null }>({
    items: [],
    next: null,
    ready: false,
    loading: true,
    error: null,
  })
  const [tick, setTick] = useState(0)
  const current = useRef<AbortController | null>(null)
  useEffect(() => {
    const abort = new AbortController()
    current.current = abort
    setState((s) => ({ ...s, loading: true }))
    load(undefined, abort.signal).then(
      (p) => !abort.signal.aborted && setState({ items: p.items, next: p.next, ready: true, loading: false, error: null }),
      (error: Error) => !abort.signal.aborted && setState((s) => ({ ...s, loading: false, error })),
    )
    return () => abort.abort()
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick])
  return {
    ...state,
    reload: () => setTick((t) => t + 1),
    more: () => {
      const abort = current.current
      if (!state.next || !abort || state.loading) return
      setState((s) => ({ ...s, loading: true }))
      load(state.next, abort.signal).then(
        (p) =>
          !abort.signal.aborted &&
          setState((s) => ({ ...s, items: [...s.items, ...p.items], next: p.next, loading: false, error: null })),
        (error: Error) => !abort.signal.aborted && setState((s) => ({ ...s, loading: false, error })),
      )
    },
  }
}

/** "Load more" under a paged list, or nothing when it is all shown. */
export function MoreButton({ paged, what }: { paged: Paged<unknown>; what: string }) {
  if (!paged.next) return null
  return (
    <button type="button" onClick={paged.more} disabled={paged.loading}>
      {paged.loading ? 'Loading…' : `Load more ${what}`}
    </button>
  )
}

/** The value of a form field, from its input event. */
export const valueOf = (e: Event): string => (e.target as HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement).value

/** A deploy token's state, which its list does not spell out (`/v1/tokens` does). */
export function tokenState(t: { revoked_at: string | null; expires_at: string | null }): 'active' | 'expired' | 'revoked' {
  if (t.revoked_at) return 'revoked'
  if (t.expires_at && new Date(t.expires_at).getTime() <= Date.now()) return 'expired'
  return 'active'
}

export function StateBadge({ state }: { state: 'active' | 'expired' | 'revoked' }) {
  return (
    <Badge kind={state === 'active' ? 'settings-ok' : state === 'revoked' ? 'settings-bad' : 'settings-muted'}>{state}</Badge>
  )
}
