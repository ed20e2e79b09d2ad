/**
 * @module auth/glob
 * The RBAC pattern language (docs/rbac.md) and two questions about it: does a pattern match a
 * value, and does one pattern match everything another one does (subsumption, for sub-agent
 * narrowing).
 *
 * Language: `*` matches any run of characters except `:` (one segment or part of one), `**` (any
 * run of two or more stars) matches any run including `:`; every other character is literal and
 * compared by UTF-16 code unit: no case folding, no Unicode normalisation, no escapes.
 *
 * Both questions are answered by simulating a non-deterministic automaton over the pattern, one
 * set of live states per input symbol, so the cost is at most O(|pattern| · |value|) whatever the
 * pattern (no backtracking: `*a*a*a*…b` against `aaaa…` stays polynomial). Callers that want to
 * prove that may pass a `stats` object, which counts the state visits.
 */

/** Token codes: a literal is its UTF-16 code unit (≥ 0). */
const STAR = -1
const DSTAR = -2
const COLON = 58

export interface GlobStats {
  /** Automaton state visits; at most ~3·(|pattern| + 1)·(|value| + 1) for a match. */
  ops: number
}

type Tokens = Int32Array

// Compiled patterns are reused on the hot path (the same few policy patterns against every
// request); the cache is bounded and simply dropped when full, patterns are cheap to recompile.
const CACHE_MAX = 4096
const cache = new Map<string, Tokens>()

function compile(pattern: string): Tokens {
  const hit = cache.get(pattern)
  if (hit) return hit
  const out: number[] = []
  for (let i = 0; i < pattern.length;) {
    const c = pattern.charCodeAt(i)
    if (c !== 42) {
      out.push(c)
      i++
      continue
    }
    let run = 0
    while (i < pattern.length && pattern.charCodeAt(i) === 42) {
      run++
      i++
    }
    out.push(run === 1 ? STAR : DSTAR)
  }
  const tokens = Int32Array.from(out)
  if (cache.size >= CACHE_MAX) cache.clear()
  cache.set(pattern, tokens)
  return tokens
}

/**
 * Can pattern token `tok` consume text symbol `sym`? Text symbols are code units (a value) or, when
 * asking about subsumption, the child pattern's own tokens: a child `*` can only be consumed by a
 * parent `*` or `**`, a child `**` only by a parent `**`. That keeps the simulation sound.
 */
function consumes(tok: number, sym: number): boolean {
  if (tok === DSTAR) return true
  if (tok === STAR) return sym === STAR || (sym >= 0 && sym !== COLON)
  return tok === sym
}

/**
 * Runs the pattern automaton over `text` (a string, or child tokens). State `i` means "next is
 * token i"; state `m` accepts. Stars loop on themselves and may be skipped (ε to i + 1).
 */
function accepts(tokens: Tokens, text: string | Tokens, stats?: GlobStats): boolean {
  const m = tokens.length
  const n = text.length
  let cur = new Int32Array(m + 1)
  let nxt = new Int32Array(m + 1)
  const seen = new Int32Array(m + 1).fill(-1)
  let ops = 0
  let curLen = 0
  let nxtLen = 0

  // Adds state s and its ε-closure to `nxt` under generation `gen`.
  const add = (s: number, gen: number) => {
    for (;;) {
      ops++
      if (seen[s] === gen) return
      seen[s] = gen
      nxt[nxtLen++] = s
      if (s === m || tokens[s]! >= 0) return
      s++
    }
  }

  add(0, 0)
  ;[cur, nxt] = [nxt, cur]
  curLen = nxtLen
  for (let p = 0; p < n; p++) {
    const sym = typeof text === 'string' ? text.charCodeAt(p) : text[p]!
    nxtLen = 0
    for (let k = 0; k < curLen; k++) {
      ops++
      const s = cur[k]!
      if (s === m) continue
      const tok = tokens[s]!
      if (!consumes(tok, sym)) continue
      add(tok < 0 ? s : s + 1, p + 1)
    }
    ;[cur, nxt] = [nxt, cur]
    curLen = nxtLen
    if (curLen === 0) break
  }
  if (stats) stats.ops += ops
  for (let k = 0; k < curLen; k++) if (cur[k] === m) return true
  return false
}

function hasStar(tokens: Tokens): boolean {
  return tokens.some((t) => t < 0)
}

