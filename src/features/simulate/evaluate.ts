/**
 * @module features/simulate/evaluate
 * The daemon's cloud-policy evaluator, re-implemented so that `POST /v1/policies/simulate`
 * (issue 11) replays stored actions with exactly the decisions a fleet would have made (SPEC
 * §11.2). A simulator that is "nearly" the daemon is worse than none: it would approve a policy
 * that blocks what it was not meant to, or miss what it was.
 *
 * Transliterated from the public daemon, Quint-Security/proxy `internal/cloud/enforcement.go`
 * (`Enforcer.Update`, `Evaluate`, `globMatch`, `matchesAnyCondition`), its quirks included:
 * - a glob's `*` counts only at an end: `a*b` is compared literally, and `**` is a prefix
 *   pattern (values starting with `*`), since Go's contains case needs `len > 2`;
 * - nothing is trimmed; an empty glob matches anything, like `*`;
 * - conditions are OR-ed substrings of the raw arguments JSON, never matched when it is empty;
 *   a condition with `*`s has them all removed, and one of stars only never matches, while an
 *   empty condition (no star) matches any non-empty arguments (`strings.Contains(x, "")`);
 * - the first matching rule of the first enabled policy in priority order wins; no match allows.
 *
 * Case folding is Go's `strings.ToLower`: `unicode.ToLower` rune by rune, from Unicode 15 tables
 * (Go 1.21 on; the daemon's go.mod says 1.24; later Go's 15.1 tables fold alike). JS
 * `toLowerCase` differs: it maps `İ` to `i̇` (two code units) where Go gives `i`, a word-final `Σ`
 * to `ς` where Go always gives `σ`, and Bun's ICU (Unicode 17) folds letters Go's tables do not
 * have yet (listed below: found by comparing Go's `CaseRanges` with Bun over every code point;
 * the test trips when Bun's tables change). Lone surrogates become U+FFFD, as Go's JSON decoding
 * would have made them.
 *
 * Ties in priority: Go's `sort.Slice` is not stable, but its pdqsort leaves a slice that is
 * already in order untouched (insertion sort up to 12 elements; beyond, an ascending hint and a
 * `partialInsertionSort` that finds nothing to move), and the document we serve is in priority
 * order already (`policyDocument`). So equal priorities are taken in the order given, by a stable
 * sort: the daemon's own order for what we serve. Callers pass policies in served order (an
 * unsorted list of more than 12 with ties could be ordered otherwise by the daemon).
 */

export type DaemonAction = 'block' | 'flag' | 'require_approval'

/** As the daemon decodes it: an absent `agent` is `''` and absent `conditions` are `[]` (Go's zero values). */
export interface DaemonRule {
  tool: string
  agent: string
  action: DaemonAction
  conditions: string[]
}

export interface DaemonPolicy {
  id: string
  name: string
  enabled: boolean
  priority: number
  rules: DaemonRule[]
}

export interface Decision {
  action: DaemonAction | 'allow'
  policyId: string | null
  policyName: string | null
  ruleIndex: number
}

/**
 * Letters Bun lower-cases that are newer than Go's Unicode 15 tables, so the daemon leaves them
 * as they are: U+1C89, U+A7CB…U+A7DC (some), Garay U+10D50–U+10D65, U+16EA0–U+16EB8.
 */
const HAS_GO_UNKNOWN = /[\u1c89\ua7cb\ua7cc\ua7ce\ua7d2\ua7d4\ua7da\ua7dc\u{10d50}-\u{10d65}\u{16ea0}-\u{16eb8}]/u
const GO_KNOWN_RUNS = /[^\u1c89\ua7cb\ua7cc\ua7ce\ua7d2\ua7d4\ua7da\ua7dc\u{10d50}-\u{10d65}\u{16ea0}-\u{16eb8}]+/gu

/** Go's `strings.ToLower`. Σ is mapped first so that no final-sigma context is left for JS to see. */
function goLower(s: string): string {
  const w = s.toWellFormed().replaceAll('\u0130', 'i').replaceAll('\u03a3', '\u03c3')
  return HAS_GO_UNKNOWN.test(w) ? w.replace(GO_KNOWN_RUNS, (run) => run.toLowerCase()) : w.toLowerCase()
}

