/**
 * @module console/ui/pages/signatures-editor
 * Creating or changing a threat signature, with the simulation preview of the draft first (a
 * block is compiled above every policy of the org: it applies everywhere in its scope at once).
 * Kind and value are fixed once created, so an edit shows them read-only.
 */
import { useRef, useState } from 'preact/hooks'
import { api, ApiError } from '../api/client.ts'
import { ErrorNote } from '../components/common.tsx'
import { navigate } from '../router.ts'
import { fileErrors, type FieldErrors } from './policies-draft.ts'
import { focusFirstError } from './policies-editor.tsx'
import { Field, OtherErrors, ScopePicker, valueOf } from './policies-fields.tsx'
import { SimulationView, useSimulation } from './policies-preview.tsx'
import {
  ACTIONS,
  checkSignature,
  KINDS,
  SEVERITY_LIST,
  SIGNATURE_FIELDS,
  toCreate,
  toSimulated,
  toUpdate,
  type Signature,
  type SignatureDraft,
  type SignatureKind,
} from './signatures-draft.ts'

export function SignatureEditor(p: {
  initial: SignatureDraft
  existing?: Signature
  /** A change was saved (the detail page shows it in place); a creation goes to the new signature's page. */
  onUpdated?(): void
}) {
  const [d, setD] = useState(p.initial)
  const [errors, setErrors] = useState<FieldErrors>({})
  const [other, setOther] = useState<{ path?: string; message: string }[]>([])
  const [failure, setFailure] = useState<Error | null>(null)
  const [saving, setSaving] = useState(false)
  const sim = useSimulation()
  const form = useRef<HTMLFormElement>(null)
  const creating = !p.existing
  const flow = d.kind === 'flow_shape'
  const simBody = () => ({ signature: toSimulated(d), days: 7, samples: 20 })
  const current = sim.result !== null && sim.forDraft === JSON.stringify(simBody())
  const set = (x: Partial<SignatureDraft>) => {
    const next = { ...d, ...x }
    setD(next)
    if (Object.keys(errors).length) setErrors(checkSignature(next, creating))
  }

  const hintsPass = () => {
    const hints = checkSignature(d, creating)
    setErrors(hints)
    setOther([])
    setFailure(null)
    if (Object.keys(hints).length === 0) return true
    focusFirstError(form.current)
    return false
  }
  const refused = (err: unknown, prefix: string) => {
    if (err instanceof ApiError && err.problem.errors?.length) {
      const filed = fileErrors(err.problem.errors, SIGNATURE_FIELDS, prefix)
      setErrors(filed.fields)
      setOther(filed.other)
      focusFirstError(form.current)
    } else setFailure(err as Error)
  }
  const preview = async () => {
    if (!hintsPass()) return
    const r = await sim.run(simBody())
    if (r instanceof Error) refused(r, '/signature')
    else requestAnimationFrame(() => document.getElementById('simulation-title')?.focus())
  }
  const save = async (e: Event) => {
    e.preventDefault()
    if (!current || !hintsPass()) return
    setSaving(true)
    try {
      if (p.existing) {
        const body = toUpdate(d, p.existing)
        if (Object.keys(body).length === 0) {
          setFailure(new Error('Nothing changed: edit a field first.'))
          return
        }
        await api.patch('/v1/threat-signatures/{id}', { path: { id: p.existing.id }, body })
        p.onUpdated?.()
      } else {
        const created = await api.post('/v1/threat-signatures', { body: toCreate(d) })
        navigate(`#/policies/signatures/${encodeURIComponent(created.id)}?saved=created`)
      }
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
        aria-label={creating ? 'New threat signature' : 'Change this signature'}
      >
        {!creating && <h2 id="sig-editor-title">Change this signature</h2>}
        <ErrorNote error={failure} />
        <OtherErrors errors={other} />
        <Field id="sig-name" label="Name" errors={errors['/name']}>
          {(aria) => <input {...aria} value={d.name} onInput={(e) => set({ name: valueOf(e) })} />}
        </Field>
        <Field id="sig-kind" label="Kind" hint={KINDS[d.kind]} errors={errors['/kind']}>
          {(aria) => (
            <select
              {...aria}
              value={d.kind}
              disabled={!creating}
              onChange={(e) => {
                const kind = valueOf(e) as SignatureKind
                set({ kind, action: kind === 'flow_shape' ? 'alert' : d.action === 'alert' ? 'block' : d.action })
              }}
            >
              {Object.keys(KINDS).map((k) => (
                <option key={k} value={k}>
                  {k.replace('_', ' ')}
                </option>
              ))}
            </select>
          )}
        </Field>
        {!flow ? (
          <Field id="sig-value" label="Value" hint={creating ? undefined : 'Fixed once created.'} errors={errors['/value']}>
            {(aria) => (
              <input
                {...aria}
                value={d.value}
                readOnly={!creating}
                spellcheck={false}
                onInput={(e) => set({ value: valueOf(e) })}
              />
            )}
          </Field>
        ) : (
          <>
            <Field
              id="sig-shape"
              label="Shape: one transition and its weight per line"
              hint="e.g. read>send 0.8 (capabilities: docs/flow-shapes.md). Weights are normalised."
              errors={errors['/shape']}
            >
              {(aria) => (
                <textarea {...aria} rows={4} readOnly={!creating} value={d.shape} onInput={(e) => set({ shape: valueOf(e) })} />
              )}
            </Field>
            <div class="row">
              <Field id="sig-jsd" label="Max divergence (JSD)" hint="Above 0, at most 0.5" errors={errors['/max_jsd']}>
                {(aria) => (
                  <input {...aria} readOnly={!creating} value={d.max_jsd} onInput={(e) => set({ max_jsd: valueOf(e) })} />
                )}
              </Field>
              <Field id="sig-min" label="Min transitions (optional)" errors={errors['/min_transitions']}>
                {(aria) => (
                  <input
                    {...aria}
                    readOnly={!creating}
                    value={d.min_transitions}
                    onInput={(e) => set({ min_transitions: valueOf(e) })}
                  />
                )}
              </Field>
              <Field id="sig-agents" label="Agent types (optional)" hint="claude-code, cursor…" errors={errors['/agent_types']}>
                {(aria) => (
                  <input {...aria} readOnly={!creating} value={d.agent_types} onInput={(e) => set({ agent_types: valueOf(e) })} />
                )}
              </Field>
            </div>
          </>
        )}
        <div class="row">
          <Field id="sig-action" label="Action" errors={errors['/action']}>
            {(aria) => (
              <select
                {...aria}
                value={d.action}
                disabled={flow}
                onChange={(e) => set({ action: valueOf(e) as SignatureDraft['action'] })}
              >
                {ACTIONS.map((a) => (
                  <option key={a} value={a}>
                    {a.replace('_', ' ')}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field id="sig-severity" label="Severity" errors={errors['/severity']}>
            {(aria) => (
              <select {...aria} value={d.severity} onChange={(e) => set({ severity: valueOf(e) as SignatureDraft['severity'] })}>
                {SEVERITY_LIST.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field id="sig-expires" label="Expires (optional)" hint="Empty: never" errors={errors['/expires_at']}>
            {(aria) => (
              <input {...aria} type="datetime-local" value={d.expires_at} onInput={(e) => set({ expires_at: valueOf(e) })} />
            )}
          </Field>
        </div>
        <Field id="sig-description" label="Description (optional)" errors={errors['/description']}>
          {(aria) => <textarea {...aria} rows={2} value={d.description} onInput={(e) => set({ description: valueOf(e) })} />}
        </Field>
        <ScopePicker idBase="sig" scope={d.scope} errors={errors} onChange={(scope) => set({ scope })} />
        <div class="row actions">
          <button type="button" class={current ? '' : 'primary'} onClick={() => void preview()} disabled={sim.busy}>
            {sim.busy ? 'Simulating…' : current ? 'Preview again' : 'Preview impact'}
          </button>
          <button type="submit" class={current ? 'primary' : ''} disabled={!current || saving} aria-describedby="sig-save-hint">
            {saving ? 'Saving…' : creating ? 'Create signature' : 'Save changes'}
          </button>
        </div>
        <p id="sig-save-hint" class="hint">
          {current
            ? 'An active block applies above every policy, on every machine in scope, from its next fetch.'
            : 'Preview this draft first: saving is possible once you have seen what it would have done.'}
        </p>
      </form>
      <div class="preview" aria-live="polite">
        {sim.result ? (
          <>
            {!current && <p class="stale">The draft changed since this preview: preview again before saving.</p>}
            <SimulationView result={sim.result} />
          </>
        ) : (
          <p class="hint">The preview replays this draft over the last 7 days of actions, as daemons would match it.</p>
        )}
        {p.existing?.enforced && (
          <p class="hint">
            This signature is in force now, so the daemons' signature policy already holds it: in the preview its matches show as
            decided first by that policy (shadowed), not by the draft.
          </p>
        )}
      </div>
    </div>
  )
}
