/**
 * @module features/alerts/condition
 * The per-org custom rule format stored in `alert_rules.condition`: a small JSON boolean
 * expression, documented for users in docs/alert-rules.md.
 *
 *   node  = { "all": [node, …] } | { "any": [node, …] } | { "not": node } | leaf
 *   leaf  = { "field": F, "op": O, "value": V, "case_sensitive"?: bool }
 *
 * Safe by construction: a fixed list of fields, no regular expressions (`glob` supports `*` and
 * `?` only and is matched without backtracking), and bounded size (depth, nodes, list lengths,
 * string lengths) so one org's rule cannot make evaluation slow for the consumer. A rule is
 * validated on write (TypeBox for the shape, `compileCondition` for the semantics, 422 with a
 * JSON Pointer per problem) and compiled again, once per handler call, by the alerts consumer.
 */
import { Type } from '@sinclair/typebox'
import type { FieldError } from '../../errors.ts'
import type { WireEvent } from '../../bus/bus.ts'

export const CONDITION_LIMITS = {
  depth: 6,
  nodes: 64,
  children: 32,
  inItems: 100,
  valueChars: 1024,
  globChars: 256,
  globTextChars: 64 * 1024,
}

const STRING_FIELDS = [
  'action_type',
  'action',
  'tool_name',
  'agent_key',
  'session_key',
  'decision',
  'platform',
  'source',
] as const
export const CONDITION_FIELDS = [...STRING_FIELDS, 'blocked', 'risk_score', 'arguments'] as const
export const CONDITION_OPS = [
  'eq',
  'ne',
  'in',
  'contains',
  'starts_with',
  'ends_with',
  'glob',
  'gt',
  'gte',
  'lt',
  'lte',
  'exists',
] as const
type Op = (typeof CONDITION_OPS)[number]

const LABEL_FIELD = /^labels\.([A-Za-z0-9_.:-]{1,64})$/
const FIELD_PATTERN = `^(?:${CONDITION_FIELDS.join('|')}|labels\\.[A-Za-z0-9_.:-]{1,64})$`
const STRING_OPS = new Set<Op>(['eq', 'ne', 'in', 'contains', 'starts_with', 'ends_with', 'glob', 'exists'])
const NUMBER_OPS = new Set<Op>(['eq', 'ne', 'in', 'gt', 'gte', 'lt', 'lte', 'exists'])
const BOOLEAN_OPS = new Set<Op>(['eq', 'ne', 'exists'])

export const ConditionSchema = Type.Recursive(
  (Self) =>
    Type.Object(
      {
        all: Type.Optional(
          Type.Array(Self, { minItems: 1, maxItems: CONDITION_LIMITS.children, description: 'Every child matches.' }),
        ),
        any: Type.Optional(
          Type.Array(Self, { minItems: 1, maxItems: CONDITION_LIMITS.children, description: 'At least one child matches.' }),
        ),
        not: Type.Optional(Self),
        field: Type.Optional(
          Type.String({ pattern: FIELD_PATTERN, description: `One of ${CONDITION_FIELDS.join(', ')}, or labels.<key>.` }),
        ),
        op: Type.Optional(Type.Union(CONDITION_OPS.map((o) => Type.Literal(o)))),
        value: Type.Optional(
          Type.Union([
            Type.String({ maxLength: CONDITION_LIMITS.valueChars }),
            Type.Number(),
            Type.Boolean(),
            Type.Array(Type.Union([Type.String({ maxLength: CONDITION_LIMITS.valueChars }), Type.Number()]), {
              minItems: 1,
              maxItems: CONDITION_LIMITS.inItems,
            }),
          ]),
        ),
        case_sensitive: Type.Optional(Type.Boolean({ description: 'String comparisons ignore case unless true.' })),
      },
      {
        additionalProperties: false,
        description:
          'A rule condition: exactly one of all / any / not, or a leaf {field, op, value}. Depth ≤ 6, ≤ 64 nodes. See docs/alert-rules.md.',
      },
    ),
  { $id: 'AlertRuleCondition' },
)

/** The event as rules see it; the JSON text of `arguments` is computed at most once. */
export interface EventView {
  event: WireEvent
  argumentsText?: string | null
  argumentsLower?: string | null
}

export const viewOf = (event: WireEvent): EventView => ({ event })

export type Predicate = (view: EventView) => boolean
export type Compiled = { ok: true; test: Predicate } | { ok: false; errors: FieldError[] }

type Kind = 'string' | 'number' | 'boolean'

