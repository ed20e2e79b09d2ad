import { describe, expect, test } from 'bun:test'
import {
  compileEvaluator,
  conditionMatches,
  daemonGlob,
  type DaemonAction,
  type DaemonPolicy,
  type DaemonRule,
  type Decision,
} from './evaluate.ts'

const ALLOW: Decision = { action: 'allow', policyId: null, policyName: null, ruleIndex: -1 }

const rule = (tool: string, action: DaemonAction, extra: Partial<DaemonRule> = {}): DaemonRule => ({
  tool,
  agent: '*',
  action,
  conditions: [],
  ...extra,
})

const policy = (id: string, priority: number, rules: DaemonRule[], enabled = true): DaemonPolicy => ({
  id,
  name: `name of ${id}`,
  enabled,
  priority,
  rules,
})

const hit = (id: string, ruleIndex: number, action: DaemonAction): Decision => ({
  action,
  policyId: id,
  policyName: `name of ${id}`,
  ruleIndex,
})

describe('daemonGlob', () => {
  test.each([
    // TestGlobMatch in the daemon's enforcement_test.go
    ['', 'anything', true],
    ['*', 'anything', true],
    ['Bash', 'Bash', true],
    ['Bash', 'bash', true],
    ['bash', 'BASH', true],
    ['Bash', 'Read', false],
    ['api.*', 'api.github.com:POST./repos', true],
    ['api.*', 'cdn.example.com', false],
    ['*.github.com*', 'api.github.com:POST./repos', true],
    ['*Bar', 'FooBar', true],
    ['*bar', 'FooBar', true],
    ['*Bar', 'FooBaz', false],
    ['*github*', 'api.github.com:POST./repos', true],
    ['*github*', 'example.com', false],
    ['*mid*', 'prefix-mid-suffix', true],
    ['*mid*', 'nomatch', false],
    // The quirks a simulation must reproduce
    ['', '', true],
    ['*', '', true],
    ['a*b', 'a*b', true], // a star inside is literal
    ['a*b', 'axb', false],
    ['http:exfil.example:*', 'http:exfil.example:POST.upload', true],
    ['http:exfil.example:*', 'http:sub.exfil.example:POST.upload', false],
    ['http:*.exfil.example:*', 'http:api.exfil.example:GET.x', false], // prefix `http:*.exfil.example:`
    ['**', 'anything', false], // Go's contains case needs len > 2: `**` is the prefix `*`
    ['**', '*anything', true],
    ['***', 'a*b', true], // contains `*`
    ['***', 'ab', false],
    ['*x', 'x', true],
    ['x*', 'x', true],
    ['*x*', 'x', true],
    [' bash', 'bash', false], // nothing is trimmed
    ['bash ', 'BASH ', true],
  ])('%p ~ %p → %p', (pattern, value, expected) => {
    expect(daemonGlob(pattern, value)).toBe(expected)
  })

  test("folds case as Go's strings.ToLower, not as JS toLowerCase", () => {
    expect(daemonGlob('İSTANBUL', 'istanbul')).toBe(true) // Go: İ → i; JS: İ → i̇
    expect(daemonGlob('istanbul', 'İstanbul')).toBe(true)
    expect(daemonGlob('i\u0307stanbul', 'İstanbul')).toBe(false)
    expect(daemonGlob('ΟΔΟΣ', 'οδοσ')).toBe(true) // Go: Σ → σ always; JS: ς at the end of a word
    expect(daemonGlob('ΟΔΟΣ', 'οδος')).toBe(false)
    expect(daemonGlob('*ΟΣ ΚΑΙ*', 'x οσ και y')).toBe(true)
    expect(daemonGlob('\u212a', 'k')).toBe(true) // Kelvin sign: both fold it
    expect(daemonGlob('ÀΩЖ', 'àωж')).toBe(true)
    // Newer than Go's Unicode 15 tables: the daemon leaves them, also amid letters it folds.
    for (const c of ['\u1c89', '\ua7cb', '\ua7dc', '\u{10d50}', '\u{16eb8}']) {
      expect([c, daemonGlob(c, c.toLowerCase())]).toEqual([c, false])
      expect([c, daemonGlob(`A${c}B`, `a${c}b`)]).toEqual([c, true])
    }
    expect(daemonGlob('\ud800', '\udc00')).toBe(true) // lone surrogates: both U+FFFD, as Go decodes them
  })

  test("Bun's case tables are the ones the Go exceptions were derived from", () => {
    // evaluate.ts lists the letters Bun (ICU 78, Unicode 17) folds and Go (Unicode 15) does not,
    // found by comparing Go's unicode.CaseRanges with Bun over every code point. When Bun's tables
    // change this count moves: compare again and update that list.
    let folded = 0
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue
      const s = String.fromCodePoint(cp)
      if (s.toLowerCase() !== s) folded++
    }
    expect(folded).toBe(1488)
  })

  test('stays linear on long inputs', () => {
    const as = 'a'.repeat(200_000)
    expect(daemonGlob(`*${'a'.repeat(50_000)}*`, `${as}b`)).toBe(true)
    expect(daemonGlob(`*${'a'.repeat(50_000)}b*`, as)).toBe(false)
    expect(daemonGlob(`${'a'.repeat(50_000)}b*`, as)).toBe(false)
    expect(daemonGlob(`*b${'a'.repeat(50_000)}`, as)).toBe(false)
    expect(conditionMatches(`${'a'.repeat(50_000)}*b`, as)).toBe(false)
    const evaluate = compileEvaluator([policy('p', 0, [rule(`*${'A'.repeat(20_000)}B*`, 'block', { conditions: ['x'] })])])
    expect(evaluate(as, as, as)).toEqual(ALLOW)
  })
})