type Glob = { kind: 'any' } | { kind: 'contains' | 'prefix' | 'suffix' | 'exact'; needle: string }

const ANY: Glob = { kind: 'any' }

/** `globMatch`'s branches in its order; the pattern is lower-cased once, here. */
function compileGlob(pattern: string): Glob {
  if (pattern === '' || pattern === '*') return ANY
  const p = goLower(pattern)
  if (p.length > 2 && p.startsWith('*') && p.endsWith('*')) return { kind: 'contains', needle: p.slice(1, -1) }
  if (p.endsWith('*')) return { kind: 'prefix', needle: p.slice(0, -1) }
  if (p.startsWith('*')) return { kind: 'suffix', needle: p.slice(1) }
  return { kind: 'exact', needle: p }
}

/** `value` already lower-cased. */
function globMatches(glob: Glob, value: string): boolean {
  switch (glob.kind) {
    case 'any':
      return true
    case 'contains':
      return value.includes(glob.needle)
    case 'prefix':
      return value.startsWith(glob.needle)
    case 'suffix':
      return value.endsWith(glob.needle)
    case 'exact':
      return value === glob.needle
  }
}

/** The substring a condition stands for, or null for one made of stars only (never matches). */
function compileCondition(condition: string): string | null {
  const c = goLower(condition)
  if (!c.includes('*')) return c
  const fixed = c.replaceAll('*', '')
  return fixed === '' ? null : fixed
}

/** The daemon's `globMatch(pattern, value)`. */
export function daemonGlob(pattern: string, value: string): boolean {
  const glob = compileGlob(pattern)
  return glob.kind === 'any' || globMatches(glob, goLower(value))
}

/** One condition of the daemon's `matchesAnyCondition`. */
export function conditionMatches(condition: string, argsJson: string): boolean {
  if (argsJson === '') return false
  const needle = compileCondition(condition)
  return needle !== null && goLower(argsJson).includes(needle)
}

interface CompiledRule {
  tool: Glob
  agent: Glob
  /** null: the rule has no conditions. Empty: it has some, none of which can match. */
  needles: string[] | null
  action: DaemonAction
  index: number
}

interface CompiledPolicy {
  id: string
  name: string
  rules: CompiledRule[]
}

function compileRule(rule: DaemonRule, index: number): CompiledRule {
  return {
    tool: compileGlob(rule.tool),
    agent: compileGlob(rule.agent),
    needles: rule.conditions.length === 0 ? null : rule.conditions.map(compileCondition).filter((n): n is string => n !== null),
    action: rule.action,
    index,
  }
}

/** Pre-sorts and pre-lowercases once; the returned function is what a simulation calls per stored action. */
export function compileEvaluator(
  policies: readonly DaemonPolicy[],
): (toolName: string, agentName: string, argsJson: string) => Decision {
  // Disabled policies are skipped by the daemon after sorting; dropping them first leaves the
  // relative order of the others unchanged under a stable sort.
  const ordered: CompiledPolicy[] = policies
    .map((policy, order) => ({ policy, order }))
    .filter(({ policy }) => policy.enabled)
    .sort((a, b) =>
      a.policy.priority !== b.policy.priority ? (a.policy.priority > b.policy.priority ? -1 : 1) : a.order - b.order,
    )
    .map(({ policy }) => ({ id: policy.id, name: policy.name, rules: policy.rules.map(compileRule) }))

  return (toolName, agentName, argsJson) => {
    const tool = goLower(toolName)
    const agent = goLower(agentName)
    // The arguments can be large and most rules have no conditions: lower-cased on first need.
    let args: string | null = null
    for (const policy of ordered) {
      for (const rule of policy.rules) {
        if (!globMatches(rule.tool, tool) || !globMatches(rule.agent, agent)) continue
        if (rule.needles !== null) {
          if (argsJson === '') continue
          const lowered = (args ??= goLower(argsJson))
          if (!rule.needles.some((needle) => lowered.includes(needle))) continue
        }
        return { action: rule.action, policyId: policy.id, policyName: policy.name, ruleIndex: rule.index }
      }
    }
    return { action: 'allow', policyId: null, policyName: null, ruleIndex: -1 }
  }
}
