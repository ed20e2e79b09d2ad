import { describe, expect, test } from 'bun:test'
import {
  checkNarrowing,
  evaluateRbac,
  globMatch,
  parseRbac,
  RBAC_LIMITS,
  rbacClaim,
  riskScoreAllowed,
  subsumes,
  type RbacPolicy,
} from './rbac.ts'

const policy = (over: Partial<RbacPolicy> = {}): RbacPolicy => ({
  allowed_actions: [],
  denied_actions: [],
  allowed_resources: [],
  denied_resources: [],
  sensitivity_level: 0,
  max_risk_score: 0,
  ...over,
})

function parsed(input: unknown): RbacPolicy {
  const r = parseRbac(input)
  if (!r.ok) throw new Error(JSON.stringify(r.errors))
  return r.policy
}
function errorPaths(input: unknown): string[] {
  const r = parseRbac(input)
  if (r.ok) throw new Error('expected errors')
  return r.errors.map((e) => e.path)
}

describe('parseRbac', () => {
  test('documented form (SPEC §5.1) → max_sensitivity_level becomes sensitivity_level', () => {
    expect(
      parsed({
        allowed_actions: ['data:read:*', 'code:review:*'],
        denied_actions: ['data:write:*'],
        allowed_resources: ['repo:*'],
        denied_resources: [],
        max_sensitivity_level: 3,
      }),
    ).toEqual(
      policy({
        allowed_actions: ['data:read:*', 'code:review:*'],
        denied_actions: ['data:write:*'],
        allowed_resources: ['repo:*'],
        sensitivity_level: 3,
      }),
    )
  })

  test('client form (sensitivity_level, max_risk_score; Go nil slices as null)', () => {
    expect(
      parsed({
        allowed_actions: null,
        denied_actions: null,
        allowed_resources: [],
        denied_resources: ['secret:*'],
        sensitivity_level: 3,
        max_risk_score: 75,
      }),
    ).toEqual(policy({ denied_resources: ['secret:*'], sensitivity_level: 3, max_risk_score: 75 }))
  })

  test('both sensitivity names: equal is fine, different is an error', () => {
    expect(parsed({ sensitivity_level: 2, max_sensitivity_level: 2 }).sensitivity_level).toBe(2)
    expect(errorPaths({ sensitivity_level: 2, max_sensitivity_level: 3 })).toEqual(['/sensitivity_level'])
  })

  test('empty object → the allow-all policy; duplicates are dropped', () => {
    expect(parsed({})).toEqual(policy())
    expect(parsed({ denied_actions: ['a', 'b', 'a'] }).denied_actions).toEqual(['a', 'b'])
  })

  test.each([
    ['not an object', null, ['']],
    ['an array', [], ['']],
    ['a string', 'data:*', ['']],
    ['unknown field (typo)', { denied_action: ['x'] }, ['/denied_action']],
    ['pointer-escaped unknown field', { 'a/b~c': 1 }, ['/a~1b~0c']],
    ['list not an array', { allowed_actions: 'data:*' }, ['/allowed_actions']],
    ['non-string item', { denied_actions: ['ok', 5] }, ['/denied_actions/1']],
    ['empty pattern', { allowed_resources: [''] }, ['/allowed_resources/0']],
    ['too long pattern', { allowed_actions: ['a'.repeat(RBAC_LIMITS.patternLength + 1)] }, ['/allowed_actions/0']],
    ['control character', { allowed_actions: ['data:\nread'] }, ['/allowed_actions/0']],
    ['NUL', { allowed_actions: ['data\u0000'] }, ['/allowed_actions/0']],
    ['zero-width space', { denied_actions: ['data:\u200bwrite'] }, ['/denied_actions/0']],
    ['bidi override', { denied_actions: ['\u202edata'] }, ['/denied_actions/0']],
    ['lone surrogate', { denied_actions: ['data:\ud800'] }, ['/denied_actions/0']],
    ['surrounding whitespace', { denied_actions: [' data:*'] }, ['/denied_actions/0']],
    ['three stars', { allowed_actions: ['mcp:***'] }, ['/allowed_actions/0']],
    ['too many patterns', { denied_resources: Array.from({ length: 257 }, (_, i) => `r${i}`) }, ['/denied_resources']],
    ['too many bytes in total', { allowed_actions: Array.from({ length: 40 }, (_, i) => `${i}:${'x'.repeat(250)}`) }, ['']],
    ['sensitivity not an integer', { sensitivity_level: 2.5 }, ['/sensitivity_level']],
    ['sensitivity negative', { max_sensitivity_level: -1 }, ['/max_sensitivity_level']],
    ['sensitivity too large', { max_sensitivity_level: 101 }, ['/max_sensitivity_level']],
    ['sensitivity as string', { sensitivity_level: '3' }, ['/sensitivity_level']],
    ['risk score too large', { max_risk_score: 101 }, ['/max_risk_score']],
    ['risk score NaN-ish', { max_risk_score: Number.NaN }, ['/max_risk_score']],
  ] as const)('refuses %s', (_name, input, paths) => {
    expect(errorPaths(input)).toEqual([...paths])
  })

  test('reports every error at once', () => {
    expect(errorPaths({ bogus: 1, allowed_actions: [1, ''], max_risk_score: -5 })).toEqual([
      '/bogus',
      '/allowed_actions/0',
      '/allowed_actions/1',
      '/max_risk_score',
    ])
  })

  test('a prototype-polluting or class instance input is refused', () => {
    expect(parseRbac(JSON.parse('{"__proto__": {"x": 1}}')).ok).toBe(false)
    expect(parseRbac(new Date()).ok).toBe(false)
  })

  test('accepts Unicode and astral characters, the limits exactly', () => {
    const p = parsed({
      allowed_actions: ['mcp:😀:*', 'a'.repeat(RBAC_LIMITS.patternLength)],
      denied_actions: Array.from({ length: RBAC_LIMITS.patternsPerList }, (_, i) => `d${i}`),
      sensitivity_level: 100,
      max_risk_score: 100,
    })
    expect(p.allowed_actions).toHaveLength(2)
    expect(p.denied_actions).toHaveLength(256)
  })
})

