/**
 * @module console/ui/pages/policies-editor
 * Writing a policy: the fields, hints before asking the API, the API's 422 `errors[]` shown at
 * the fields they name, the simulation preview of exactly this draft, and then saving it.
 * Saving is offered only for a draft whose preview is on screen: a policy reaches every daemon
 * in scope within a second (docs/fleet-stream.md), so what it would do is read first.
 */
import { useRef, useState } from 'preact/hooks'
import { api, ApiError } from '../api/client.ts'
import { ErrorNote } from '../components/common.tsx'
import { navigate } from '../router.ts'
import { can, useIdentity } from '../session.ts'
import { check, fileErrors, policyFields, toBody, type FieldErrors, type Policy, type PolicyDraft } from './policies-draft.ts'
import { Field, OtherErrors, ScopePicker, valueOf } from './policies-fields.tsx'
import { SimulationView, useSimulation, type SimulateBody } from './policies-preview.tsx'
import { RulesEditor } from './policies-rules.tsx'

const DAYS = [1, 7, 14, 30] as const

/** Moves focus to the first field with an error, so the keyboard lands where the fix is. */
export function focusFirstError(form: HTMLElement | null): void {
  requestAnimationFrame(() => (form?.querySelector('[aria-invalid="true"]') as HTMLElement | null)?.focus())
}

