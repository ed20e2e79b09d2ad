/**
 * @module console/ui/pages/policies-rules
 * The rules of a policy draft, in the daemon's order: the first rule whose tool and agent match
 * and (if it has conditions) one condition matches decides (SPEC §11.2).
 */
import { emptyRule, RULE_ACTIONS, type FieldErrors, type RuleDraft } from './policies-draft.ts'
import { Field, valueOf } from './policies-fields.tsx'

const ACTION_LABEL: Record<string, string> = {
  block: 'Block (refused)',
  flag: 'Flag (recorded)',
  require_approval: 'Require approval',
}

export function RulesEditor(p: { rules: RuleDraft[]; errors: FieldErrors; onChange(rules: RuleDraft[]): void }) {
  const set = (i: number, r: RuleDraft) => p.onChange(p.rules.map((x, j) => (j === i ? r : x)))
  const remove = (i: number) => {
    p.onChange(p.rules.filter((_, j) => j !== i))
    // The removed rule's button is gone: focus goes to the rules' heading, not to the page top.
    requestAnimationFrame(() => document.getElementById('rules-legend')?.focus())
  }
  const add = () => {
    p.onChange([...p.rules, emptyRule()])
    requestAnimationFrame(() => document.getElementById(`rule-${p.rules.length}-tool`)?.focus())
  }
  return (
    <fieldset class="rules">
      <legend id="rules-legend" tabIndex={-1}>
        Rules, checked in order
      </legend>
      {p.errors['/rules'] && (
        <ul class="field-error">
          {p.errors['/rules'].map((m) => (
            <li key={m}>{m}</li>
          ))}
        </ul>
      )}
      {p.rules.map((r, i) => (
        <fieldset class="rule" key={i}>
          <legend>Rule {i + 1}</legend>
          <div class="rule-grid">
            <Field
              id={`rule-${i}-tool`}
              label="Tool"
              hint="Bash, Read, mcp__server__tool, http:host.example:* … (* for any)"
              errors={p.errors[`/rules/${i}/tool`]}
            >
              {(aria) => (
                <input {...aria} value={r.tool} spellcheck={false} onInput={(e) => set(i, { ...r, tool: valueOf(e) })} />
              )}
            </Field>
            <Field id={`rule-${i}-agent`} label="Agent" hint="* for any agent" errors={p.errors[`/rules/${i}/agent`]}>
              {(aria) => (
                <input {...aria} value={r.agent} spellcheck={false} onInput={(e) => set(i, { ...r, agent: valueOf(e) })} />
              )}
            </Field>
            <Field id={`rule-${i}-action`} label="Action" errors={p.errors[`/rules/${i}/action`]}>
              {(aria) => (
                <select {...aria} value={r.action} onChange={(e) => set(i, { ...r, action: valueOf(e) as RuleDraft['action'] })}>
                  {RULE_ACTIONS.map((a) => (
                    <option key={a} value={a}>
                      {ACTION_LABEL[a]}
                    </option>
                  ))}
                </select>
              )}
            </Field>
          </div>
          <Field
            id={`rule-${i}-conditions`}
            label="Conditions (optional, one per line)"
            hint="Any one suffices: text the call's arguments contain, case-insensitive. None: tool and agent alone decide."
            errors={p.errors[`/rules/${i}/conditions`]}
          >
            {(aria) => (
              <textarea
                {...aria}
                rows={Math.min(6, Math.max(2, r.conditions.split('\n').length))}
                spellcheck={false}
                value={r.conditions}
                onInput={(e) => set(i, { ...r, conditions: valueOf(e) })}
              />
            )}
          </Field>
          {p.rules.length > 1 && (
            <button type="button" class="link" onClick={() => remove(i)}>
              Remove rule {i + 1}
            </button>
          )}
        </fieldset>
      ))}
      <button type="button" onClick={add} disabled={p.rules.length >= 100}>
        Add a rule
      </button>
    </fieldset>
  )
}
