import { describe, expect, test } from 'bun:test'
import { globMatch, subsumes, type GlobStats } from './glob.ts'

/** Independent reference: the same language as a RegExp (only safe for small inputs). */
function reference(pattern: string): RegExp {
  const body = pattern
    .split(/(\*+)/)
    .map((part) =>
      part.startsWith('*') ? (part.length === 1 ? '[^:]*' : '[\\s\\S]*') : part.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&'),
    )
    .join('')
  return new RegExp(`^${body}$`, 'u')
}

/** Deterministic PRNG so a failure reproduces. */
function rng(seed: number) {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed / 0x7fffffff
  }
}

function allStrings(alphabet: string[], maxLen: number): string[] {
  const out = ['']
  let layer = ['']
  for (let len = 1; len <= maxLen; len++) {
    layer = layer.flatMap((s) => alphabet.map((c) => s + c))
    out.push(...layer)
  }
  return out
}

describe('globMatch', () => {
  test.each([
    // [pattern, value, expected]
    ['mcp:github:list_repos', 'mcp:github:list_repos', true],
    ['mcp:github:list_repos', 'mcp:github:list_repo', false],
    ['mcp:github:*', 'mcp:github:list_repos', true],
    ['mcp:github:*', 'mcp:github:', true],
    ['mcp:github:*', 'mcp:github', false],
    ['mcp:github:*', 'mcp:github:a:b', false],
    ['mcp:*', 'mcp:github:list_repos.list', false], // `*` stays inside one segment
    ['mcp:**', 'mcp:github:list_repos.list', true],
    ['mcp:**', 'mcp:', true],
    ['mcp:**', 'mcp', false], // the literal ':' is still required
    ['mcp:*:*.read', 'mcp:fs:file.read', true],
    ['mcp:*:*.read', 'mcp:fs:file.write', false],
    ['mcp:*:*.read', 'mcp:fs:dir:file.read', false],
    ['*:*:*.delete', 'data:db:row.delete', true],
    ['*:*:*.delete', 'data:row.delete', false],
    ['*', 'anything-without-colon', true],
    ['*', '', true],
    ['*', 'a:b', false],
    ['**', 'a:b:c', true],
    ['**', '', true],
    ['a**b', 'a:x:b', true],
    ['a*b', 'a:b', false],
    ['repo:myorg/*', 'repo:myorg/sub/dir', true], // `/` is an ordinary character
    ['data:read:*', 'DATA:read:x', false], // case-sensitive
    ['data:read:*', 'dаta:read:x', false], // Cyrillic а (U+0430) is not Latin a
    ['caf\u00e9:*', 'cafe\u0301:x', false], // NFC pattern, NFD value: different strings
    ['mcp:\u{1F600}*', 'mcp:\u{1F600}\u{1F601}', true], // astral characters are literal
    ['?', 'x', false], // no `?` wildcard: literal
    ['[ab]', 'a', false], // no classes: literal
    ['[ab]', '[ab]', true],
    ['\\*', '\\anything', true], // no escapes: `\` is literal, `*` is still a wildcard
    ['', '', true],
    ['', 'x', false],
  ] as const)('%p vs %p → %p', (pattern, value, expected) => {
    expect(globMatch(pattern, value)).toBe(expected)
    expect(reference(pattern).test(value)).toBe(expected)
  })

  test('agrees with the RegExp reference on 20 000 random pattern/value pairs', () => {
    const rand = rng(7)
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!
    for (let i = 0; i < 20_000; i++) {
      const pattern = Array.from({ length: Math.floor(rand() * 7) }, () => pick(['a', 'b', ':', '*', '**', '***'])).join('')
      const value = Array.from({ length: Math.floor(rand() * 8) }, () => pick(['a', 'b', ':', 'c'])).join('')
      expect([pattern, value, globMatch(pattern, value)]).toEqual([pattern, value, reference(pattern).test(value)])
    }
  })

  test('hostile patterns cost O(|pattern|·|value|) state visits, never exponential', () => {
    const cases: [string, string][] = [
      ['*a'.repeat(100) + '*b', 'a'.repeat(10_000)], // classic backtracking killer
      ['**a'.repeat(100) + '**b', 'a'.repeat(10_000)],
      ['*:'.repeat(100) + 'x', '::'.repeat(5_000)],
      ['**:*'.repeat(60) + 'z', 'a:'.repeat(5_000)],
    ]
    for (const [pattern, value] of cases) {
      const stats: GlobStats = { ops: 0 }
      expect(globMatch(pattern, value, stats)).toBe(false)
      expect(stats.ops).toBeLessThanOrEqual(4 * (pattern.length + 1) * (value.length + 1))
    }
    // Linear in the value for a fixed pattern: doubling the value about doubles the work (the
    // automaton fills up over the first ~|pattern| characters, hence the slack).
    const pattern = '*a'.repeat(50) + '*b'
    const small: GlobStats = { ops: 0 }
    const big: GlobStats = { ops: 0 }
    globMatch(pattern, 'a'.repeat(2_000), small)
    globMatch(pattern, 'a'.repeat(4_000), big)
    expect(big.ops).toBeLessThanOrEqual(2.05 * small.ops)
  })

  test('a mismatching literal pattern costs nothing', () => {
    const stats: GlobStats = { ops: 0 }
    expect(globMatch('x'.repeat(256), 'x'.repeat(255), stats)).toBe(false)
    expect(stats.ops).toBe(0)
  })
})