describe('rbacClaim', () => {
  test('emits both sensitivity names and round-trips through parseRbac', () => {
    const p = policy({ allowed_actions: ['a:*'], sensitivity_level: 3, max_risk_score: 70 })
    const claim = rbacClaim(p)
    expect(claim).toEqual({
      allowed_actions: ['a:*'],
      denied_actions: [],
      allowed_resources: [],
      denied_resources: [],
      sensitivity_level: 3,
      max_sensitivity_level: 3,
      max_risk_score: 70,
    })
    expect(parsed(JSON.parse(JSON.stringify(claim)))).toEqual(p)
  })

  test('copies the lists (mutating the claim does not touch the policy)', () => {
    const p = policy({ denied_actions: ['x'] })
    ;(rbacClaim(p).denied_actions as string[]).push('y')
    expect(p.denied_actions).toEqual(['x'])
  })

  test('the largest policies fit the JWT payload cap (16 KiB base64url) with 1 KiB to spare', () => {
    const fits = (input: unknown) => {
      const claim = JSON.stringify(rbacClaim(parsed(input)))
      expect(Buffer.from(claim).toString('base64url').length).toBeLessThan(15 * 1024)
    }
    // Many short patterns (per-item overhead), 3-byte characters, characters JSON must escape.
    const lists = (make: (i: number) => string, n: number) => ({
      allowed_actions: Array.from({ length: n }, (_, i) => make(i)),
      denied_actions: Array.from({ length: n }, (_, i) => make(i + n)),
      allowed_resources: Array.from({ length: n }, (_, i) => make(i + 2 * n)),
      denied_resources: Array.from({ length: n }, (_, i) => make(i + 3 * n)),
      sensitivity_level: 100,
      max_risk_score: 100,
    })
    fits(lists((i) => String(i), 256))
    fits(lists((i) => `${i}${'界'.repeat(170)}`.slice(0, 170), 4))
    fits(lists((i) => `${i}${'"\\'.repeat(60)}`, 8))
    expect(parseRbac(lists((i) => `${i}${'界'.repeat(170)}`.slice(0, 170), 5)).ok).toBe(false)
    expect(parseRbac(lists((i) => `${i}${'"'.repeat(250)}`, 5)).ok).toBe(false)
  })
})

