/**
 * @module features/simulate/routes
 * `POST /v1/policies/simulate` (issue 11; docs/simulate.md): a draft policy or threat signature
 * replayed over the org's stored actions of the last N days, before anyone enforces it. It writes
 * nothing, so it needs `read`.
 *
 * The draft is checked as the create routes check it, with their own helpers (`globProblem`,
 * `scopeOf`, `requireMachines`, `indicator`, `parseShape`), and their errors re-pointed under
 * `/policy` or `/signature`: what would be refused on creation is refused here, with the pointer
 * of this body. The replay itself (daemon semantics, shadowing, bounds) is ./replay.ts.
 */
import type { Static } from '@sinclair/typebox'
import { ValidationError, type FieldError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import type { Sql } from '../../infra/db.ts'
import { INVISIBLE, requireName } from '../../lib/names.ts'
import { globProblem, requireMachines, scopeOf } from '../policies/routes.ts'
import { BLOCK_PRIORITY, compileRule, managedPolicyId, WATCH_PRIORITY } from '../signatures/compile.ts'
import { shapeOf } from '../signatures/flow-match.ts'
import { definition } from '../signatures/definition.ts'
import type { DaemonRule } from './evaluate.ts'
import { withSimulation } from './bounds.ts'
import { simulate, type PolicyDraft, type ShapeDraft } from './replay.ts'
import { SimulateBody, SimulationResult } from './schema.ts'

type Body = Static<typeof SimulateBody>

export function mountSimulate(routes: RouteRegistry, deps: { sql: Sql }): void {
  const { sql } = deps

  routes.add(
    {
      method: 'post',
      path: '/v1/policies/simulate',
      operationId: 'simulatePolicy',
      summary:
        "Replay a draft policy or threat signature over the org's stored actions of the last days: what it would have blocked, flagged or sent for approval",
      tags: ['policies'],
      permission: 'read',
      body: SimulateBody,
      responses: {
        200: { description: 'What the draft would have decided, with the daemon’s semantics', schema: SimulationResult },
        422: {
          description:
            'Invalid draft (each field by its JSON Pointer), or the window holds too many events (`simulation_too_large`: simulate fewer days)',
        },
      },
    },
    async (c, { body }) => {
      const orgId = c.get('principal').orgId
      const { draft, prefix, machineIds } = draftOf(body, orgId)
      const result = await withSimulation(sql, orgId, async (tx) => {
        await under(prefix, () => requireMachines(tx, machineIds))
        return simulate(tx, orgId, {
          draft,
          replaces: body.replaces?.toLowerCase() ?? null,
          days: body.days ?? 7,
          samples: body.samples ?? 20,
        })
      })
      return c.json(result)
    },
  )
}

interface Checked {
  draft: PolicyDraft | ShapeDraft
  /** Where the draft sits in the body: errors of the create routes' helpers are re-pointed under it. */
  prefix: '/policy' | '/signature'
  /** The scope's machines, checked against the org's inside the transaction. */
  machineIds: string[]
}

/** Exactly one draft, checked as its create route checks it (every problem of the draft at once). */
function draftOf(body: Body, orgId: string): Checked {
  if (body.policy && body.signature) {
    throw new ValidationError([{ path: '/policy', message: 'a policy or a signature, not both' }])
  }
  if (body.policy) return policyDraft(body.policy, body.replaces ?? null)
  if (body.signature) return signatureDraft(body.signature, orgId)
  throw new ValidationError([{ path: '/', message: 'give the draft: a `policy` or a `signature`' }])
}

function policyDraft(p: NonNullable<Body['policy']>, replaces: string | null): Checked {
  const errors: FieldError[] = []
  const name = p.name === undefined ? 'Draft policy' : attempt(errors, '', () => requireName(p.name!, '/policy/name'))
  if (p.description != null && INVISIBLE.test(p.description)) {
    errors.push({ path: '/policy/description', message: 'must not contain control, format or separator characters' })
  }
  p.rules.forEach((r, i) => {
    for (const field of ['tool', 'agent'] as const) {
      const value = r[field]
      const why = value === undefined ? null : globProblem(value)
      if (why) errors.push({ path: `/policy/rules/${i}/${field}`, message: why })
    }
    r.conditions?.forEach((c, j) => {
      if (INVISIBLE.test(c))
        errors.push({ path: `/policy/rules/${i}/conditions/${j}`, message: 'must not contain invisible characters' })
    })
  })
  const scope = attempt(errors, '/policy', () => scopeOf(p.scope ?? { all: true }))
  if (errors.length > 0) throw new ValidationError(errors)
  return {
    draft: {
      kind: 'policy',
      name: name!,
      enabled: p.enabled ?? true,
      priority: p.priority ?? 0,
      // As the policy is stored and served (`agent` defaults to any, `conditions` to none).
      rules: p.rules.map((r) => ({ tool: r.tool, agent: r.agent ?? '*', action: r.action, conditions: r.conditions ?? [] })),
      scope: { machine_ids: scope!.machineIds, tags: scope!.tags },
      reportedId: replaces?.toLowerCase() ?? null,
    },
    prefix: '/policy',
    machineIds: scope!.machineIds,
  }
}

function signatureDraft(s: NonNullable<Body['signature']>, orgId: string): Checked {
  const errors: FieldError[] = []
  const scope = attempt(errors, '/signature', () => scopeOf(s.scope ?? { all: true }))
  const what = attempt(errors, '/signature', () => definition(s))
  if (errors.length > 0 || !what || !scope) throw new ValidationError(errors)
  const machineIds = scope.machineIds
  const draftScope = { machine_ids: scope.machineIds, tags: scope.tags }
  if ('shape' in what) {
    const shape = shapeOf({ id: 'draft', name: 'Draft flow shape', severity: 'high', shape: what.shape, max_jsd: what.maxJsd })
    return { draft: { kind: 'flow_shape', shape, scope: draftScope }, prefix: '/signature', machineIds }
  }
  const rule: DaemonRule = compileRule({ kind: s.kind, value: what.value, action: s.action })!
  const block = s.action === 'block'
  return {
    draft: {
      kind: 'signature',
      name: 'Threat signature draft',
      enabled: true,
      // As the managed policies serve it: blocks above every policy, the others below them all.
      priority: block ? BLOCK_PRIORITY : WATCH_PRIORITY,
      rules: [rule],
      scope: draftScope,
      reportedId: managedPolicyId(orgId, block ? 'block' : 'watch'),
    },
    prefix: '/signature',
    machineIds,
  }
}

/** A ValidationError of a create route's helper, its pointers under `prefix` (`/scope/…` → `/policy/scope/…`). */
function repointed(err: unknown, prefix: string): unknown {
  if (!(err instanceof ValidationError) || prefix === '') return err
  const errors = (err.extensions.errors as FieldError[]).map((e) => ({
    path: e.path === '/' ? prefix : `${prefix}${e.path}`,
    message: e.message,
  }))
  return new ValidationError(errors, err.message)
}

/** `fn`'s value, or undefined with its ValidationError's entries (re-pointed) added to `errors`. */
function attempt<T>(errors: FieldError[], prefix: string, fn: () => T): T | undefined {
  try {
    return fn()
  } catch (err) {
    const e = repointed(err, prefix)
    if (!(e instanceof ValidationError)) throw e
    errors.push(...(e.extensions.errors as FieldError[]))
    return undefined
  }
}

async function under<T>(prefix: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw repointed(err, prefix)
  }
}