/** Validates and compiles a condition; `base` is the JSON Pointer of the condition in the request. */
export function compileCondition(raw: unknown, base = '/condition'): Compiled {
  const errors: FieldError[] = []
  let nodes = 0
  const fail = (path: string, message: string): Predicate => {
    if (errors.length < 20) errors.push({ path, message })
    return () => false
  }

  function node(v: unknown, path: string, depth: number): Predicate {
    if (++nodes > CONDITION_LIMITS.nodes) return fail(path, `a condition has at most ${CONDITION_LIMITS.nodes} nodes`)
    if (depth > CONDITION_LIMITS.depth) return fail(path, `a condition is nested at most ${CONDITION_LIMITS.depth} levels deep`)
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return fail(path, 'must be an object')
    const o = v as Record<string, unknown>
    const keys = Object.keys(o)
    const groups = keys.filter((k) => k === 'all' || k === 'any' || k === 'not')
    if (groups.length > 1 || (groups.length === 1 && keys.length > 1)) {
      return fail(path, 'must have exactly one of all, any, not, or be a leaf {field, op, value}')
    }
    if (o.all !== undefined || o.any !== undefined) {
      const key = o.all !== undefined ? 'all' : 'any'
      const list = o[key]
      if (!Array.isArray(list) || list.length === 0 || list.length > CONDITION_LIMITS.children) {
        return fail(`${path}/${key}`, `must be an array of 1–${CONDITION_LIMITS.children} conditions`)
      }
      const children = list.map((c, i) => node(c, `${path}/${key}/${i}`, depth + 1))
      return key === 'all' ? (x) => children.every((c) => c(x)) : (x) => children.some((c) => c(x))
    }
    if (o.not !== undefined) {
      const child = node(o.not, `${path}/not`, depth + 1)
      return (x) => !child(x)
    }
    return leaf(o, path)
  }

  function leaf(o: Record<string, unknown>, path: string): Predicate {
    const unknown = Object.keys(o).find((k) => !['field', 'op', 'value', 'case_sensitive'].includes(k))
    if (unknown !== undefined) return fail(`${path}/${pointer(unknown)}`, 'is not a known condition key')
    const { field, op, value } = o
    if (typeof field !== 'string') return fail(`${path}/field`, 'is required (a string)')
    const label = LABEL_FIELD.exec(field)?.[1]
    const kind: Kind | null =
      label !== undefined || (STRING_FIELDS as readonly string[]).includes(field) || field === 'arguments'
        ? 'string'
        : field === 'risk_score'
          ? 'number'
          : field === 'blocked'
            ? 'boolean'
            : null
    if (kind === null) return fail(`${path}/field`, `must be one of ${CONDITION_FIELDS.join(', ')} or labels.<key>`)
    if (typeof op !== 'string' || !(CONDITION_OPS as readonly string[]).includes(op)) {
      return fail(`${path}/op`, `must be one of ${CONDITION_OPS.join(', ')}`)
    }
    const allowed = kind === 'string' ? STRING_OPS : kind === 'number' ? NUMBER_OPS : BOOLEAN_OPS
    if (!allowed.has(op as Op)) return fail(`${path}/op`, `${op} does not apply to ${field} (a ${kind})`)
    if (o.case_sensitive !== undefined && (typeof o.case_sensitive !== 'boolean' || kind !== 'string')) {
      return fail(`${path}/case_sensitive`, 'is a boolean, for string fields only')
    }
    const get = getter(field, label)
    const cs = o.case_sensitive === true
    const norm = (s: string) => (cs ? s : s.toLowerCase())
    const text = (x: EventView): string | null => {
      if (field !== 'arguments') return get(x) as string | null
      if (x.argumentsText === undefined) {
        const a = x.event.arguments
        x.argumentsText = a === null || a === undefined ? null : JSON.stringify(a)
      }
      if (cs || x.argumentsText === null) return x.argumentsText
      return (x.argumentsLower ??= x.argumentsText.toLowerCase())
    }
    const vpath = `${path}/value`
    switch (op as Op) {
      case 'exists': {
        if (value !== undefined && typeof value !== 'boolean') return fail(vpath, 'must be a boolean (default true)')
        const want = value !== false
        return (x) => (get(x) !== null || (field === 'arguments' && text(x) !== null)) === want
      }
      case 'eq':
      case 'ne': {
        if (typeof value !== kind) return fail(vpath, `must be a ${kind}`)
        const neg = op === 'ne'
        if (kind === 'string') {
          const want = norm(value as string)
          return (x) => {
            const t = text(x)
            return (t !== null && norm(t) === want) !== neg
          }
        }
        return (x) => (get(x) === value) !== neg
      }
      case 'in': {
        if (
          !Array.isArray(value) ||
          value.length === 0 ||
          value.length > CONDITION_LIMITS.inItems ||
          value.some((v) => typeof v !== kind)
        ) {
          return fail(vpath, `must be an array of 1–${CONDITION_LIMITS.inItems} ${kind}s`)
        }
        if (kind === 'string') {
          const set = new Set((value as string[]).map(norm))
          return (x) => {
            const t = text(x)
            return t !== null && set.has(norm(t))
          }
        }
        const set = new Set(value as number[])
        return (x) => set.has(get(x) as number)
      }
      case 'contains':
      case 'starts_with':
      case 'ends_with':
      case 'glob': {
        const max = op === 'glob' ? CONDITION_LIMITS.globChars : CONDITION_LIMITS.valueChars
        if (typeof value !== 'string' || value.length === 0 || value.length > max)
          return fail(vpath, `must be a string of 1–${max} characters`)
        const want = norm(value)
        const match =
          op === 'contains'
            ? (t: string) => t.includes(want)
            : op === 'starts_with'
              ? (t: string) => t.startsWith(want)
              : op === 'ends_with'
                ? (t: string) => t.endsWith(want)
                : (t: string) =>
                    globMatch(want, t.length > CONDITION_LIMITS.globTextChars ? t.slice(0, CONDITION_LIMITS.globTextChars) : t)
        return (x) => {
          const t = text(x)
          return t !== null && match(field === 'arguments' ? t : norm(t))
        }
      }
      default: {
        if (typeof value !== 'number' || !Number.isFinite(value)) return fail(vpath, 'must be a number')
        const cmp = {
          gt: (a: number) => a > value,
          gte: (a: number) => a >= value,
          lt: (a: number) => a < value,
          lte: (a: number) => a <= value,
        }[op as 'gt' | 'gte' | 'lt' | 'lte']
        return (x) => {
          const n = get(x)
          return typeof n === 'number' && cmp(n)
        }
      }
    }
  }

  const test = node(raw, base, 1)
  return errors.length > 0 ? { ok: false, errors } : { ok: true, test }
}