describe('evaluateRbac: deny-first six steps (SPEC §5.2)', () => {
  const p = policy({
    allowed_actions: ['data:read:*', 'mcp:github:**'],
    denied_actions: ['data:read:secrets', 'mcp:github:*.delete'],
    allowed_resources: ['repo:myorg/*'],
    denied_resources: ['repo:myorg/private*'],
    sensitivity_level: 3,
  })

  test.each([
    // [action, resource, sensitivity, allowed, step, step_name, pattern]
    ['data:read:secrets', undefined, undefined, false, 1, 'denied_actions', 'data:read:secrets'],
    ['mcp:github:repo.delete', 'repo:myorg/a', 0, false, 1, 'denied_actions', 'mcp:github:*.delete'],
    ['data:write:x', undefined, undefined, false, 2, 'allowed_actions', undefined],
    ['data:read:x:y', undefined, undefined, false, 2, 'allowed_actions', undefined], // `*` is one segment
    ['DATA:read:x', undefined, undefined, false, 2, 'allowed_actions', undefined],
    ['data:read:x', 'repo:myorg/private-1', undefined, false, 3, 'denied_resources', 'repo:myorg/private*'],
    ['data:read:x', 'repo:other/x', undefined, false, 4, 'allowed_resources', undefined],
    ['data:read:x', 'repo:myorg/a', 4, false, 5, 'sensitivity_level', undefined],
    ['data:read:x', 'repo:myorg/a', 3, true, 6, 'ALLOWED', 'data:read:*'],
    ['data:read:x', undefined, undefined, true, 6, 'ALLOWED', 'data:read:*'], // no resource: steps 3-4 skipped
    ['data:read:x', '', 1, true, 6, 'ALLOWED', 'data:read:*'], // empty resource = none
    ['mcp:github:a:b', 'repo:myorg/a', 0, true, 6, 'ALLOWED', 'mcp:github:**'],
  ] as const)(
    '%p on %p (sensitivity %p) → allowed=%p at step %p %p',
    (action, resource, sensitivity, allowed, step, stepName, pattern) => {
      const d = evaluateRbac(p, {
        action,
        ...(resource === undefined ? {} : { resource }),
        ...(sensitivity === undefined ? {} : { sensitivity }),
      })
      expect(d.allowed).toBe(allowed)
      expect(d.step).toBe(step)
      expect(d.step_name).toBe(stepName)
      expect(d.pattern).toBe(pattern)
      expect(d.reason.length).toBeGreaterThan(0)
    },
  )

  test('deny wins over allow at every level', () => {
    const both = policy({ allowed_actions: ['**'], denied_actions: ['**'] })
    expect(evaluateRbac(both, { action: 'x' }).step).toBe(1)
    const res = policy({ allowed_resources: ['**'], denied_resources: ['**'] })
    expect(evaluateRbac(res, { action: 'x', resource: 'r' }).step).toBe(3)
  })

  test('null policy allows at step 6; empty policy allows everything', () => {
    expect(evaluateRbac(null, { action: 'anything', resource: 'r', sensitivity: 99 })).toMatchObject({
      allowed: true,
      step: 6,
      step_name: 'ALLOWED',
    })
    expect(evaluateRbac(policy(), { action: 'a:b:c', resource: 'r', sensitivity: 99 })).toMatchObject({ allowed: true, step: 6 })
  })

  test('sensitivity: 0 = no limit; a policy parsed from either name limits the same way', () => {
    expect(evaluateRbac(policy(), { action: 'a', sensitivity: 1000 }).allowed).toBe(true)
    for (const form of [{ sensitivity_level: 2 }, { max_sensitivity_level: 2 }]) {
      const pol = parsed(form)
      expect(evaluateRbac(pol, { action: 'a', sensitivity: 2 }).allowed).toBe(true)
      expect(evaluateRbac(pol, { action: 'a', sensitivity: 3 })).toMatchObject({
        allowed: false,
        step: 5,
        step_name: 'sensitivity_level',
      })
    }
  })

  test('sensitivity that is not a finite number ≥ 0 fails closed when a limit is set', () => {
    const pol = policy({ sensitivity_level: 2 })
    for (const s of [Number.NaN, Number.POSITIVE_INFINITY, -1]) {
      expect(evaluateRbac(pol, { action: 'a', sensitivity: s })).toMatchObject({ allowed: false, step: 5 })
    }
  })

  test('the reason names the value and the pattern', () => {
    const d = evaluateRbac(p, { action: 'data:read:secrets' })
    expect(d.reason).toContain('data:read:secrets')
  })
})

