import { describe, expect, test } from 'bun:test'
import { createHash, createHmac, randomBytes } from 'node:crypto'
import {
  ACTION_SIGNATURE_TOLERANCE_S,
  actionKeyFor,
  canonicalActionString,
  signAction,
  verifyActionSignature,
  type ActionInput,
} from './action-signature.ts'

const SERVER_SECRET = randomBytes(32)
const ORG = '0b8f6c1e-3d2a-4a57-9a61-2f1f3c1d9e01'
const OTHER_ORG = '5c0d8d3e-9f7b-4c0e-8e2f-1b2a3c4d5e6f'
const JTI = 'a3a0c6e2-6c2b-4f8e-9b7e-0d7c6b5a4f31'
const OTHER_JTI = 'f0e1d2c3-b4a5-4697-8877-665544332211'
const NOW = 1_760_000_000
const body = new TextEncoder().encode('{"tool":"github.list_repos","args":{"org":"acme"}}')
const req: ActionInput = { method: 'POST', path: '/v1/tools/call?dry_run=1', body, jti: JTI, orgId: ORG }
const key = actionKeyFor(SERVER_SECRET, ORG, JTI)
const header = signAction(key, { ...req, timestamp: NOW })

describe('canonicalActionString', () => {
  test('is the documented seven LF-separated lines', () => {
    const bodyHash = createHash('sha256').update(body).digest('hex')
    expect(canonicalActionString({ ...req, timestamp: NOW })).toBe(
      `quint-action-signature/v1\nPOST\n/v1/tools/call?dry_run=1\n${bodyHash}\n${NOW}\n${JTI}\n${ORG}`,
    )
  })

  test('an empty body hashes zero bytes; the method is upper-cased', () => {
    const s = canonicalActionString({ ...req, method: 'get', body: new Uint8Array(), timestamp: 0 })
    expect(s.split('\n')[1]).toBe('GET')
    expect(s.split('\n')[3]).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
  })

  test.each([
    ['line break in the path', { path: '/a\n/b' }],
    ['CR in the jti', { jti: 'x\ry' }],
    ['line break in the org', { orgId: `${ORG}\nPOST` }],
    ['empty jti', { jti: '' }],
    ['path without leading slash', { path: 'v1/x' }],
    ['absolute URL', { path: 'https://evil/v1/x' }],
    ['method with a space', { method: 'PO ST' }],
    ['fractional timestamp', { timestamp: 1.5 }],
    ['negative timestamp', { timestamp: -1 }],
    ['body as string', { body: 'x' as unknown as Uint8Array }],
  ])('throws TypeError on %s (would be ambiguous)', (_name, over) => {
    expect(() => canonicalActionString({ ...req, timestamp: NOW, ...over })).toThrow(TypeError)
  })
})

