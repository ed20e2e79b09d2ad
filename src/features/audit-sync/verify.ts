/**
 * @module features/audit-sync/verify
 * The signature of an audit entry written by the public Quint CLI or proxy (SPEC §8.5): Ed25519,
 * from the entry's own `public_key` (SPKI PEM), over the canonical JSON of its signable fields
 * (keys sorted, no whitespace, `JSON.stringify` escaping, nulls kept). Two writers disagree on
 * which keys are signed: the Go proxy always signs `risk_score`, `risk_level`, `agent_id` and
 * `agent_name` (null when absent), the TypeScript CLI leaves the risk keys out when it has no
 * risk. So each variant is tried; one that verifies is enough. Pure: no I/O.
 */
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto'

const BASE_KEYS = [
  'timestamp',
  'server_name',
  'direction',
  'method',
  'message_id',
  'tool_name',
  'arguments_json',
  'response_json',
  'verdict',
  'policy_hash',
  'prev_hash',
  'nonce',
  'public_key',
] as const
const RISK_KEYS = ['risk_score', 'risk_level'] as const
const AGENT_KEYS = ['agent_id', 'agent_name'] as const

/** The canonical string of `entry` over `keys`: a missing key counts as null. */
export function canonical(entry: Record<string, unknown>, keys: readonly string[]): string {
  const sorted = [...keys].sort()
  return JSON.stringify(Object.fromEntries(sorted.map((k) => [k, entry[k] ?? null])))
}

/** The key sets a writer may have signed, most likely first. */
function variants(entry: Record<string, unknown>): string[][] {
  const has = (keys: readonly string[]) => keys.some((k) => entry[k] !== undefined && entry[k] !== null)
  const out: string[][] = []
  for (const risk of has(RISK_KEYS) ? [true] : [false, true]) {
    for (const agent of has(AGENT_KEYS) ? [true] : [false, true]) {
      out.push([...BASE_KEYS, ...(risk ? RISK_KEYS : []), ...(agent ? AGENT_KEYS : [])])
    }
  }
  return out
}

/** Exactly one SPKI public-key PEM block: a private key or extra text is not a public key. */
const PUBLIC_PEM = /^-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]{40,200}-----END PUBLIC KEY-----\r?\n?$/

/**
 * Encodings of the points of small order (and their non-canonical twins): with one of these as
 * the public key, a signature can be made for any message without a private key.
 */
const SMALL_ORDER = new Set([
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000080',
  '0100000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000080',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
])

/** y ≥ p = 2^255 − 19 (little-endian, sign bit aside): not a canonical encoding. */
function nonCanonical(raw: Buffer): boolean {
  if ((raw[31]! & 0x7f) !== 0x7f) return false
  for (let i = 30; i >= 1; i--) if (raw[i] !== 0xff) return false
  return raw[0]! >= 0xed
}

/** A parsed Ed25519 public key, or null when `pem` is not one we can trust to mean a holder of its private key. */
export function ed25519Key(pem: string): KeyObject | null {
  if (!PUBLIC_PEM.test(pem)) return null
  try {
    const key = createPublicKey({ key: pem, format: 'pem' })
    if (key.asymmetricKeyType !== 'ed25519') return null
    const raw = key.export({ format: 'der', type: 'spki' }).subarray(-32)
    if (SMALL_ORDER.has(raw.toString('hex')) || nonCanonical(raw)) return null
    return key
  } catch {
    return null
  }
}

/** True when `signatureHex` is `key`'s Ed25519 signature of one of the entry's canonical variants. */
export function verifyEntry(entry: Record<string, unknown>, key: KeyObject, signatureHex: string): boolean {
  if (!/^[0-9a-f]{128}$/i.test(signatureHex)) return false
  const signature = Buffer.from(signatureHex, 'hex')
  return variants(entry).some((keys) => verify(null, Buffer.from(canonical(entry, keys), 'utf8'), key, signature))
}

/** The `prev_hash` of the entry after one signed `signatureHex`: SHA-256 hex of the hex string. */
export function chainHash(signatureHex: string): string {
  return createHash('sha256').update(signatureHex, 'utf8').digest('hex')
}

/** A short, stable name for a public key (the chain is kept per key). */
export function keyFingerprint(key: KeyObject): string {
  return createHash('sha256')
    .update(key.export({ format: 'der', type: 'spki' }))
    .digest('hex')
}
