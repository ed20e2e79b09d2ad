import { describe, expect, test } from 'bun:test'
import { generateKeyPairSync, sign } from 'node:crypto'
import { b64urlJson, parseJws, signEs256, verifyEs256 } from './jws.ts'
import { expiryFor, MintError, typeOfToken } from './hierarchy.ts'

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const other = generateKeyPairSync('ec', { namedCurve: 'P-256' })

describe('jwt', () => {
  test('sign → parse → verify round trip with raw r||s', () => {
    const jws = signEs256({ a: 1 }, 'kid_12345', privateKey)
    const p = parseJws(jws)!
    expect(p.header).toEqual({ alg: 'ES256', typ: 'JWT', kid: 'kid_12345' })
    expect(p.payload).toEqual({ a: 1 })
    expect(p.signature.length).toBe(64)
    expect(verifyEs256(p.signingInput, p.signature, publicKey)).toBe(true)
    expect(verifyEs256(p.signingInput, p.signature, other.publicKey)).toBe(false)
    expect(verifyEs256(p.signingInput + 'x', p.signature, publicKey)).toBe(false)
  })

  test('strict parsing refuses anything else, without throwing', () => {
    const good = signEs256({ a: 1 }, 'kid_12345', privateKey)
    const [h, p, s] = good.split('.') as [string, string, string]
    const input = `${h}.${p}`
    const der = sign('sha256', Buffer.from(input), privateKey).toString('base64url')
    const bad = [
      '',
      '.',
      '..',
      '...',
      `${h}.${p}`,
      `${h}.${p}.${s}.x`,
      `${h}.${p}.${der}`,
      `${h}.${p}.${s}=`,
      `${h}..${s}`,
      `${b64urlJson({ alg: 'ES256', typ: 'JWT', kid: 'kid_12345', jwk: {} })}.${p}.${s}`,
      `${b64urlJson({ alg: 'ES256', typ: 'JWT' })}.${p}.${s}`,
      `${b64urlJson({ alg: 'ES256', typ: 'JWT', kid: 'short' })}.${p}.${s}`,
      `${b64urlJson({ alg: 'none', typ: 'JWT', kid: 'kid_12345' })}.${p}.${s}`,
      `${h}.${b64urlJson([1])}.${s}`,
      `${h}.${b64urlJson('x')}.${s}`,
      `${h}.${Buffer.from('{').toString('base64url')}.${s}`,
      `${h}.${'A'.repeat(20_000)}.${s}`,
      `${h}.${p}A.${s}`,
      `${h}+.${p}.${s}`,
    ]
    for (const t of bad) expect(parseJws(t)).toBeNull()
  })
})

describe('tokens', () => {
  test('prefix → type', () => {
    expect(typeOfToken('qt_agent_x')).toBe('agent')
    expect(typeOfToken('qt_subagent_x')).toBe('subagent')
    expect(typeOfToken('qt_deploy_x')).toBeNull()
    expect(typeOfToken('qt_agentx')).toBeNull()
    expect(typeOfToken('qk_x')).toBeNull()
  })

  test('expiry: type maximum, parent bound, default cut to the parent', () => {
    const parent = { jti: 'p', type: 'agent' as const, exp: 1000 + 600, depth: 0, claims: {} }
    expect(expiryFor('session', parent, undefined, 1000, '/t')).toBe(1600)
    expect(expiryFor('session', null, undefined, 1000, '/t')).toBe(1000 + 3600)
    expect(expiryFor('session', parent, 300, 1000, '/t')).toBe(1300)
    expect(() => expiryFor('session', parent, 601, 1000, '/t')).toThrow(MintError)
    expect(() => expiryFor('session', null, 3601, 1000, '/t')).toThrow(MintError)
    expect(() => expiryFor('session', null, 0, 1000, '/t')).toThrow(MintError)
  })
})
