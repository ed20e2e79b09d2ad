/**
 * @module auth/jwt/bloom
 * The bloom filter behind JWT revocation (src/auth/jwt/revocation-filter.ts). No false negatives: an
 * item that was added always answers "maybe"; an item never added answers "maybe" with the design
 * false-positive rate p, so a hit is only ever a reason to ask Postgres (docs/revocation.md).
 *
 * Version 1 (`BLOOM_VERSION`), which every writer and reader of a shared bitmap must agree on:
 * - item key: UTF-8 of `${orgId}:${jti}` (org ids are UUIDs, so the first `:` separates them);
 * - hash: XXH64 with seed 0 (Bun.hash.xxHash64; the test pins the reference vectors), split into
 *   h1 = low 32 bits and h2 = high 32 bits;
 * - k positions by enhanced double hashing (Dillinger & Manolios 2004): x = h1 mod m,
 *   y = h2 mod m, then x ← (x + y) mod m, y ← (y + i) mod m for i = 1 … k−1. Unlike plain
 *   h1 + i·h2 it never collapses to one position when h2 ≡ 0 (mod m);
 * - bit p lives in byte p >> 3 under mask 0x80 >> (p & 7): Redis's SETBIT/GETBIT order, so the
 *   bytes of a Redis bitmap (GET) are the filter as is.
 * Sizing: m = −n·ln p / (ln 2)², rounded up to whole bytes; k = round((m/n)·ln 2). The default
 * n = 1,000,000, p = 0.008 gives m ≈ 10.05 Mbit (1.26 MB) and k = 7 (SPEC §16.5).
 * A filter of another version or size is never read as "not revoked": `fromBytes` refuses it.
 */

export const BLOOM_VERSION = 1
export const DEFAULT_EXPECTED_ITEMS = 1_000_000
export const DEFAULT_FALSE_POSITIVE_RATE = 0.008
/** Redis strings stop at 512 MB; far beyond any revocation list we size for. */
const MAX_BITS = 2 ** 32 - 8

export interface BloomParams {
  readonly version: number
  /** m, a multiple of 8. */
  readonly bits: number
  /** k. */
  readonly hashes: number
}

export function bloomParams(
  expectedItems = DEFAULT_EXPECTED_ITEMS,
  falsePositiveRate = DEFAULT_FALSE_POSITIVE_RATE,
): BloomParams {
  if (!Number.isInteger(expectedItems) || expectedItems < 1) throw new RangeError('expectedItems must be a positive integer')
  if (!(falsePositiveRate > 0 && falsePositiveRate < 1)) throw new RangeError('falsePositiveRate must be in (0, 1)')
  const raw = Math.ceil((-expectedItems * Math.log(falsePositiveRate)) / Math.LN2 ** 2)
  const bits = Math.ceil(raw / 8) * 8
  if (bits > MAX_BITS) throw new RangeError('bloom filter too large for a Redis string')
  const hashes = Math.max(1, Math.round((bits / expectedItems) * Math.LN2))
  return { version: BLOOM_VERSION, bits, hashes }
}

export const sameParams = (a: BloomParams, b: BloomParams) =>
  a.version === b.version && a.bits === b.bits && a.hashes === b.hashes

export const bloomItem = (orgId: string, jti: string) => `${orgId}:${jti}`

const LOW32 = 0xffffffffn

/** The k bit positions of `item` (version 1), into `out` (length ≥ k). */
export function bloomPositions(
  params: BloomParams,
  item: string,
  out: Uint32Array = new Uint32Array(params.hashes),
): Uint32Array {
  const m = params.bits
  const h = Bun.hash.xxHash64(item)
  let x = Number(h & LOW32) % m
  let y = Number(h >> 32n) % m
  out[0] = x
  for (let i = 1; i < params.hashes; i++) {
    x = (x + y) % m
    y = (y + i) % m
    out[i] = x
  }
  return out
}

export class BloomFilter {
  readonly params: BloomParams
  readonly bytes: Uint8Array
  #setBits: number
  /** Items added through this object (a filter loaded from bytes does not know its count). */
  #count = 0

  private constructor(params: BloomParams, bytes: Uint8Array, setBits: number) {
    this.params = params
    this.bytes = bytes
    this.#setBits = setBits
  }

  static create(params: BloomParams): BloomFilter {
    if (params.version !== BLOOM_VERSION || params.bits % 8 !== 0 || params.bits <= 0 || params.hashes < 1) {
      throw new RangeError('unsupported bloom parameters')
    }
    return new BloomFilter(params, new Uint8Array(params.bits / 8), 0)
  }

  /**
   * A filter over `bytes` (copied), or null when they cannot be this version and size: a short
   * bitmap (evicted, truncated, another size) or another version must not answer "not revoked".
   */
  static fromBytes(params: BloomParams, bytes: Uint8Array): BloomFilter | null {
    if (params.version !== BLOOM_VERSION || bytes.length !== params.bits / 8) return null
    const copy = new Uint8Array(bytes)
    return new BloomFilter(params, copy, popcount(copy))
  }

  get setBits(): number {
    return this.#setBits
  }

  get count(): number {
    return this.#count
  }

  add(item: string): void {
    this.addPositions(bloomPositions(this.params, item, scratch(this.params.hashes)))
    this.#count++
  }

  addPositions(positions: ArrayLike<number>): void {
    const b = this.bytes
    for (let i = 0; i < positions.length; i++) {
      const p = positions[i]!
      const mask = 0x80 >>> (p & 7)
      const byte = b[p >>> 3]!
      if ((byte & mask) === 0) {
        b[p >>> 3] = byte | mask
        this.#setBits++
      }
    }
  }

  /** The hot path: one hash, k array reads, no allocation beyond the hash's bigint. */
  has(item: string): boolean {
    const m = this.params.bits
    const b = this.bytes
    const h = Bun.hash.xxHash64(item)
    let x = Number(h & LOW32) % m
    let y = Number(h >> 32n) % m
    if ((b[x >>> 3]! & (0x80 >>> (x & 7))) === 0) return false
    for (let i = 1; i < this.params.hashes; i++) {
      x = (x + y) % m
      y = (y + i) % m
      if ((b[x >>> 3]! & (0x80 >>> (x & 7))) === 0) return false
    }
    return true
  }

  /** Bitwise OR of `other` into this one (same parameters): the union never loses an item. */
  merge(other: BloomFilter): void {
    if (!sameParams(this.params, other.params)) throw new RangeError('cannot merge bloom filters of different parameters')
    const a = this.bytes
    const b = other.bytes
    for (let i = 0; i < a.length; i++) a[i]! |= b[i]!
    this.#setBits = popcount(a)
    this.#count = Math.max(this.#count, other.#count)
  }

  /** Expected false-positive rate at the current fill: (set bits / m)^k. */
  estimatedFalsePositiveRate(): number {
    return (this.#setBits / this.params.bits) ** this.params.hashes
  }
}

let scratchBuf = new Uint32Array(32)
function scratch(k: number): Uint32Array {
  if (scratchBuf.length < k) scratchBuf = new Uint32Array(k)
  return scratchBuf.subarray(0, k)
}

const POP8 = Uint8Array.from({ length: 256 }, (_, i) => {
  let n = 0
  for (let v = i; v; v >>= 1) n += v & 1
  return n
})

function popcount(bytes: Uint8Array): number {
  let n = 0
  for (let i = 0; i < bytes.length; i++) n += POP8[bytes[i]!]!
  return n
}