describe('subsumes (parent covers child)', () => {
  test.each([
    // [parent, child, expected, why]
    ['mcp:github:*', 'mcp:github:*', true, 'equal patterns'],
    ['mcp:github:list', 'mcp:github:list', true, 'equal literals'],
    ['mcp:github:*', 'mcp:github:list', true, 'literal under a wildcard'],
    ['mcp:github:*', 'mcp:github:list*', true, 'narrower segment wildcard'],
    ['mcp:*', 'mcp:git*', true, 'narrower segment wildcard'],
    ['mcp:**', 'mcp:*', true, '`**` covers `*`'],
    ['mcp:**', 'mcp:github:*', true, '`**` covers deeper patterns'],
    ['mcp:**', 'mcp:**', true, 'equal `**`'],
    ['**', 'anything:*:**', true, '`**` covers everything'],
    ['*', 'a*b', true, 'single segment'],
    ['*:**', '**:*', true, 'same language, different spelling (exact check)'],
    ['**:*', '*:**', true, 'same language, different spelling (exact check)'],
    ['*a*', '*a*a*', true, 'fewer constraints'],
    ['mcp:*', 'mcp:**', false, 'wildcard widening: `**` crosses segments'],
    ['mcp:github:*', 'mcp:*', false, 'superset pattern'],
    ['mcp:github:*', 'mcp:**', false, 'superset pattern'],
    ['mcp:github:list', 'mcp:github:*', false, 'a literal never covers a wildcard'],
    ['*', '**', false, '`*` does not cross `:`'],
    ['*', 'a:*', false, 'child has a colon'],
    ['a*', '*', false, 'child may not start with a'],
    ['*a', '*', false, 'child may not end with a'],
    ['data:read:*', 'DATA:read:*', false, 'case differs'],
    ['data:read:*', 'dаta:read:*', false, 'Cyrillic look-alike'],
    ['data:read:*', '\u200bdata:read:*', false, 'zero-width prefix is a different string'],
    ['data:read:*', 'data:read:*\u200b', true, 'a zero-width suffix only narrows the child'],
    ['mcp:*', 'mcp', false, 'literal outside the language'],
    ['mcp:*:read', 'mcp:**:read', false, '`**` in the middle widens'],
    ['a:**', 'a:*:b', true, 'deeper literal tail'],
    ['**:delete', '*:*:delete', true, '`**` prefix'],
    ['**:delete', '**delete', false, 'child need not have the colon'],
  ] as const)('%p ⊇ %p → %p (%s)', (parent, child, expected) => {
    expect(subsumes(parent, child)).toBe(expected)
  })

  test('sound and complete against brute force on random small patterns', () => {
    const rand = rng(11)
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!
    const words = allStrings(['a', 'b', ':', 'c'], 6)
    const gen = () => Array.from({ length: 1 + Math.floor(rand() * 4) }, () => pick(['a', 'b', ':', '*', '**'])).join('')
    let trues = 0
    for (let i = 0; i < 1500; i++) {
      const parent = gen()
      const child = gen()
      const p = reference(parent)
      const c = reference(child)
      const counterexample = words.find((w) => c.test(w) && !p.test(w))
      const got = subsumes(parent, child)
      // Sound: never claims coverage when a counterexample exists.
      if (counterexample !== undefined) expect([parent, child, got]).toEqual([parent, child, false])
      // Complete for these small patterns: no short counterexample means coverage is reported.
      else expect([parent, child, got]).toEqual([parent, child, true])
      if (got) trues++
    }
    expect(trues).toBeGreaterThan(50) // the sample exercises the true side too
  })

  test('hostile pairs stay bounded and answer false, the safe side', () => {
    const stats: GlobStats = { ops: 0 }
    const parent = '*a'.repeat(120) + '*'
    const child = '*b'.repeat(120) + '*'
    expect(subsumes(parent, child, stats)).toBe(false)
    expect(stats.ops).toBeLessThanOrEqual(400_000)
    const stats2: GlobStats = { ops: 0 }
    expect(subsumes('**' + ':*'.repeat(100), '*:'.repeat(99) + '**', stats2)).toBe(false)
    // …while 100 guaranteed colons are covered: every such string ends in 100 colon-free segments.
    expect(subsumes('**' + ':*'.repeat(100), '*:'.repeat(100) + '**')).toBe(true)
    expect(stats2.ops).toBeLessThanOrEqual(400_000)
  })
})
