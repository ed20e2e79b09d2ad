/**
 * @module http/text-guard
 * Text Postgres cannot store, refused at the door of every route (issue 14): a NUL character
 * (`text` refuses the byte, `jsonb` the `\u0000` escape) or an unpaired UTF-16 surrogate (no UTF-8
 * form; `jsonb` refuses it too). Passed through, either one failed the whole statement and the
 * request answered 500. The route registry runs `unstorableText` on every validated path, query
 * and body value; the error names each offending value by its JSON Pointer.
 *
 * The walk follows the schema, not just the value: positions the schema leaves open (`Unknown`,
 * undeclared extra properties) are free-form content that the handler owns and cleans or refuses
 * itself (machine graph `nodes` are stored cleaned, RBAC policies refuse such patterns, extra
 * fields of the SPEC-compatible bodies are ignored or cleaned). Everything the schema declares a
 * string is checked here, whatever route it belongs to.
 */
import { Kind, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { FieldError } from '../errors.ts'

// Code-unit based, for TypeBox `pattern`s (compiled without the `u` flag): a surrogate only as
// part of a pair, and no NUL. For free-text fields of bodies a route reads itself.
export const STORABLE_TEXT_PATTERN = '^(?:[^\\u0000\\ud800-\\udfff]|[\\ud800-\\udbff][\\udc00-\\udfff])*$'

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Why `s` cannot be stored, or undefined when it can. */
export function textProblem(s: string): string | undefined {
  if (s.includes('\u0000')) return 'must not contain the NUL character (U+0000)'
  if (LONE_SURROGATE.test(s)) return 'must not contain an unpaired UTF-16 surrogate (invalid Unicode)'
  return undefined
}

/** Deeper than this (only a recursive schema can be) is refused rather than walked. */
const MAX_DEPTH = 128
const MAX_ERRORS = 20

const escape = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1')

/**
 * Every string of `value` that the schema declares a string (object keys of records included)
 * and that Postgres cannot store, as field errors (at most 20). `value` has already passed the
 * schema; `references` are the schemas a `Ref`/`This` may name.
 */
export function unstorableText(schema: TSchema, value: unknown, references: TSchema[] = []): FieldError[] {
  const errors: FieldError[] = []
  const refs = new Map<string, TSchema>()
  for (const r of references) if (typeof r.$id === 'string') refs.set(r.$id, r)

  const flag = (path: string, message: string) => {
    if (errors.length < MAX_ERRORS) errors.push({ path: path || '/', message })
  }

  const walk = (s: TSchema, v: unknown, path: string, depth: number): void => {
    if (errors.length >= MAX_ERRORS || v === undefined) return
    if (depth > MAX_DEPTH) return flag(path, `is nested deeper than ${MAX_DEPTH} levels`)
    if (typeof s.$id === 'string' && !refs.has(s.$id)) refs.set(s.$id, s)
    switch (s[Kind]) {
      case 'String': {
        if (typeof v !== 'string') return
        const problem = textProblem(v)
        if (problem) flag(path, problem)
        return
      }
      case 'Object': {
        if (v === null || typeof v !== 'object' || Array.isArray(v)) return
        const props = (s.properties ?? {}) as Record<string, TSchema>
        const extra = typeof s.additionalProperties === 'object' ? (s.additionalProperties as TSchema) : undefined
        for (const [k, child] of Object.entries(v)) {
          const own = Object.hasOwn(props, k) ? props[k] : undefined
          const childSchema = own ?? extra
          // Undeclared extra properties are the handler's business (module comment).
          if (!childSchema) continue
          if (!own) {
            const problem = textProblem(k)
            if (problem) flag(`${path}/${escape(k)}`, `property name ${problem}`)
          }
          walk(childSchema, child, `${path}/${escape(k)}`, depth + 1)
        }
        return
      }
      case 'Record': {
        if (v === null || typeof v !== 'object' || Array.isArray(v)) return
        const [valueSchema] = Object.values((s.patternProperties ?? {}) as Record<string, TSchema>)
        for (const [k, child] of Object.entries(v)) {
          const problem = textProblem(k)
          if (problem) flag(`${path}/${escape(k)}`, `property name ${problem}`)
          if (valueSchema) walk(valueSchema, child, `${path}/${escape(k)}`, depth + 1)
        }
        return
      }
      case 'Array': {
        if (!Array.isArray(v)) return
        v.forEach((item, i) => walk(s.items as TSchema, item, `${path}/${i}`, depth + 1))
        return
      }
      case 'Tuple': {
        if (!Array.isArray(v)) return
        const items = (s.items ?? []) as TSchema[]
        v.forEach((item, i) => items[i] && walk(items[i]!, item, `${path}/${i}`, depth + 1))
        return
      }
      case 'Union': {
        // The variant the value is an instance of; the value passed the union, so one is.
        const all = [...refs.values()]
        const variant = (s.anyOf as TSchema[]).find((x) => Value.Check(x, all, v))
        if (variant) walk(variant, v, path, depth)
        return
      }
      case 'Intersect': {
        for (const x of s.allOf as TSchema[]) walk(x, v, path, depth)
        return
      }
      case 'This':
      case 'Ref': {
        const target = refs.get(s.$ref as string)
        if (target) walk(target, v, path, depth + 1)
        return
      }
      default:
        // Literals cannot hold such text (the schema fixed their value); Unknown/Any: see the module comment.
        return
    }
  }

  walk(schema, value, '', 0)
  return errors
}
