/**
 * The verifier against the signature test vectors published with the public Quint proxy, and
 * against entries signed by the public CLI (../shared fixtures copied into test/fixtures).
 */
import { describe, expect, test } from 'bun:test'
import vectors from '../../../test/fixtures/audit-signature-vectors.json'
import cli from '../../../test/fixtures/audit-entries-quint-cli.json'
import { canonical, chainHash, ed25519Key, verifyEntry } from './verify.ts'

describe('published vectors', () => {
  const key = ed25519Key(vectors.public_key)!
  for (const c of vectors.test_cases) {
    test(`${c.name}: the canonical string and the signature`, () => {
      expect(canonical(c.entry, Object.keys(c.entry))).toBe(c.canonical)
      expect(verifyEntry(c.entry, key, c.signature)).toBe(true)
      // One character changed anywhere: refused.
      expect(verifyEntry({ ...c.entry, verdict: 'deny!' }, key, c.signature)).toBe(false)
      expect(
        verifyEntry(
          c.entry,
          key,
          c.signature.replace(/^./, (ch) => (ch === '0' ? '1' : '0')),
        ),
      ).toBe(false)
    })
  }
  test('a key that is not Ed25519, or not a key, is refused', () => {
    expect(ed25519Key('-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n')).toBeNull()
    expect(ed25519Key('')).toBeNull()
  })
})

describe('entries the public CLI signed', () => {
  const entries = cli.body.entries as Record<string, unknown>[]
  test('every one verifies, and each prev_hash is the hash of the signature before it', () => {
    let prev = ''
    for (const e of entries) {
      expect(verifyEntry(e, ed25519Key(e.public_key as string)!, e.signature as string)).toBe(true)
      expect(e.prev_hash).toBe(prev)
      prev = chainHash(e.signature as string)
    }
  })
})