describe('riskScoreAllowed', () => {
  test('0 = no limit; above the limit or not finite → refused', () => {
    expect(riskScoreAllowed(null, 100)).toBe(true)
    expect(riskScoreAllowed(policy(), 100)).toBe(true)
    const pol = policy({ max_risk_score: 75 })
    expect(riskScoreAllowed(pol, 75)).toBe(true)
    expect(riskScoreAllowed(pol, 75.5)).toBe(false)
    expect(riskScoreAllowed(pol, Number.NaN)).toBe(false)
  })
})

describe('checkNarrowing (sub-agent must be a true subset)', () => {
  const parent = policy({
    allowed_actions: ['data:read:*', 'mcp:github:*'],
    denied_actions: ['data:read:secrets'],
    allowed_resources: ['repo:myorg/**'],
    denied_resources: ['repo:myorg/private:**'],
    sensitivity_level: 3,
    max_risk_score: 70,
  })
  const ok = policy({
    allowed_actions: ['data:read:public', 'mcp:github:list*'],
    denied_actions: ['data:read:secrets', 'mcp:github:delete'],
    allowed_resources: ['repo:myorg/app:*'],
    denied_resources: ['repo:myorg/private:**'],
    sensitivity_level: 2,
    max_risk_score: 70,
  })
  const violations = (child: RbacPolicy, par: RbacPolicy = parent) => {
    const r = checkNarrowing(par, child)
    return r.ok ? [] : r.violations.map((v) => v.path)
  }

  test('a proper narrowing passes; so does an identical copy', () => {
    expect(checkNarrowing(parent, ok)).toEqual({ ok: true })
    expect(checkNarrowing(parent, parent)).toEqual({ ok: true })
  })

  test.each([
    ['superset pattern', { allowed_actions: ['data:*:*'] }, ['/allowed_actions/0']],
    ['wildcard widening (* → **)', { allowed_actions: ['mcp:github:**'] }, ['/allowed_actions/0']],
    ['case look-alike', { allowed_actions: ['Data:read:public'] }, ['/allowed_actions/0']],
    ['Unicode look-alike', { allowed_actions: ['dаta:read:public'] }, ['/allowed_actions/0']],
    ['second pattern outside', { allowed_actions: ['data:read:x', 'code:run:*'] }, ['/allowed_actions/1']],
    ['empty allow-list = everything', { allowed_actions: [] }, ['/allowed_actions']],
    ['resource escalation', { allowed_resources: ['repo:**'] }, ['/allowed_resources/0']],
    ['empty resource allow-list', { allowed_resources: [] }, ['/allowed_resources']],
    ['dropped parent deny', { denied_actions: ['mcp:github:delete'] }, ['/denied_actions']],
    ['narrower deny than parent', { denied_resources: ['repo:myorg/private:a'] }, ['/denied_resources']],
    ['sensitivity raised', { sensitivity_level: 4 }, ['/sensitivity_level']],
    ['sensitivity unlimited', { sensitivity_level: 0 }, ['/sensitivity_level']],
    ['risk score raised', { max_risk_score: 71 }, ['/max_risk_score']],
    ['risk score unlimited', { max_risk_score: 0 }, ['/max_risk_score']],
  ] as const)('refuses %s, with the path', (_name, over, paths) => {
    expect(violations({ ...ok, ...over } as RbacPolicy)).toEqual([...paths])
  })

  test('a broader deny than the parent is fine (denies more)', () => {
    expect(violations({ ...ok, denied_actions: ['data:read:**'], allowed_actions: ['mcp:github:x'] })).toEqual([])
  })

  test('every violation is reported at once', () => {
    const bad = policy({ allowed_actions: ['**'], allowed_resources: ['**'] })
    expect(violations(bad)).toEqual([
      '/allowed_actions/0',
      '/allowed_resources/0',
      '/denied_actions',
      '/denied_resources',
      '/sensitivity_level',
      '/max_risk_score',
    ])
  })

  test('an unrestricted parent (empty lists, 0 limits) allows any child', () => {
    expect(checkNarrowing(policy(), policy({ allowed_actions: ['**'], sensitivity_level: 9 }))).toEqual({ ok: true })
    expect(checkNarrowing(policy(), policy())).toEqual({ ok: true })
  })

  test('a child covered only by the union of two parent patterns is refused (conservative)', () => {
    const par = policy({ allowed_actions: ['a:*', 'a:*:**'] })
    expect(violations(policy({ allowed_actions: ['a:**'] }), par)).toEqual(['/allowed_actions/0'])
  })

  test('grandchild narrowing chains: each step checked against its own parent', () => {
    const child = ok
    const grandchild = policy({ ...ok, allowed_actions: ['data:read:public'], sensitivity_level: 1 })
    expect(checkNarrowing(child, grandchild)).toEqual({ ok: true })
    expect(checkNarrowing(child, { ...grandchild, allowed_actions: ['mcp:github:delete'] }).ok).toBe(false)
  })

  test('256 × 256 patterns finish with bounded work', () => {
    const par = policy({ allowed_actions: Array.from({ length: 256 }, (_, i) => `p${i}:*a*a*a*:**`) })
    const child = policy({ allowed_actions: Array.from({ length: 256 }, (_, i) => `p${255 - i}:*a*a*a*a:**`) })
    const stats = { ops: 0 }
    expect(checkNarrowing(par, child, stats)).toEqual({ ok: true })
    expect(stats.ops).toBeLessThan(RBAC_LIMITS.narrowingOps)
  })

  test('a hostile 256 × 256 policy is refused within the work limit, never minutes', () => {
    // Every pair passes the cheap head/tail filter and costs a full automaton run.
    const gen = (c: string) => Array.from({ length: 256 }, (_, i) => `*${`${c}*`.repeat(120)}${i}*`)
    const par = policy({ allowed_actions: gen('a') })
    const child = policy({ allowed_actions: gen('b') })
    const stats = { ops: 0 }
    const r = checkNarrowing(par, child, stats)
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.violations).toHaveLength(256)
      expect(r.violations.at(-1)!.message).toContain('too complex')
    }
    // The limit is checked between pairs, so it can be passed by at most one pair's work.
    expect(stats.ops).toBeLessThan(RBAC_LIMITS.narrowingOps + 1_000_000)
  })
})

test('re-exports the glob functions', () => {
  expect(globMatch('a:*', 'a:b')).toBe(true)
  expect(subsumes('a:**', 'a:*')).toBe(true)
})

test('evaluating the largest hostile policy stays within its documented cost bound', () => {
  // 8 KiB of `*a*a…` patterns (the parse limit) against a 512-character value of `a`s.
  const hostile = Array.from({ length: 15 }, (_, i) => `*${'a*'.repeat(126)}${i % 10}`)
  const pol = parsed({ allowed_actions: hostile, allowed_resources: hostile })
  const value = 'a'.repeat(512)
  const stats = { ops: 0 }
  expect(evaluateRbac(pol, { action: value, resource: value }, stats)).toMatchObject({ allowed: false, step: 2 })
  const patternChars = hostile.reduce((n, s) => n + s.length + 1, 0)
  expect(stats.ops).toBeLessThanOrEqual(3 * patternChars * (value.length + 1))
})