describe('signAction / verifyActionSignature', () => {
  test('header format t=<ts>,v1=<64 hex> and it verifies', () => {
    expect(header).toMatch(/^t=1760000000,v1=[0-9a-f]{64}$/)
    expect(verifyActionSignature(key, header, req, NOW)).toEqual({ ok: true })
  })

  test('matches an independent HMAC over the documented string (what a client implements)', () => {
    const canonical = [
      'quint-action-signature/v1',
      'POST',
      '/v1/tools/call?dry_run=1',
      createHash('sha256').update(body).digest('hex'),
      String(NOW),
      JTI,
      ORG,
    ].join('\n')
    const clientKey = createHmac('sha256', SERVER_SECRET).update(`quint-action-key|v1|${ORG}|${JTI}`).digest()
    const v1 = createHmac('sha256', clientKey).update(canonical).digest('hex')
    expect(verifyActionSignature(key, `t=${NOW},v1=${v1}`, req, NOW)).toEqual({ ok: true })
    expect(header).toBe(`t=${NOW},v1=${v1}`)
  })

  test('timestamp window: ±300 s both ways inclusive, outside is refused (replay, future)', () => {
    const T = ACTION_SIGNATURE_TOLERANCE_S
    expect(T).toBe(300)
    for (const now of [NOW - T, NOW, NOW + T, NOW + T + 0.9]) expect(verifyActionSignature(key, header, req, now).ok).toBe(true)
    for (const now of [NOW + T + 1, NOW + 86_400, NOW - T - 1, 0]) {
      expect(verifyActionSignature(key, header, req, now)).toEqual({ ok: false, reason: 'timestamp_outside_tolerance' })
    }
    expect(verifyActionSignature(key, header, req, Number.NaN)).toEqual({ ok: false, reason: 'timestamp_outside_tolerance' })
  })

  test('moving the timestamp to a fresh value breaks the MAC (the t is signed)', () => {
    const v1 = header.split('v1=')[1]
    expect(verifyActionSignature(key, `t=${NOW + 100},v1=${v1}`, req, NOW + 100)).toEqual({ ok: false, reason: 'mismatch' })
  })

  test.each([
    ['body tampering', { body: new TextEncoder().encode('{"tool":"github.delete_repo","args":{"org":"acme"}}') }],
    ['one extra byte of body', { body: new Uint8Array([...body, 0x20]) }],
    ['empty body', { body: new Uint8Array() }],
    ['path tampering', { path: '/v1/tools/call' }],
    ['query tampering', { path: '/v1/tools/call?dry_run=0' }],
    ['path case', { path: '/V1/tools/call?dry_run=1' }],
    ['method', { method: 'PUT' }],
    ['jti swap (another token of the same org)', { jti: OTHER_JTI }],
    ['org swap', { orgId: OTHER_ORG }],
  ])('%s → mismatch', (_name, over) => {
    expect(verifyActionSignature(key, header, { ...req, ...over }, NOW)).toEqual({ ok: false, reason: 'mismatch' })
  })

  test('keys are per token and per org: another token’s key does not verify', () => {
    for (const other of [
      actionKeyFor(SERVER_SECRET, ORG, OTHER_JTI),
      actionKeyFor(SERVER_SECRET, OTHER_ORG, JTI),
      actionKeyFor(randomBytes(32), ORG, JTI),
    ]) {
      expect(verifyActionSignature(other, header, req, NOW)).toEqual({ ok: false, reason: 'mismatch' })
    }
    // Signing the other token's request with this token's key does not help either.
    const forged = signAction(key, { ...req, jti: OTHER_JTI, timestamp: NOW })
    expect(verifyActionSignature(actionKeyFor(SERVER_SECRET, ORG, OTHER_JTI), forged, { ...req, jti: OTHER_JTI }, NOW).ok).toBe(
      false,
    )
  })

  const v1 = header.split('v1=')[1]!
  test.each([
    ['missing header', undefined],
    ['null header', null],
    ['empty header', ''],
    ['only spaces', '   '],
    ['no v1', `t=${NOW}`],
    ['no t', `v1=${v1}`],
    ['short signature', `t=${NOW},v1=${v1.slice(0, 62)}`],
    ['long signature', `t=${NOW},v1=${v1}00`],
    ['odd length', `t=${NOW},v1=${v1}0`],
    ['non-hex signature', `t=${NOW},v1=${'zz'.repeat(32)}`],
    ['hex with a non-hex tail (Buffer.from would truncate)', `t=${NOW},v1=${v1.slice(0, 60)}zzzz`],
    ['base64 signature', `t=${NOW},v1=${Buffer.from(v1, 'hex').toString('base64')}`],
    ['negative t', `t=-${NOW},v1=${v1}`],
    ['fractional t', `t=${NOW}.5,v1=${v1}`],
    ['hex t', `t=0x68f0f800,v1=${v1}`],
    ['exponent t', `t=1.76e9,v1=${v1}`],
    ['huge t', `t=${'9'.repeat(20)},v1=${v1}`],
    ['duplicate t', `t=${NOW},t=${NOW},v1=${v1}`],
    ['duplicate v1', `t=${NOW},v1=${v1},v1=${v1}`],
    ['field without =', `t=${NOW},v1=${v1},junk`],
    ['empty field', `t=${NOW},,v1=${v1}`],
    ['upper-case name', `T=${NOW},v1=${v1}`],
    ['too many fields', `t=${NOW},v1=${v1},a=1,b=2,c=3,d=4,e=5,f=6,g=7`],
    ['oversized', `t=${NOW},v1=${v1},x=${'a'.repeat(600)}`],
    ['bearer token by mistake', 'Bearer qt_agent_abc.def.ghi'],
  ])('%s → malformed, never a throw', (_name, h) => {
    expect(verifyActionSignature(key, h, req, NOW)).toEqual({ ok: false, reason: 'malformed' })
  })

  test('tolerated: spaces around fields, upper-case hex, unknown extra fields, any order', () => {
    expect(verifyActionSignature(key, `t=${NOW}, v1=${v1}`, req, NOW)).toEqual({ ok: true })
    expect(verifyActionSignature(key, `t=${NOW},v1=${v1.toUpperCase()}`, req, NOW)).toEqual({ ok: true })
    expect(verifyActionSignature(key, `v1=${v1},t=${NOW}`, req, NOW)).toEqual({ ok: true })
    expect(verifyActionSignature(key, `t=${NOW},v1=${v1},v2=future-scheme`, req, NOW)).toEqual({ ok: true })
  })

  test('a request field that cannot be canonicalised is malformed, not a throw', () => {
    expect(verifyActionSignature(key, header, { ...req, path: '/x\ny' }, NOW)).toEqual({ ok: false, reason: 'malformed' })
    expect(verifyActionSignature(key, header, { ...req, method: '' }, NOW)).toEqual({ ok: false, reason: 'malformed' })
  })

  test('a wrong key length is a programming error: TypeError, loudly', () => {
    expect(() => verifyActionSignature(new Uint8Array(16), header, req, NOW)).toThrow(TypeError)
    expect(() => signAction(new Uint8Array(0), { ...req, timestamp: NOW })).toThrow(TypeError)
  })
})

