/**
 * @module console/ui/pages/policies-draft
 * A policy as the editor holds it (strings, as typed), turned into the API's body, checked for
 * the mistakes the daemon would silently misread, and prefilled from an alert. The API checks
 * everything again (docs/policies.md); the hints here only save a round trip, and say why in
 * the daemon's terms.
 */
import type { Body, Ok } from '../api/client.ts'

export type PolicyBody = Body<'/v1/policies', 'post'>
export type Policy = Ok<'/v1/policies/{id}', 'get'>
export type AlertDetail = Ok<'/v1/alerts/{id}', 'get'>
export type RuleAction = PolicyBody['rules'][number]['action']
export const RULE_ACTIONS: readonly RuleAction[] = ['block', 'flag', 'require_approval']

export interface RuleDraft {
  tool: string
  agent: string
  action: RuleAction
  /** One condition per line (a condition may hold spaces, never a line break). */
  conditions: string
}

export interface ScopeDraft {
  all: boolean
  machine_ids: string[]
  /** Comma- or space-separated. */
  tags: string
}

export interface PolicyDraft {
  name: string
  description: string
  enabled: boolean
  priority: string
  rules: RuleDraft[]
  scope: ScopeDraft
}

/** JSON Pointer (as the API's `errors[].path`) → messages. */
export type FieldErrors = Record<string, string[]>

/** The highest priority an org's own policy may have: above every other policy it wrote. */
export const TOP_PRIORITY = 1_000_000
const TAG = /^[a-z0-9][a-z0-9_.:-]{0,62}$/

export const emptyRule = (): RuleDraft => ({ tool: '', agent: '*', action: 'block', conditions: '' })

export const emptyDraft = (): PolicyDraft => ({
  name: '',
  description: '',
  enabled: true,
  priority: '0',
  rules: [emptyRule()],
  scope: { all: true, machine_ids: [], tags: '' },
})

const lines = (s: string) => s.split('\n').filter((l) => l !== '')
const tagsOf = (s: string) => s.split(/[\s,]+/).filter(Boolean)

export function scopeBody(s: ScopeDraft): NonNullable<PolicyBody['scope']> {
  if (s.all) return { all: true }
  const tags = tagsOf(s.tags)
  return { ...(s.machine_ids.length ? { machine_ids: s.machine_ids } : {}), ...(tags.length ? { tags } : {}) }
}

export function toBody(d: PolicyDraft): PolicyBody {
  return {
    name: d.name.trim(),
    description: d.description.trim() === '' ? null : d.description,
    enabled: d.enabled,
    priority: Number(d.priority),
    rules: d.rules.map((r) => {
      const conditions = lines(r.conditions)
      return {
        tool: r.tool,
        ...(r.agent === '' ? {} : { agent: r.agent }),
        action: r.action,
        ...(conditions.length ? { conditions } : {}),
      }
    }),
    scope: scopeBody(d.scope),
  }
}

export function fromPolicy(p: Policy): PolicyDraft {
  return {
    name: p.name,
    description: p.description ?? '',
    enabled: p.enabled,
    priority: String(p.priority),
    rules: p.rules.map((r) => ({
      tool: r.tool,
      agent: r.agent ?? '*',
      action: r.action,
      conditions: (r.conditions ?? []).join('\n'),
    })),
    scope: { all: p.scope.all, machine_ids: [...p.scope.machine_ids], tags: p.scope.tags.join(', ') },
  }
}

/** "every machine", "2 machines and tags ci, prod". */
export const scopeText = (s: Policy['scope']): string =>
  s.all
    ? 'every machine'
    : [
        s.machine_ids.length ? `${s.machine_ids.length} machine${s.machine_ids.length === 1 ? '' : 's'}` : '',
        s.tags.length ? `tags ${s.tags.join(', ')}` : '',
      ]
        .filter(Boolean)
        .join(' and ')

/** A glob the daemon reads as written: `*` only at an end, nothing to trim (SPEC §11.2). */
function globProblem(v: string, required: boolean): string | null {
  if (v === '') return required ? 'required: a tool name, * for any, or http:{domain}:*' : null
  if (v.length > 256) return 'at most 256 characters'
  if (v.trim() !== v) return 'no white space at either end: the daemon does not trim it, so it would never match'
  if (v.replace(/^\*+|\*+$/g, '').includes('*')) {
    return 'a * only at the start or end: the daemon matches a * in the middle literally'
  }
  return null
}