/** True when `value` is in the pattern's language (docs/rbac.md §Patterns). */
export function globMatch(pattern: string, value: string, stats?: GlobStats): boolean {
  if (pattern === value) return true
  if (!pattern.includes('*')) return false
  return accepts(compile(pattern), value, stats)
}

/**
 * True only when every string `child` matches is also matched by `parent`. Sound (never true
 * when it is not so) and complete within a work budget; beyond the budget the answer is `false`,
 * the safe side for narrowing.
 */
export function subsumes(parent: string, child: string, stats?: GlobStats): boolean {
  if (parent === child) return true
  const p = compile(parent)
  const c = compile(child)
  if (!hasStar(c)) return globMatch(parent, child, stats)
  if (!hasStar(p)) return false // a literal cannot cover a child that has a wildcard
  if (!literalEndsCompatible(p, c)) return false
  // Fast path: the parent "matches" the child read as symbols. Sound, and enough in practice.
  if (accepts(p, c, stats)) return true
  return includesExactly(p, c, stats)
}

/**
 * Necessary condition, checked first because it rules out nearly every pair cheaply: the parent's
 * literal head must be a prefix of the child's literal head (the child may put a character the
 * parent never names right after its head), and the same for the tails.
 */
function literalEndsCompatible(p: Tokens, c: Tokens): boolean {
  const pHead = p.findIndex((t) => t < 0)
  const cHead = c.findIndex((t) => t < 0)
  if (pHead > cHead) return false
  for (let i = 0; i < pHead; i++) if (p[i] !== c[i]) return false
  let pi = p.length - 1
  let ci = c.length - 1
  for (; pi >= 0 && p[pi]! >= 0; pi--, ci--) if (c[ci]! < 0 || p[pi] !== c[ci]) return false
  return true
}

const EXACT_BUDGET = 200_000

/**
 * Exact language inclusion L(child) ⊆ L(parent): walks the product of the child automaton with
 * the determinised parent automaton looking for a word the child accepts and the parent does not.
 * The alphabet is the literals of both patterns, `:` and one stand-in for every other character
 * (they all behave alike). Gives up (answers false) past EXACT_BUDGET state visits.
 */
function includesExactly(p: Tokens, c: Tokens, stats?: GlobStats): boolean {
  const alphabet = new Set<number>([COLON])
  for (const t of p) if (t >= 0) alphabet.add(t)
  for (const t of c) if (t >= 0) alphabet.add(t)
  let other = 0xe000
  while (alphabet.has(other)) other++
  alphabet.add(other)
  const symbols = [...alphabet]
  let ops = 0

  const closure = (tokens: Tokens, states: Iterable<number>): number[] => {
    const out = new Set<number>()
    for (let s of states) {
      for (;;) {
        ops++
        if (out.has(s)) break
        out.add(s)
        if (s === tokens.length || tokens[s]! >= 0) break
        s++
      }
    }
    return [...out].sort((a, b) => a - b)
  }
  const step = (tokens: Tokens, states: number[], sym: number): number[] => {
    const out: number[] = []
    for (const s of states) {
      ops++
      if (s === tokens.length) continue
      const tok = tokens[s]!
      if (consumes(tok, sym)) out.push(tok < 0 ? s : s + 1)
    }
    return closure(tokens, out)
  }

  const pAccept = p.length
  const cAccept = c.length
  const seen = new Set<string>()
  const queue: [number, number[]][] = []
  const start = closure(p, [0])
  for (const j of closure(c, [0])) queue.push([j, start])
  while (queue.length > 0) {
    if (ops > EXACT_BUDGET) {
      if (stats) stats.ops += ops
      return false
    }
    const [j, set] = queue.pop()!
    const key = `${j}|${set.join(',')}`
    if (seen.has(key)) continue
    seen.add(key)
    // Every child state can still reach acceptance, so an empty parent set is a counterexample too.
    if ((j === cAccept && !set.includes(pAccept)) || set.length === 0) {
      if (stats) stats.ops += ops
      return false
    }
    if (j === cAccept) continue
    for (const sym of symbols) {
      if (!consumes(c[j]!, sym)) continue
      const pNext = step(p, set, sym)
      for (const jn of closure(c, [c[j]! < 0 ? j : j + 1])) queue.push([jn, pNext])
    }
  }
  if (stats) stats.ops += ops
  return true
}