test('known vector from docs/action-signatures.md (computed independently with Python hmac)', () => {
  const k = actionKeyFor(Buffer.alloc(32, 1), 'org-1', 'jti-1')
  expect(k.toString('hex')).toBe('19881c968b916808cd0453a504d167b7c0ff2395a3b8e14575d366d3d023f16b')
  const input = {
    method: 'POST',
    path: '/v1/tools/call?x=1',
    body: new TextEncoder().encode('{"a":1}'),
    jti: 'jti-1',
    orgId: 'org-1',
  }
  const h = signAction(k, { ...input, timestamp: 1_700_000_000 })
  expect(h).toBe('t=1700000000,v1=435448bf55c7e754b34c821ca1b5a7dd3841558a4e07ea7cab45a8c996932b7e')
  expect(verifyActionSignature(k, h, input, 1_700_000_000)).toEqual({ ok: true })
})

describe('actionKeyFor', () => {
  test('is HMAC-SHA256(serverSecret, "quint-action-key|v1|<org>|<jti>"), 32 bytes, deterministic', () => {
    const expected = createHmac('sha256', SERVER_SECRET).update(`quint-action-key|v1|${ORG}|${JTI}`).digest()
    expect(actionKeyFor(SERVER_SECRET, ORG, JTI).equals(expected)).toBe(true)
    expect(actionKeyFor(SERVER_SECRET, ORG, JTI)).toHaveLength(32)
  })

  test('distinct per org, per jti and per server secret', () => {
    const keys = [
      actionKeyFor(SERVER_SECRET, ORG, JTI),
      actionKeyFor(SERVER_SECRET, OTHER_ORG, JTI),
      actionKeyFor(SERVER_SECRET, ORG, OTHER_JTI),
      actionKeyFor(randomBytes(32), ORG, JTI),
    ].map((k) => k.toString('hex'))
    expect(new Set(keys).size).toBe(4)
  })

  test('refuses "|" and empty fields (two pairs must never derive one key), and short secrets', () => {
    expect(() => actionKeyFor(SERVER_SECRET, 'a|b', 'c')).toThrow(TypeError)
    expect(() => actionKeyFor(SERVER_SECRET, 'a', 'b|c')).toThrow(TypeError)
    expect(() => actionKeyFor(SERVER_SECRET, '', JTI)).toThrow(TypeError)
    expect(() => actionKeyFor(SERVER_SECRET, ORG, '')).toThrow(TypeError)
    expect(() => actionKeyFor(randomBytes(31), ORG, JTI)).toThrow(TypeError)
  })
})