export function PolicyEditor(p: { initial: PolicyDraft; existing?: Policy; origin?: string }) {
  const [draft, setDraft] = useState(p.initial)
  const [errors, setErrors] = useState<FieldErrors>({})
  const [other, setOther] = useState<{ path?: string; message: string }[]>([])
  const [failure, setFailure] = useState<Error | null>(null)
  const [days, setDays] = useState(7)
  const [saving, setSaving] = useState(false)
  const sim = useSimulation()
  const form = useRef<HTMLFormElement>(null)
  // Previewing needs only `read`; saving needs `manage` (docs/policies.md).
  const manage = can(useIdentity(), 'manage')

  const simBody = (): SimulateBody => ({
    policy: toBody(draft),
    days,
    samples: 20,
    ...(p.existing ? { replaces: p.existing.id } : {}),
  })
  const current = sim.result !== null && sim.forDraft === JSON.stringify(simBody())

  const update = (d: PolicyDraft) => {
    setDraft(d)
    // A hint clears as soon as the value changes; the API's word comes back at the next try.
    if (Object.keys(errors).length) setErrors(check(d))
  }

  /** Client hints first; false when the draft cannot be sent as it is. */
  const hintsPass = (): boolean => {
    const hints = check(draft)
    setErrors(hints)
    setOther([])
    setFailure(null)
    if (Object.keys(hints).length === 0) return true
    focusFirstError(form.current)
    return false
  }

  const refused = (err: unknown, prefix: string) => {
    if (err instanceof ApiError && err.problem.errors?.length) {
      const filed = fileErrors(err.problem.errors, policyFields(draft), prefix)
      setErrors(filed.fields)
      setOther(filed.other)
      setFailure(filed.other.length ? err : null)
      focusFirstError(form.current)
    } else {
      setFailure(err as Error)
    }
  }

  const preview = async () => {
    if (!hintsPass()) return
    const result = await sim.run(simBody())
    // The simulation's refusal is filed like a save's (its pointers start with `/policy`).
    if (result instanceof Error) refused(result, '/policy')
    else requestAnimationFrame(() => document.getElementById('simulation-title')?.focus())
  }

  const save = async (e: Event) => {
    e.preventDefault()
    if (!current || !hintsPass()) return
    setSaving(true)
    try {
      const body = toBody(draft)
      const saved = p.existing
        ? await api.patch('/v1/policies/{id}', { path: { id: p.existing.id }, body })
        : await api.post('/v1/policies', { body })
      navigate(`#/policies/${encodeURIComponent(saved.id)}?saved=${p.existing ? 'updated' : 'created'}`)
    } catch (err) {
      refused(err, '')
    } finally {
      setSaving(false)
    }
  }

  return (
    <div class="editor-layout">
      <form
        ref={form}
        class="stack editor"
        onSubmit={save}
        noValidate
        aria-label={p.existing ? `Edit ${p.existing.name}` : 'New policy'}
      >
        {p.origin && <p class="hint">{p.origin}</p>}
        <ErrorNote error={failure} />
        <OtherErrors errors={failure ? [] : other} />
        <Field id="policy-name" label="Name" errors={errors['/name']}>
          {(aria) => <input {...aria} value={draft.name} onInput={(e) => update({ ...draft, name: valueOf(e) })} />}
        </Field>
        <Field id="policy-description" label="Description (optional)" errors={errors['/description']}>
          {(aria) => (
            <textarea
              {...aria}
              rows={2}
              value={draft.description}
              onInput={(e) => update({ ...draft, description: valueOf(e) })}
            />
          )}
        </Field>
        <div class="row">
          <Field
            id="policy-priority"
            label="Priority"
            hint="Higher first; the first matching rule of all policies decides."
            errors={errors['/priority']}
          >
            {(aria) => (
              <input
                {...aria}
                type="number"
                inputMode="numeric"
                step={1}
                value={draft.priority}
                onInput={(e) => update({ ...draft, priority: valueOf(e) })}
              />
            )}
          </Field>
          <label class="inline">
            <input
              type="checkbox"
              checked={draft.enabled}
              onChange={(e) => update({ ...draft, enabled: (e.currentTarget as HTMLInputElement).checked })}
            />
            Enabled (a disabled policy is kept and enforced nowhere)
          </label>
        </div>
        <RulesEditor rules={draft.rules} errors={errors} onChange={(rules) => update({ ...draft, rules })} />
        <ScopePicker idBase="policy" scope={draft.scope} errors={errors} onChange={(scope) => update({ ...draft, scope })} />
        <div class="row actions">
          <label class="inline">
            Replay the last
            <select value={String(days)} onChange={(e) => setDays(Number(valueOf(e)))} aria-label="Days to replay">
              {DAYS.map((d) => (
                <option key={d} value={String(d)}>
                  {d} day{d === 1 ? '' : 's'}
                </option>
              ))}
            </select>
          </label>
          <button type="button" class={current ? '' : 'primary'} onClick={() => void preview()} disabled={sim.busy}>
            {sim.busy ? 'Simulating…' : current ? 'Preview again' : 'Preview impact'}
          </button>
          {manage && (
            <button type="submit" class={current ? 'primary' : ''} disabled={!current || saving} aria-describedby="save-hint">
              {saving ? 'Saving…' : p.existing ? 'Save changes' : 'Save policy'}
            </button>
          )}
        </div>
        <p id="save-hint" class="hint">
          {!manage
            ? 'You can preview a draft; saving a policy needs the manage permission (an admin or owner).'
            : current
              ? 'Saving sends it to every machine in scope within a second (those holding the fleet stream) or at their next heartbeat.'
              : 'Preview this draft first: saving is possible once you have seen what it would have done.'}
        </p>
        {p.existing && (
          <p>
            <a href={`#/policies/${encodeURIComponent(p.existing.id)}`}>Cancel and go back to the policy</a>
          </p>
        )}
      </form>
      <div class="preview" aria-live="polite">
        {sim.result ? (
          <>
            {!current && (
              <p class="stale" role="status">
                The draft changed since this preview: preview again before saving.
              </p>
            )}
            <SimulationView result={sim.result} />
          </>
        ) : (
          <p class="hint">
            The preview replays this draft over the actions of the last {days} days with the daemon's own evaluation and shows
            what it would have blocked, flagged or sent for approval, by machine, agent and tool.
          </p>
        )}
      </div>
    </div>
  )
}