describe('conditionMatches', () => {
  test.each([
    // TestMatchesAnyCondition in the daemon's enforcement_test.go, one condition at a time
    ['/etc/passwd', '{"command":"cat /etc/passwd"}', true],
    ['/etc/*', '{"command":"cat /etc/shadow"}', true],
    ['rm -rf', '{"command":"rm -rf /"}', true],
    ['secret', '{"key":"not-here"}', false],
    ['test', '', false],
    // Quirks
    ['RM -RF', '{"command":"rm -rf /"}', true],
    ['/etc/*', '{"command":"cat /etc"}', false],
    ['a*b', '{"x":"ab"}', true], // every star removed: `ab`
    ['*', '{"x":1}', false], // stars only: never
    ['**', '{"x":1}', false],
    ['', '{"x":1}', true], // strings.Contains(x, "")
    ['', '', false], // empty arguments never match
    [' x', '{"a":"x"}', false], // not trimmed
  ])('%p in %p → %p', (condition, args, expected) => {
    expect(conditionMatches(condition, args)).toBe(expected)
  })
})

describe('compileEvaluator', () => {
  // TestEnforcerEvaluate in the daemon's enforcement_test.go
  const evaluate = compileEvaluator([
    policy('pol-1', 100, [rule('Bash', 'block', { conditions: ['rm -rf'] }), rule('Bash', 'flag')]),
    policy('pol-2', 50, [rule('*', 'block', { agent: 'test-agent' })]),
    policy('pol-disabled', 200, [rule('*', 'block')], false),
  ])

  test.each([
    ['Bash', 'some-agent', '{"command":"rm -rf /tmp"}', hit('pol-1', 0, 'block')],
    ['Bash', 'some-agent', '{"command":"ls"}', hit('pol-1', 1, 'flag')],
    ['Read', 'some-agent', '{}', ALLOW],
    ['Read', 'test-agent', '{}', hit('pol-2', 0, 'block')],
    ['Write', 'other-agent', '{}', ALLOW], // the disabled policy is skipped
  ])('%p by %p with %p', (tool, agent, args, expected) => {
    expect(evaluate(tool, agent, args)).toEqual(expected)
  })

  test('the higher priority wins even when listed later', () => {
    const evaluate = compileEvaluator([policy('low', 10, [rule('Bash', 'flag')]), policy('high', 100, [rule('Bash', 'block')])])
    expect(evaluate('Bash', 'agent', '')).toEqual(hit('high', 0, 'block'))
  })

  test('equal priorities keep the order given', () => {
    const a = policy('a', 5, [rule('*', 'flag')])
    const b = policy('b', 5, [rule('*', 'block')])
    expect(compileEvaluator([a, b])('x', 'y', '{}')).toEqual(hit('a', 0, 'flag'))
    expect(compileEvaluator([b, a])('x', 'y', '{}')).toEqual(hit('b', 0, 'block'))
  })

  test('the first matching rule in array order wins within a policy', () => {
    const evaluate = compileEvaluator([
      policy('p', 0, [rule('Read', 'block'), rule('*', 'require_approval'), rule('Bash', 'block')]),
    ])
    expect(evaluate('bash', 'a', '{}')).toEqual(hit('p', 1, 'require_approval'))
    expect(evaluate('READ', 'a', '{}')).toEqual(hit('p', 0, 'block'))
  })

  test('conditions are OR-ed, need arguments, and a condition of stars never matches', () => {
    const evaluate = compileEvaluator([
      policy('p', 0, [
        rule('*', 'block', { conditions: ['nope', '/etc/*'] }),
        rule('*', 'flag', { conditions: ['*'] }),
        rule('*', 'require_approval', { conditions: [''] }),
      ]),
      policy('q', -1, [rule('*', 'flag')]),
    ])
    expect(evaluate('Bash', 'a', '{"command":"cat /ETC/hosts"}')).toEqual(hit('p', 0, 'block'))
    expect(evaluate('Bash', 'a', '{"command":"ls"}')).toEqual(hit('p', 2, 'require_approval'))
    expect(evaluate('Bash', 'a', '')).toEqual(hit('q', 0, 'flag'))
  })

  test('no policies, or nothing matching, allows', () => {
    expect(compileEvaluator([])('Bash', 'agent', '{"command":"rm -rf /"}')).toEqual(ALLOW)
    expect(compileEvaluator([policy('p', 0, [rule('Read', 'block')])])('Bash', 'a', '{}')).toEqual(ALLOW)
  })
})

