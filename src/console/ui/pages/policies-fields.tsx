/**
 * @module console/ui/pages/policies-fields
 * Form pieces the policy and signature editors share: a labelled field whose hint and errors are
 * tied to its control (`aria-describedby`, `aria-invalid`), so a screen reader hears why a value
 * was refused where it is typed; the scope picker; a summary of what fits no field.
 */
import type { ComponentChildren, VNode } from 'preact'
import { api, type Ok } from '../api/client.ts'
import { useLoad } from '../hooks.ts'
import type { FieldErrors, ScopeDraft } from './policies-draft.ts'

export interface FieldAria {
  id: string
  'aria-describedby'?: string
  'aria-invalid'?: 'true'
}

export function Field(p: {
  id: string
  label: string
  hint?: ComponentChildren
  errors?: readonly string[] | undefined
  children: (aria: FieldAria) => VNode
}) {
  const bad = (p.errors?.length ?? 0) > 0
  const described = [p.hint ? `${p.id}-hint` : null, bad ? `${p.id}-error` : null].filter(Boolean).join(' ')
  return (
    <div class={`field${bad ? ' invalid' : ''}`}>
      <label for={p.id}>{p.label}</label>
      {p.children({
        id: p.id,
        ...(described ? { 'aria-describedby': described } : {}),
        ...(bad ? { 'aria-invalid': 'true' } : {}),
      })}
      {p.hint && (
        <small id={`${p.id}-hint`} class="hint">
          {p.hint}
        </small>
      )}
      {bad && (
        <ul id={`${p.id}-error`} class="field-error">
          {p.errors!.map((m) => (
            <li key={m}>{m}</li>
          ))}
        </ul>
      )}
    </div>
  )
}

/** The value of an input event's target. */
export const valueOf = (e: Event): string => (e.currentTarget as HTMLInputElement).value

type Machine = Ok<'/v1/machines', 'get'>['machines'][number]

/** The org's machines, every page (an org has hundreds, not hundreds of thousands). */
export async function allMachines(signal?: AbortSignal, max = 2000): Promise<Machine[]> {
  const out: Machine[] = []
  let cursor: string | undefined
  do {
    const page = await api.get('/v1/machines', {
      query: { limit: 200, ...(cursor ? { cursor } : {}) },
      ...(signal ? { signal } : {}),
    })
    out.push(...page.machines)
    cursor = page.next_cursor ?? undefined
  } while (cursor && out.length < max)
  return out
}

/** Every machine, or chosen machines and tags (never an empty list meaning everyone: docs/policies.md). */
export function ScopePicker(p: { idBase: string; scope: ScopeDraft; errors: FieldErrors; onChange(s: ScopeDraft): void }) {
  const machines = useLoad((signal) => allMachines(signal), [])
  const s = p.scope
  const scopeErrors = p.errors['/scope']
  return (
    <fieldset class="scope" aria-describedby={scopeErrors ? `${p.idBase}-scope-error` : undefined}>
      <legend>Where it applies</legend>
      <label class="inline">
        <input type="radio" name={`${p.idBase}-scope`} checked={s.all} onChange={() => p.onChange({ ...s, all: true })} />
        Every machine of the organization
      </label>
      <label class="inline">
        <input type="radio" name={`${p.idBase}-scope`} checked={!s.all} onChange={() => p.onChange({ ...s, all: false })} />
        Only the machines and tags chosen below
      </label>
      {scopeErrors && (
        <ul id={`${p.idBase}-scope-error`} class="field-error">
          {scopeErrors.map((m) => (
            <li key={m}>{m}</li>
          ))}
        </ul>
      )}
      {!s.all && (
        <div class="stack">
          <fieldset class="machines">
            <legend>Machines</legend>
            {machines.error ? <p class="field-error">Machines could not be listed: {machines.error.message}</p> : null}
            {!machines.data ? null : machines.data.length === 0 ? (
              <p class="hint">No machine has registered yet: scope by tag, or to every machine.</p>
            ) : (
              <ul class="checklist">
                {machines.data.map((m) => (
                  <li key={m.id}>
                    <label class="inline">
                      <input
                        type="checkbox"
                        checked={s.machine_ids.includes(m.id)}
                        onChange={(e) =>
                          p.onChange({
                            ...s,
                            machine_ids: (e.currentTarget as HTMLInputElement).checked
                              ? [...s.machine_ids, m.id]
                              : s.machine_ids.filter((x) => x !== m.id),
                          })
                        }
                      />
                      {m.hostname ?? m.client_machine_id} <small>{m.tags.length ? `(${m.tags.join(', ')})` : ''}</small>
                    </label>
                  </li>
                ))}
              </ul>
            )}
            {p.errors['/scope/machine_ids'] && (
              <ul class="field-error">
                {p.errors['/scope/machine_ids'].map((m) => (
                  <li key={m}>{m}</li>
                ))}
              </ul>
            )}
          </fieldset>
          <Field
            id={`${p.idBase}-tags`}
            label="Tags"
            hint="Machines with any of these tags, separated by commas (set a machine's tags on the Fleet page)."
            errors={p.errors['/scope/tags']}
          >
            {(aria) => <input {...aria} value={s.tags} onInput={(e) => p.onChange({ ...s, tags: valueOf(e) })} />}
          </Field>
        </div>
      )}
    </fieldset>
  )
}

/** Problems that name no field of the form (or the whole body), above the form. */
export function OtherErrors({ errors }: { errors: readonly { path?: string; message: string }[] }) {
  if (errors.length === 0) return null
  return (
    <ul class="field-error">
      {errors.map((e) => (
        <li key={`${e.path}:${e.message}`}>
          {e.path ? <code>{e.path}</code> : null} {e.message}
        </li>
      ))}
    </ul>
  )
}
