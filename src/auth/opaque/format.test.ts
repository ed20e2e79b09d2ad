import { describe, expect, test } from 'bun:test'
import { FORMATS, hashToken, isOpaqueToken, mintToken, opaquePrefix } from './format.ts'

describe('opaque tokens', () => {
  test('minted formats: qk_ + 64 hex, qt_deploy_ + 32 hex, unique, hashed with SHA-256', () => {
    const k = mintToken(FORMATS.adminKey)
    const d = mintToken(FORMATS.deployToken)
    expect(k.raw).toMatch(/^qk_[0-9a-f]{64}$/)
    expect(d.raw).toMatch(/^qt_deploy_[0-9a-f]{32}$/)
    expect(k.hash.toString('hex')).toBe(new Bun.CryptoHasher('sha256').update(k.raw).digest('hex'))
    expect(d.displayPrefix).toBe(d.raw.slice(0, 14))
    expect(mintToken(FORMATS.adminKey).raw).not.toBe(k.raw)
    expect(hashToken(k.raw).length).toBe(32)
  })

  test('accepts the opaque prefixes of SPEC §2 and nothing else', () => {
    for (const p of ['qt_deploy_', 'qt_dk_', 'qt_sk_', 'qt_pk_', 'qk_']) {
      expect(isOpaqueToken(p + 'f'.repeat(32))).toBe(true)
      expect(opaquePrefix(p + 'f'.repeat(32))).toBe(p)
    }
    for (const bad of ['qt_app_' + 'f'.repeat(32), 'qk_' + 'F'.repeat(64), 'qk_123', 'qk_' + 'f'.repeat(129), 'Bearer x', '']) {
      expect(isOpaqueToken(bad)).toBe(false)
    }
  })
})
