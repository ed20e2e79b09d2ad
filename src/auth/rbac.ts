/**
 * @module auth/rbac
 * RBAC policies carried in `qt_agent_` / `qt_subagent_` tokens (SPEC §5, docs/rbac.md): parsing
 * both wire forms, the claim we emit, the deny-first six-step evaluation and the narrowing check
 * for sub-agent delegation. Pure: no I/O, no configuration.
 */
import { globMatch, subsumes, type GlobStats } from './glob.ts'

export { globMatch, subsumes, type GlobStats } from './glob.ts'

export interface RbacPolicy {
  allowed_actions: string[]
  denied_actions: string[]
  allowed_resources: string[]
  denied_resources: string[]
  /** 0 = no limit. The same value as the documented `max_sensitivity_level`. */
  sensitivity_level: number
  /** 0 = no limit. */
  max_risk_score: number
}

export interface RbacFieldError {
  /** JSON Pointer into the policy object (`/denied_actions/2`). */
  path: string
  message: string
}

export type RbacParse = { ok: true; policy: RbacPolicy } | { ok: false; errors: RbacFieldError[] }

export type RbacStepName =
  'denied_actions' | 'allowed_actions' | 'denied_resources' | 'allowed_resources' | 'sensitivity_level' | 'ALLOWED'

export type RbacDecision = {
  allowed: boolean
  step: 1 | 2 | 3 | 4 | 5 | 6
  step_name: RbacStepName
  reason: string
  pattern?: string
}

/** Limits that keep a policy small enough for a JWT claim (auth/jwt/jws caps the payload at 16 KiB). */
export const RBAC_LIMITS = {
  patternsPerList: 256,
  patternLength: 256,
  /**
   * Sum over the four lists of each pattern's size as a JSON string in UTF-8 (quotes and escapes
   * included), so that the claim stays under the JWT payload cap whatever the characters.
   */
  totalPatternBytes: 8192,
  maxSensitivity: 100,
  maxRiskScore: 100,
  /**
   * Work limit for one checkNarrowing call, in automaton state visits (~100-300 ms worst case).
   * Up to 256 × 256 pattern pairs of 256 characters could otherwise cost minutes: a token holder
   * must not be able to stall the server by asking for a sub-agent. Past it, the remaining child
   * patterns count as not covered.
   */
  narrowingOps: 4_000_000,
} as const

const LISTS = ['allowed_actions', 'denied_actions', 'allowed_resources', 'denied_resources'] as const
type ListName = (typeof LISTS)[number]
const NUMBERS = ['sensitivity_level', 'max_sensitivity_level', 'max_risk_score'] as const
const KNOWN = new Set<string>([...LISTS, ...NUMBERS])

// Control (Cc) and format (Cf: zero-width, bidi overrides, BOM) characters make patterns that
// look equal and are not; lone surrogates cannot round-trip through UTF-8 JSON.
const FORBIDDEN = /[\p{Cc}\p{Cf}]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/u

/** Why a pattern is not acceptable, or undefined when it is. */
export function patternError(pattern: string): string | undefined {
  if (pattern.length === 0) return 'must not be empty'
  if (pattern.length > RBAC_LIMITS.patternLength) return `must be at most ${RBAC_LIMITS.patternLength} characters`
  if (FORBIDDEN.test(pattern)) return 'must not contain control, format or unpaired surrogate characters'
  if (pattern.trim() !== pattern) return 'must not start or end with whitespace'
  if (pattern.includes('***')) return 'three or more consecutive `*` are ambiguous; use `*` or `**`'
  return undefined
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype
}

function readLimit(obj: Record<string, unknown>, key: string, max: number, errors: RbacFieldError[]): number | undefined {
  const v = obj[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    errors.push({ path: `/${key}`, message: `must be an integer from 0 to ${max} (0 = no limit)` })
    return undefined
  }
  return v
}

/**
 * Accepts the documented form (`max_sensitivity_level`) and the client form (`sensitivity_level`,
 * `max_risk_score`); both sensitivity names with different values is an error. Missing or null
 * lists are empty (Go clients marshal nil slices as null). Unknown members are refused: a typo
 * such as `denied_action` would otherwise silently widen the policy. Duplicates are dropped.
 */
