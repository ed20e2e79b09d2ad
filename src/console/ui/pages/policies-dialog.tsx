/**
 * @module console/ui/pages/policies-dialog
 * The confirmation in front of what cannot be taken back quietly (blocking an agent fleet-wide,
 * deleting a policy). A native modal `<dialog>`: the browser keeps focus inside it and closes it
 * on Escape; focus starts on Cancel (the safe answer at 3 a.m.) and returns to the button that
 * opened it.
 */
import type { ComponentChildren } from 'preact'
import { useEffect, useRef } from 'preact/hooks'

export function Confirm(p: {
  open: boolean
  title: string
  confirmLabel: string
  danger?: boolean
  busy?: boolean
  /** False while what the decision rests on (a preview) is not on screen yet. */
  ready?: boolean
  children?: ComponentChildren
  onConfirm(): void
  onCancel(): void
}) {
  const dialog = useRef<HTMLDialogElement>(null)
  const cancel = useRef<HTMLButtonElement>(null)
  const opener = useRef<HTMLElement | null>(null)
  useEffect(() => {
    const d = dialog.current!
    if (p.open && !d.open) {
      opener.current = document.activeElement as HTMLElement | null
      d.showModal()
      cancel.current?.focus()
    } else if (!p.open && d.open) {
      d.close()
      opener.current?.focus()
    }
  }, [p.open])
  const titleId = `confirm-${p.title.replace(/\W+/g, '-').toLowerCase()}`
  return (
    <dialog
      ref={dialog}
      class="confirm"
      aria-labelledby={titleId}
      onCancel={(e) => {
        e.preventDefault()
        p.onCancel()
      }}
    >
      <h2 id={titleId}>{p.title}</h2>
      {p.children}
      <div class="row">
        <button type="button" ref={cancel} onClick={p.onCancel} disabled={p.busy}>
          Cancel
        </button>
        <button
          type="button"
          class={p.danger ? 'danger' : 'primary'}
          onClick={p.onConfirm}
          disabled={p.busy || p.ready === false}
        >
          {p.busy ? 'Working…' : p.confirmLabel}
        </button>
      </div>
    </dialog>
  )
}
