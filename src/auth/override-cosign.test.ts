import { describe, expect, test } from 'bun:test'
import { createHmac, randomBytes } from 'node:crypto'
import { overrideCosignature, verifyOverrideCosignature } from './override-cosign.ts'

const SECRET = randomBytes(32)
const EVENT = 'evt_01J9Z3'
const JTI = '7d1e6c2a-0b5f-4e8a-9c3d-2f1a0b9c8d7e'

describe('overrideCosignature (SPEC §16.7)', () => {
  test('is HMAC-SHA256(secret, "override|{event_id}|{decision}|{override_jti}") as 64 lowercase hex', () => {
    const expected = createHmac('sha256', SECRET).update(`override|${EVENT}|approve|${JTI}`).digest('hex')
    const sig = overrideCosignature(SECRET, EVENT, 'approve', JTI)
    expect(sig).toBe(expected)
    expect(sig).toMatch(/^[0-9a-f]{64}$/)
  })

  test('known vector (computed independently with Python hmac; secret = 32 bytes of 0x07)', () => {
    expect(overrideCosignature(Buffer.alloc(32, 7), 'e1', 'reject', 'j1')).toBe(
      '2eb6fa4db6182e87a3ab655d64af2defb49decdfc7787c9dd37a8c3a7b83e22e',
    )
  })

  test('binds every field and the secret', () => {
    const base = overrideCosignature(SECRET, EVENT, 'approve', JTI)
    expect(overrideCosignature(SECRET, EVENT, 'reject', JTI)).not.toBe(base)
    expect(overrideCosignature(SECRET, `${EVENT}x`, 'approve', JTI)).not.toBe(base)
    expect(overrideCosignature(SECRET, EVENT, 'approve', `${JTI.slice(0, -1)}f`)).not.toBe(base)
    expect(overrideCosignature(randomBytes(32), EVENT, 'approve', JTI)).not.toBe(base)
  })

  test('an event id may contain "|"; decision and jti may not (keeps the string unambiguous)', () => {
    // ("a|approve", "x") vs ("a", "approve|x") would otherwise collide.
    expect(overrideCosignature(SECRET, 'a|b', 'approve', JTI)).toMatch(/^[0-9a-f]{64}$/)
    expect(() => overrideCosignature(SECRET, 'a', 'approve|x', JTI)).toThrow(TypeError)
    expect(() => overrideCosignature(SECRET, 'a', 'approve', 'j|k')).toThrow(TypeError)
    expect(() => overrideCosignature(SECRET, '', 'approve', JTI)).toThrow(TypeError)
    expect(() => overrideCosignature(SECRET, EVENT, '', JTI)).toThrow(TypeError)
  })

  test('refuses a short secret', () => {
    expect(() => overrideCosignature(randomBytes(16), EVENT, 'approve', JTI)).toThrow(TypeError)
  })
})

describe('verifyOverrideCosignature', () => {
  const sig = overrideCosignature(SECRET, EVENT, 'approve', JTI)

  test('accepts the right one, refuses another decision, event or jti', () => {
    expect(verifyOverrideCosignature(SECRET, EVENT, 'approve', JTI, sig)).toBe(true)
    expect(verifyOverrideCosignature(SECRET, EVENT, 'reject', JTI, sig)).toBe(false)
    expect(verifyOverrideCosignature(SECRET, 'other', 'approve', JTI, sig)).toBe(false)
    expect(verifyOverrideCosignature(SECRET, EVENT, 'approve', 'other', sig)).toBe(false)
  })

  test.each([
    ['empty', ''],
    ['short', sig.slice(0, 63)],
    ['long', `${sig}0`],
    ['upper-case', sig.toUpperCase()],
    ['non-hex', 'z'.repeat(64)],
    ['not a string', 42],
    ['undefined', undefined],
  ])('%s → false, never a throw', (_name, presented) => {
    expect(verifyOverrideCosignature(SECRET, EVENT, 'approve', JTI, presented)).toBe(false)
  })

  test('fields that could never be cosigned → false, not a throw', () => {
    expect(verifyOverrideCosignature(SECRET, EVENT, 'a|b', JTI, sig)).toBe(false)
  })
})