export function parseRbac(input: unknown): RbacParse {
  if (!isPlainObject(input)) return { ok: false, errors: [{ path: '', message: 'must be a JSON object' }] }
  const errors: RbacFieldError[] = []
  for (const key of Object.keys(input)) {
    if (!KNOWN.has(key)) errors.push({ path: `/${escapePointer(key)}`, message: 'unknown RBAC field' })
  }
  const lists = {} as Record<ListName, string[]>
  let total = 0
  for (const name of LISTS) {
    const v = input[name]
    lists[name] = []
    if (v === undefined || v === null) continue
    if (!Array.isArray(v)) {
      errors.push({ path: `/${name}`, message: 'must be an array of strings' })
      continue
    }
    if (v.length > RBAC_LIMITS.patternsPerList) {
      errors.push({ path: `/${name}`, message: `must have at most ${RBAC_LIMITS.patternsPerList} patterns` })
      continue
    }
    const seen = new Set<string>()
    v.forEach((item: unknown, i: number) => {
      if (typeof item !== 'string') return errors.push({ path: `/${name}/${i}`, message: 'must be a string' })
      const problem = patternError(item)
      if (problem) return errors.push({ path: `/${name}/${i}`, message: problem })
      total += Buffer.byteLength(JSON.stringify(item), 'utf8')
      if (!seen.has(item)) lists[name].push(item)
      seen.add(item)
      return undefined
    })
  }
  if (total > RBAC_LIMITS.totalPatternBytes) {
    errors.push({ path: '', message: `patterns must total at most ${RBAC_LIMITS.totalPatternBytes} bytes (as JSON strings)` })
  }
  const client = readLimit(input, 'sensitivity_level', RBAC_LIMITS.maxSensitivity, errors)
  const documented = readLimit(input, 'max_sensitivity_level', RBAC_LIMITS.maxSensitivity, errors)
  if (client !== undefined && documented !== undefined && client !== documented) {
    errors.push({
      path: '/sensitivity_level',
      message: 'sensitivity_level and max_sensitivity_level name the same limit and must be equal when both are given',
    })
  }
  const risk = readLimit(input, 'max_risk_score', RBAC_LIMITS.maxRiskScore, errors)
  if (errors.length > 0) return { ok: false, errors }
  return {
    ok: true,
    policy: { ...lists, sensitivity_level: client ?? documented ?? 0, max_risk_score: risk ?? 0 },
  }
}