// ---------------------------------------------------------------------------------------------
// Property test against a model transliterated from enforcement.go, sharing no code with the
// module: its own case folding (a table enough for the generator's alphabet), its own substring
// search, Go's insertion sort (what sort.Slice runs on up to 12 policies).

const BASE = ['a', 'b', 'A', '*', ':', '.', 'x']
const EXOTIC = ['İ', 'i', 'Σ', 'σ', 'ς']
const MODEL_LOWER: Record<string, string> = { A: 'a', B: 'b', X: 'x', İ: 'i', Σ: 'σ' }
const ACTIONS: DaemonAction[] = ['block', 'flag', 'require_approval']

function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Counts = Record<string, number>
const bump = (counts: Counts, key: string) => {
  counts[key] = (counts[key] ?? 0) + 1
}

function modelLower(s: string): string {
  let out = ''
  for (const c of s) out += MODEL_LOWER[c] ?? c
  return out
}

function modelContains(haystack: string, needle: string): boolean {
  for (let i = 0; i + needle.length <= haystack.length; i++) {
    if (haystack.slice(i, i + needle.length) === needle) return true
  }
  return false
}

function modelGlob(pattern: string, value: string, seen: Counts): boolean {
  if (pattern === '' || pattern === '*') {
    bump(seen, 'glob:any')
    return true
  }
  const p = modelLower(pattern)
  const v = modelLower(value)
  const first = p[0]
  const last = p[p.length - 1]
  let form: string
  let ok: boolean
  if (first === '*' && last === '*' && p.length > 2) {
    form = 'contains'
    ok = modelContains(v, p.slice(1, p.length - 1))
  } else if (last === '*') {
    form = p === '**' ? 'starstar' : 'prefix'
    const prefix = p.slice(0, p.length - 1)
    ok = v.length >= prefix.length && v.slice(0, prefix.length) === prefix
  } else if (first === '*') {
    form = 'suffix'
    const suffix = p.slice(1)
    ok = v.length >= suffix.length && v.slice(v.length - suffix.length) === suffix
  } else {
    form = p.slice(1, -1).includes('*') ? 'inner-star' : 'exact'
    ok = p === v
  }
  bump(seen, `glob:${form}:${ok}`)
  return ok
}

function modelAnyCondition(conditions: string[], args: string, seen: Counts): boolean {
  if (args === '') {
    bump(seen, 'cond:empty-args')
    return false
  }
  const a = modelLower(args)
  for (const condition of conditions) {
    const c = modelLower(condition)
    if (c.split('').some((ch) => ch === '*')) {
      const fixed = c.split('*').join('')
      if (fixed === '') bump(seen, 'cond:stars-only')
      else if (modelContains(a, fixed)) {
        bump(seen, 'cond:star-match')
        return true
      }
    } else if (modelContains(a, c)) {
      bump(seen, c === '' ? 'cond:empty-match' : 'cond:plain-match')
      return true
    }
  }
  bump(seen, 'cond:no-match')
  return false
}

