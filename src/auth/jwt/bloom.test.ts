/**
 * The revocation bloom filter on its own: the version-1 hash and positions are pinned (a change
 * would make instances disagree about a shared bitmap), no false negatives, a measured
 * false-positive rate near the design, and bytes of another size or version refused.
 */
import { describe, expect, test } from 'bun:test'
import { BLOOM_VERSION, BloomFilter, bloomItem, bloomParams, bloomPositions } from './bloom.ts'

const ORG = '00000000-0000-4000-8000-000000000000'

describe('version 1 is pinned', () => {
  test('XXH64 (seed 0) gives the reference values', () => {
    expect(Bun.hash.xxHash64('').toString(16)).toBe('ef46db3751d8e999')
    expect(Bun.hash.xxHash64('abc').toString(16)).toBe('44bc2cf5ad770999')
  })

  test('default sizing is SPEC §16.5: p = 0.8 % at 1M items with k = 7', () => {
    const p = bloomParams()
    expect(p).toEqual({ version: BLOOM_VERSION, bits: 10_049_504, hashes: 7 })
    expect(p.bits % 8).toBe(0)
    expect(bloomParams(1000, 0.01)).toEqual({ version: 1, bits: 9592, hashes: 7 })
    expect(() => bloomParams(0)).toThrow(RangeError)
    expect(() => bloomParams(10, 1)).toThrow(RangeError)
  })

  test('positions of a fixed item (enhanced double hashing)', () => {
    expect(Array.from(bloomPositions(bloomParams(), bloomItem(ORG, 'jti-1')))).toEqual([
      7898795, 1812829, 5776368, 9739909, 3653949, 7617497, 1531546,
    ])
  })

  test('bit p is byte p >> 3, mask 0x80 >> (p & 7), as Redis SETBIT lays it out', () => {
    const params = { version: 1, bits: 16, hashes: 1 }
    const f = BloomFilter.create(params)
    f.addPositions([0, 9, 15])
    expect(Array.from(f.bytes)).toEqual([0b1000_0000, 0b0100_0001])
    expect(f.setBits).toBe(3)
  })
})

describe('behaviour', () => {
  const n = 100_000
  const params = bloomParams(n, 0.008)
  const filter = BloomFilter.create(params)
  const added = Array.from({ length: n }, () => bloomItem(crypto.randomUUID(), crypto.randomUUID()))
  for (const item of added) filter.add(item)

  test('no false negatives over 100k random items', () => {
    let missing = 0
    for (const item of added) if (!filter.has(item)) missing++
    expect(missing).toBe(0)
    expect(filter.count).toBe(n)
  })

  test('the measured false-positive rate is near the design 0.8 %', () => {
    const probes = 200_000
    let hits = 0
    for (let i = 0; i < probes; i++) if (filter.has(bloomItem(ORG, crypto.randomUUID()))) hits++
    const rate = hits / probes
    // σ ≈ 0.0002 at this sample size: the band is the design ± ~10σ, wrong sizing falls outside.
    expect(rate).toBeGreaterThan(0.006)
    expect(rate).toBeLessThan(0.0105)
    expect(Math.abs(filter.estimatedFalsePositiveRate() - 0.008)).toBeLessThan(0.0015)
    // At design load about half the bits are set (ln 2 optimum).
    expect(filter.setBits / params.bits).toBeGreaterThan(0.45)
    expect(filter.setBits / params.bits).toBeLessThan(0.55)
  })

  test('the same jti under another org is another item', () => {
    const jti = crypto.randomUUID()
    const f = BloomFilter.create(bloomParams(1000, 1e-9))
    f.add(bloomItem(ORG, jti))
    expect(f.has(bloomItem(ORG, jti))).toBe(true)
    expect(f.has(bloomItem('11111111-1111-4111-8111-111111111111', jti))).toBe(false)
  })

  test('fromBytes round-trips and refuses another size or version', () => {
    const copy = BloomFilter.fromBytes(params, filter.bytes)!
    expect(copy.setBits).toBe(filter.setBits)
    expect(copy.has(added[0]!)).toBe(true)
    expect(BloomFilter.fromBytes(params, filter.bytes.subarray(0, filter.bytes.length - 1))).toBeNull()
    expect(BloomFilter.fromBytes(params, new Uint8Array(filter.bytes.length + 1))).toBeNull()
    expect(BloomFilter.fromBytes({ ...params, version: 2 }, filter.bytes)).toBeNull()
    expect(BloomFilter.fromBytes(params, new Uint8Array(0))).toBeNull()
  })

  test('merge is a union', () => {
    const p = bloomParams(1000, 0.01)
    const a = BloomFilter.create(p)
    const b = BloomFilter.create(p)
    a.add('x')
    b.add('y')
    a.merge(b)
    expect(a.has('x') && a.has('y')).toBe(true)
    expect(() => a.merge(BloomFilter.create(bloomParams(2000, 0.01)))).toThrow(RangeError)
  })
})
