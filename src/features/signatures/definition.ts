/**
 * @module features/signatures/definition
 * What a threat signature matches, checked (docs/threat-signatures.md, docs/flow-shapes.md): an
 * indicator's value as daemons will match it, or a flow shape's distribution. The create route,
 * the simulation's draft and distillation all go through it, so none accepts what another refuses.
 */
import type { Static } from '@sinclair/typebox'
import { ValidationError, type FieldError } from '../../errors.ts'
import { INVISIBLE } from '../../lib/names.ts'
import { globProblem } from '../policies/routes.ts'
import type { StoredShape } from './flow-match.ts'
import { parseShape } from './flow-shape.ts'
import type { CreateSignatureBody, INDICATOR_KINDS } from './schema.ts'

/** The loosest `max_jsd` a flow shape may have (docs/flow-shapes.md). */
export const MAX_JSD = 0.5

export const DOMAIN = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59})$/

/**
 * What the signature matches: an indicator's value, or a flow shape's distribution (each kind
 * takes its own fields only; a flow shape is matched on the server, so its action is `alert`).
 */
export function definition(
  body: Pick<
    Static<typeof CreateSignatureBody>,
    'kind' | 'value' | 'action' | 'shape' | 'max_jsd' | 'agent_types' | 'min_transitions'
  >,
): { value: string } | { shape: StoredShape; maxJsd: number } {
  const shapeFields = (['shape', 'max_jsd', 'agent_types', 'min_transitions'] as const).filter((k) => body[k] !== undefined)
  if (body.kind !== 'flow_shape') {
    if (shapeFields.length > 0) {
      throw new ValidationError(shapeFields.map((k) => ({ path: `/${k}`, message: 'only for kind flow_shape' })))
    }
    if (body.value === undefined) throw new ValidationError([{ path: '/value', message: 'required for this kind' }])
    return { value: indicator(body.kind, body.value) }
  }
  const errors: FieldError[] = []
  if (body.value !== undefined) errors.push({ path: '/value', message: 'a flow shape has no value: give `shape`' })
  if (body.action !== 'alert') {
    errors.push({ path: '/action', message: 'a flow shape is matched on the server, not by daemons: its action is `alert`' })
  }
  const parsed = parseShape({
    shape: body.shape,
    max_jsd: body.max_jsd,
    agent_types: body.agent_types,
    min_transitions: body.min_transitions,
  })
  if (!parsed.ok) errors.push(...parsed.problems.map((p) => ({ path: p.pointer, message: p.detail })))
  else if (parsed.value.maxJsd > MAX_JSD) {
    errors.push({ path: '/max_jsd', message: `at most ${MAX_JSD}: a looser shape matches ordinary sessions` })
  }
  if (errors.length > 0 || !parsed.ok) throw new ValidationError(errors)
  const v = parsed.value
  return {
    shape: { shape: v.shape, agent_types: v.agentTypes, min_transitions: v.minTransitions },
    maxJsd: v.maxJsd,
  }
}

/**
 * The value as it is matched (docs/threat-signatures.md), or a 422: what a daemon could not match
 * as it reads, or would match far more widely than it looks, is refused.
 */
export function indicator(kind: (typeof INDICATOR_KINDS)[number], raw: string): string {
  const fail = (message: string): never => {
    throw new ValidationError([{ path: '/value', message }] satisfies FieldError[])
  }
  const value = raw.trim()
  if (INVISIBLE.test(value)) fail('must not contain control, format or separator characters')
  switch (kind) {
    case 'domain': {
      const d = value.toLowerCase()
      if (!DOMAIN.test(d)) fail('a host name with a dot, without a scheme, port, path or `*` (exfil.example)')
      return d
    }
    case 'url': {
      let url: URL | null = null
      try {
        url = new URL(value)
      } catch {
        fail('an absolute http(s) URL')
      }
      if (!url || !/^https?:$/.test(url.protocol) || !DOMAIN.test(url.hostname.toLowerCase())) {
        fail('an absolute http(s) URL with a host name (not an IP address)')
      }
      // The daemon matches a host, never a path: a URL with one would block far more than it says.
      if (url!.pathname !== '/' || url!.search !== '' || url!.hash !== '') {
        fail('the daemon matches hosts, not paths: give the URL without a path, or a domain signature')
      }
      return url!.toString()
    }
    case 'mcp_tool': {
      const why = globProblem(value)
      if (why) fail(why)
      if (value.includes('*')) fail('one tool, by its exact name: no `*`')
      return value
    }
    default:
      // Matched as a substring of a call's arguments: a short value would match nearly everything.
      if (value.replace(/\*/g, '').length < 4)
        fail('at least 4 characters besides `*`: it is matched as a substring of every call')
      // The daemon drops every `*` of a condition: one inside would leave a substring that is not this one.
      if (value.slice(1, -1).includes('*'))
        fail('`*` only at the start or the end: the daemon drops it, joining what is around it')
      return value
  }
}

/**
 * What makes two signatures one (a second is a 409): an indicator's value; a flow shape's
 * normalised distribution (keys in order, weights summing to 1), agent types, minimum and bound.
 */
export function identityOf(what: { value: string } | { shape: StoredShape; maxJsd: number }): string {
  if ('value' in what) return what.value
  const { shape, agent_types, min_transitions } = what.shape
  const total = Object.values(shape).reduce((a, b) => a + b, 0)
  const weights = Object.keys(shape)
    .filter((k) => shape[k]! > 0)
    .sort()
    .map((k) => [k, Math.round((shape[k]! / total) * 1e9) / 1e9])
  const agents = [...new Set(agent_types.map((a) => a.toLowerCase()))].sort()
  return JSON.stringify([weights, agents, min_transitions, what.maxJsd])
}