function escapePointer(key: string): string {
  return key.slice(0, 64).replace(/~/g, '~0').replace(/\//g, '~1')
}

/** The `rbac` claim: both sensitivity names (SPEC §5.1), so the proxy and the documented form agree. */
export function rbacClaim(p: RbacPolicy): Record<string, unknown> {
  return {
    allowed_actions: [...p.allowed_actions],
    denied_actions: [...p.denied_actions],
    allowed_resources: [...p.allowed_resources],
    denied_resources: [...p.denied_resources],
    sensitivity_level: p.sensitivity_level,
    max_sensitivity_level: p.sensitivity_level,
    max_risk_score: p.max_risk_score,
  }
}

/** Quoted and escaped (control characters cannot forge log lines), cut to a readable length. */
function show(v: string): string {
  return JSON.stringify(v.length > 200 ? `${v.slice(0, 200)}…` : v)
}

const firstMatch = (patterns: string[], value: string, stats?: GlobStats) => patterns.find((pat) => globMatch(pat, value, stats))

/**
 * Deny-first evaluation (SPEC §5.2), step by step as the proxy does it. A null policy allows
 * (management tokens carry none). A request sensitivity that is not a finite number ≥ 0 is denied
 * at step 5 whenever a limit is set: fail closed rather than compare NaN.
 *
 * Cost: at most ~3 · (total pattern characters + patterns) · (value length + 1) state visits, and
 * parseRbac caps the total at 8 KiB, so a hostile policy against a 512-character value stays
 * around 15 M visits (tens of ms); callers should bound action and resource lengths (≤ 512).
 */
export function evaluateRbac(
  policy: RbacPolicy | null,
  req: { action: string; resource?: string; sensitivity?: number },
  stats?: GlobStats,
): RbacDecision {
  if (policy === null) return { allowed: true, step: 6, step_name: 'ALLOWED', reason: 'no RBAC policy on this credential' }
  const { action } = req
  const resource = req.resource ?? ''

  let pat = firstMatch(policy.denied_actions, action, stats)
  if (pat !== undefined) {
    return {
      allowed: false,
      step: 1,
      step_name: 'denied_actions',
      reason: `action ${show(action)} matches denied pattern ${show(pat)}`,
      pattern: pat,
    }
  }
  const allowedBy = firstMatch(policy.allowed_actions, action, stats)
  if (policy.allowed_actions.length > 0 && allowedBy === undefined) {
    return { allowed: false, step: 2, step_name: 'allowed_actions', reason: `action ${show(action)} matches no allowed pattern` }
  }
  if (resource !== '') {
    pat = firstMatch(policy.denied_resources, resource, stats)
    if (pat !== undefined) {
      return {
        allowed: false,
        step: 3,
        step_name: 'denied_resources',
        reason: `resource ${show(resource)} matches denied pattern ${show(pat)}`,
        pattern: pat,
      }
    }
    if (policy.allowed_resources.length > 0 && firstMatch(policy.allowed_resources, resource, stats) === undefined) {
      return {
        allowed: false,
        step: 4,
        step_name: 'allowed_resources',
        reason: `resource ${show(resource)} matches no allowed pattern`,
      }
    }
  }
  const limit = policy.sensitivity_level
  if (limit > 0 && req.sensitivity !== undefined) {
    const s = req.sensitivity
    if (!Number.isFinite(s) || s < 0 || s > limit) {
      return { allowed: false, step: 5, step_name: 'sensitivity_level', reason: `sensitivity ${s} exceeds the limit ${limit}` }
    }
  }
  return {
    allowed: true,
    step: 6,
    step_name: 'ALLOWED',
    reason: allowedBy === undefined ? 'no rule denies the request' : `action ${show(action)} allowed by ${show(allowedBy)}`,
    ...(allowedBy === undefined ? {} : { pattern: allowedBy }),
  }
}

/**
 * The MCP gateway's extra check (SPEC §5.2): a computed risk score above `max_risk_score` is
 * refused when the limit is set. A score that is not a finite number is refused too.
 */
export function riskScoreAllowed(policy: RbacPolicy | null, score: number): boolean {
  if (policy === null || policy.max_risk_score === 0) return true
  return Number.isFinite(score) && score <= policy.max_risk_score
}

export type NarrowingResult = { ok: true } | { ok: false; violations: RbacFieldError[] }

/**
 * True-subset check for delegation (SPEC §5.4 recommendation, issue 4 item 2):
 * - allowed lists: an empty list means "everything". Under a non-empty parent list the child's
 *   list must be non-empty and each of its patterns subsumed by one parent pattern;
 * - denied lists: each parent pattern must be subsumed by some child pattern (child denies ⊇);
 * - numeric limits: ≤ the parent's, where 0 (unlimited) is the largest value.
 * Subsumption is checked pattern against pattern; a child pattern that only a union of parent
 * patterns covers is refused (conservative, the safe side). Work is capped by
 * RBAC_LIMITS.narrowingOps; `stats` (optional) receives the count.
 */
export function checkNarrowing(parent: RbacPolicy, child: RbacPolicy, stats: GlobStats = { ops: 0 }): NarrowingResult {
  const violations: RbacFieldError[] = []
  const start = stats.ops
  // Once over budget every further pair is "not covered": refusing is the safe answer.
  const covers = (p: string, c: string) => stats.ops - start <= RBAC_LIMITS.narrowingOps && subsumes(p, c, stats)
  const tooComplex = () => (stats.ops - start > RBAC_LIMITS.narrowingOps ? ' (or the policy is too complex to verify)' : '')
  for (const list of ['allowed_actions', 'allowed_resources'] as const) {
    const pList = parent[list]
    if (pList.length === 0) continue
    if (child[list].length === 0) {
      violations.push({
        path: `/${list}`,
        message: `an empty ${list} list allows everything; the parent allows only ${quoteList(pList)}`,
      })
      continue
    }
    child[list].forEach((pat, i) => {
      if (!pList.some((pp) => covers(pp, pat))) {
        violations.push({
          path: `/${list}/${i}`,
          message: `${show(pat)} is not covered by any parent pattern (${quoteList(pList)})${tooComplex()}`,
        })
      }
    })
  }
  for (const list of ['denied_actions', 'denied_resources'] as const) {
    for (const pp of parent[list]) {
      if (!child[list].some((cp) => covers(cp, pp))) {
        violations.push({ path: `/${list}`, message: `the parent denies ${show(pp)}; the child must deny it too${tooComplex()}` })
      }
    }
  }
  for (const key of ['sensitivity_level', 'max_risk_score'] as const) {
    const p = parent[key]
    const c = child[key]
    if (p > 0 && (c === 0 || c > p)) {
      violations.push({ path: `/${key}`, message: `must be from 1 to the parent's ${p} (0 would mean no limit)` })
    }
  }
  return violations.length === 0 ? { ok: true } : { ok: false, violations }
}

function quoteList(list: string[]): string {
  const shown = list.slice(0, 5).map(show).join(', ')
  return list.length > 5 ? `${shown}, … ${list.length - 5} more` : shown
}