function modelEvaluate(policies: DaemonPolicy[], tool: string, agent: string, args: string, seen: Counts): Decision {
  const sorted = policies.slice()
  for (let i = 1; i < sorted.length; i++) {
    for (let j = i; j > 0 && sorted[j]!.priority > sorted[j - 1]!.priority; j--) {
      const t = sorted[j]!
      sorted[j] = sorted[j - 1]!
      sorted[j - 1] = t
    }
  }
  for (const p of sorted) {
    if (!p.enabled) continue
    for (let i = 0; i < p.rules.length; i++) {
      const r = p.rules[i]!
      if (!modelGlob(r.tool, tool, seen)) continue
      if (!modelGlob(r.agent, agent, seen)) continue
      if (r.conditions.length > 0 && !modelAnyCondition(r.conditions, args, seen)) continue
      // A tie that decided: an equal-priority policy later in the order would have matched too.
      const later = sorted.slice(sorted.indexOf(p) + 1).filter((o) => o.enabled && o.priority === p.priority)
      if (later.some((o) => modelEvaluate([o], tool, agent, args, {}).action !== 'allow')) bump(seen, 'tie-decided')
      return { action: r.action, policyId: p.id, policyName: p.name, ruleIndex: i }
    }
  }
  return { action: 'allow', policyId: null, policyName: null, ruleIndex: -1 }
}

function generator(seed: number) {
  const rand = mulberry32(seed)
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1))
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
  const char = () => (rand() < 0.08 ? pick(EXOTIC) : pick(BASE))
  const word = (max: number) => Array.from({ length: int(0, max) }, char).join('')
  const glob = (): string => {
    const w = word(3)
    switch (int(0, 9)) {
      case 0:
        return pick(['', '*', '**', '***'])
      case 1:
        return `*${w}*`
      case 2:
        return `${w}*`
      case 3:
        return `*${w}`
      case 4:
        return `${w}*${word(2)}`
      default:
        return word(4)
    }
  }
  const policies = (): DaemonPolicy[] =>
    Array.from({ length: int(0, 6) }, (_, i) => ({
      id: `p${i}`,
      name: `policy ${i}`,
      enabled: rand() < 0.8,
      priority: pick([-1, 0, 0, 1, 1, 2, 5]),
      rules: Array.from({ length: int(0, 4) }, () => ({
        tool: glob(),
        agent: rand() < 0.5 ? pick(['', '*']) : glob(),
        action: pick(ACTIONS),
        conditions: Array.from({ length: rand() < 0.5 ? 0 : int(1, 3) }, () => (rand() < 0.15 ? pick(['', '*', '**']) : word(3))),
      })),
    }))
  const input = () => ({ tool: word(5), agent: word(4), args: rand() < 0.1 ? '' : word(10) })
  return { policies, input, word }
}

describe('property: compileEvaluator agrees with a transliteration of the daemon', () => {
  const SEED = 0x51a7e
  const CASES = 5000

  test(`${CASES} random policy sets, seed ${SEED}`, () => {
    const seen: Counts = {}
    const outcomes: Counts = {}
    for (let n = 0; n < CASES; n++) {
      const caseSeed = SEED + n
      const gen = generator(caseSeed)
      const policies = gen.policies()
      const evaluate = compileEvaluator(policies)
      for (let k = 0; k < 4; k++) {
        const { tool, agent, args } = gen.input()
        const got = evaluate(tool, agent, args)
        const want = modelEvaluate(policies, tool, agent, args, seen)
        bump(outcomes, want.action)
        if (!Bun.deepEquals(got, want)) {
          expect({ caseSeed, k, policies, tool, agent, args, decision: got }).toEqual({
            caseSeed,
            k,
            policies,
            tool,
            agent,
            args,
            decision: want,
          })
        }
      }
      // The single-pattern functions too, on the same alphabet.
      const [pattern, value, condition, args] = [gen.word(4), gen.word(5), gen.word(3), gen.word(8)]
      const globWant = modelGlob(pattern, value, {})
      const condWant = modelAnyCondition([condition], args, {})
      if (daemonGlob(pattern, value) !== globWant || conditionMatches(condition, args) !== condWant) {
        expect({
          caseSeed,
          pattern,
          value,
          glob: daemonGlob(pattern, value),
          condition,
          args,
          cond: conditionMatches(condition, args),
        }).toEqual({
          caseSeed,
          pattern,
          value,
          glob: globWant,
          condition,
          args,
          cond: condWant,
        })
      }
    }

    // Not vacuous: every outcome and every branch of the daemon's code was taken.
    for (const action of ['allow', ...ACTIONS]) expect([action, (outcomes[action] ?? 0) > 0]).toEqual([action, true])
    const branches = [
      'glob:any',
      ...['contains', 'prefix', 'suffix', 'exact', 'inner-star', 'starstar'].flatMap((f) => [
        `glob:${f}:true`,
        `glob:${f}:false`,
      ]),
      'cond:empty-args',
      'cond:stars-only',
      'cond:star-match',
      'cond:empty-match',
      'cond:plain-match',
      'cond:no-match',
      'tie-decided',
    ]
    for (const branch of branches) expect([branch, (seen[branch] ?? 0) > 0]).toEqual([branch, true])
  })
})