/** The hints: what the API would refuse, said before asking it. */
export function check(d: PolicyDraft): FieldErrors {
  const e: FieldErrors = {}
  const add = (path: string, message: string) => (e[path] ??= []).push(message)
  const name = d.name.trim()
  if (name === '') add('/name', 'required: what the policy is for, as people will read it')
  else if (name.length > 200) add('/name', 'at most 200 characters')
  if (d.description.length > 2000) add('/description', 'at most 2000 characters')
  const priority = Number(d.priority)
  if (d.priority.trim() === '' || !Number.isInteger(priority) || Math.abs(priority) > TOP_PRIORITY) {
    add('/priority', `a whole number from -${TOP_PRIORITY.toLocaleString()} to ${TOP_PRIORITY.toLocaleString()}`)
  }
  if (d.rules.length === 0) add('/rules', 'at least one rule')
  if (d.rules.length > 100) add('/rules', 'at most 100 rules')
  d.rules.forEach((r, i) => {
    const tool = globProblem(r.tool, true)
    if (tool) add(`/rules/${i}/tool`, tool)
    const agent = globProblem(r.agent, false)
    if (agent) add(`/rules/${i}/agent`, agent)
    const conditions = lines(r.conditions)
    if (conditions.length > 50) add(`/rules/${i}/conditions`, 'at most 50 conditions')
    const long = conditions.findIndex((c) => c.length > 512)
    if (long >= 0) add(`/rules/${i}/conditions`, `condition ${long + 1} is longer than 512 characters`)
    if (conditions.some((c) => c.replaceAll('*', '') === '')) {
      add(`/rules/${i}/conditions`, 'a condition of stars only never matches (the daemon removes every `*`)')
    }
  })
  if (!d.scope.all) {
    const tags = tagsOf(d.scope.tags)
    if (d.scope.machine_ids.length === 0 && tags.length === 0) {
      add('/scope', 'choose at least one machine or tag, or every machine')
    }
    const bad = tags.filter((t) => !TAG.test(t))
    if (bad.length) add('/scope/tags', `not a tag: ${bad.join(', ')} (lower case letters, digits and _ . : -)`)
  }
  return e
}

/**
 * Files the API's `errors[]` under the editor's fields: each path goes to the longest field
 * pointer that contains it (`/rules/0/conditions/3` → `/rules/0/conditions`); `prefix` is the
 * simulation's `/policy` or `/signature`. What fits no field is returned for the summary.
 */
export function fileErrors(
  errors: readonly { path?: string; message: string }[] | undefined,
  fields: readonly string[],
  prefix = '',
): { fields: FieldErrors; other: { path?: string; message: string }[] } {
  const out: FieldErrors = {}
  const other: { path?: string; message: string }[] = []
  for (const err of errors ?? []) {
    let path = err.path ?? ''
    if (prefix && (path === prefix || path.startsWith(`${prefix}/`))) path = path.slice(prefix.length)
    const field = fields.filter((f) => path === f || path.startsWith(`${f}/`)).sort((a, b) => b.length - a.length)[0]
    if (field) (out[field] ??= []).push(err.message)
    else other.push(err)
  }
  return { fields: out, other }
}

export const policyFields = (d: PolicyDraft): string[] => [
  '/name',
  '/description',
  '/priority',
  '/enabled',
  '/rules',
  '/scope',
  '/scope/machine_ids',
  '/scope/tags',
  ...d.rules.flatMap((_, i) => [`/rules/${i}/tool`, `/rules/${i}/agent`, `/rules/${i}/action`, `/rules/${i}/conditions`]),
]

const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null)

/** What the alert matched on, as a condition: the text as it appears inside the arguments JSON. */
function conditionOf(a: AlertDetail): string | null {
  const args = a.event?.arguments
  const fromArgs =
    args && typeof args === 'object' && !Array.isArray(args)
      ? (['command', 'cmd', 'file_path', 'path', 'url'] as const)
          .map((k) => str((args as Record<string, unknown>)[k]))
          .find(Boolean)
      : null
  const raw = str(a.context.detail) ?? fromArgs ?? null
  if (!raw) return null
  // Escaped as JSON text (quotes, backslashes), since conditions match the raw arguments JSON.
  return JSON.stringify(raw.slice(0, 400)).slice(1, -1)
}

/**
 * A block of what the alert saw: its tool (an HTTP action becomes its host's `http:{host}:*`),
 * its agent, the command, path or host it matched, on its machine (or every machine).
 */
export function fromAlert(a: AlertDetail): PolicyDraft {
  const action = str(a.context.action) ?? a.event?.action ?? null
  const http = action?.startsWith('http:') ? action.split(':')[1] : null
  const tool = http ? `http:${http}:*` : (str(a.context.tool_name) ?? a.event?.tool_name ?? '*')
  const condition = http ? null : conditionOf(a)
  const where = a.machine ? (a.machine.hostname ?? a.machine.id) : 'every machine'
  return {
    name: `Block: ${a.title.slice(0, 140)} (${where.slice(0, 50)})`,
    description: `Made from alert ${a.id} (${a.rule_key}) of ${a.created_at}.`,
    enabled: true,
    priority: '100',
    rules: [{ tool, agent: a.agent_key ?? '*', action: 'block', conditions: condition ?? '' }],
    scope: a.machine_id ? { all: false, machine_ids: [a.machine_id], tags: '' } : { all: true, machine_ids: [], tags: '' },
  }
}

/** Everything one agent does, refused, above every other policy of the org. */
export function blockAgent(agent: string, alertId?: string): PolicyDraft {
  return {
    name: `Block agent ${agent}`.slice(0, 200),
    description: alertId ? `Blocks every tool call of agent ${agent}; made from alert ${alertId}.` : '',
    enabled: true,
    priority: String(TOP_PRIORITY),
    rules: [{ tool: '*', agent, action: 'block', conditions: '' }],
    scope: { all: true, machine_ids: [], tags: '' },
  }
}