function getter(field: string, label: string | undefined): (x: EventView) => string | number | boolean | null {
  if (label !== undefined) return (x) => (Object.hasOwn(x.event.labels, label) ? (x.event.labels[label] ?? null) : null)
  switch (field) {
    case 'action_type':
      return (x) => x.event.actionType
    case 'action':
      return (x) => x.event.action
    case 'tool_name':
      return (x) => x.event.toolName
    case 'agent_key':
      return (x) => x.event.agentKey
    case 'session_key':
      return (x) => x.event.sessionKey
    case 'decision':
      return (x) => x.event.decision
    case 'platform':
      return (x) => x.event.platform
    case 'source':
      return (x) => x.event.source
    case 'blocked':
      return (x) => x.event.blocked
    case 'risk_score':
      return (x) => x.event.riskScore
    default:
      return () => null // arguments: read through its cached JSON text
  }
}

/**
 * Whole-string glob: `*` matches any run of characters (including none), `?` exactly one; no
 * escapes. Literal runs between stars are matched leftmost-first, which is exact for this
 * language and costs O(text × pattern) at worst, never exponential.
 */
export function globMatch(pattern: string, text: string): boolean {
  const parts = pattern.split('*')
  if (parts.length === 1) return pattern.length === text.length && matchAt(text, pattern, 0)
  const first = parts[0]!
  const last = parts[parts.length - 1]!
  if (first.length + last.length > text.length) return false
  if (!matchAt(text, first, 0) || !matchAt(text, last, text.length - last.length)) return false
  let pos = first.length
  const end = text.length - last.length
  for (const part of parts.slice(1, -1)) {
    if (part === '') continue
    const at = find(text, part, pos, end)
    if (at === -1) return false
    pos = at + part.length
  }
  return true
}

function matchAt(text: string, part: string, at: number): boolean {
  if (at < 0 || at + part.length > text.length) return false
  for (let i = 0; i < part.length; i++) if (part[i] !== '?' && part[i] !== text[at + i]) return false
  return true
}

/** Leftmost position ≥ from where `part` matches and ends by `end`, or -1. */
function find(text: string, part: string, from: number, end: number): number {
  if (!part.includes('?')) {
    const at = text.indexOf(part, from)
    return at !== -1 && at + part.length <= end ? at : -1
  }
  for (let at = from; at + part.length <= end; at++) if (matchAt(text, part, at)) return at
  return -1
}

function pointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1')
}
