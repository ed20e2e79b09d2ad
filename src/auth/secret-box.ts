/**
 * @module auth/secret-box
 * Secrets at rest (signing keys, webhook secrets) sealed with AES-256-GCM under the master key.
 * Sealed form: version byte ‖ 12-byte random nonce ‖ ciphertext ‖ 16-byte tag. The caller's
 * `context` (e.g. `signing-key:<org>:<kid>`) is the associated data, so a sealed value copied to
 * another org's or another key's row no longer opens (PITFALLS §2.7). Random nonces are safe
 * here: keys and webhooks are sealed thousands of times, far below GCM's 2^32 bound.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type { Config } from '../config.ts'
import type { Logger } from '../infra/log.ts'

const VERSION = 1
const NONCE = 12
const TAG = 16

/** A sealed value that does not open: tampered, sealed under another key, or for another context. */
export class SecretBoxError extends Error {}

export class SecretBox {
  readonly #key: Buffer

  constructor(masterKey: Uint8Array) {
    if (masterKey.byteLength !== 32) throw new Error('the master key must be 32 bytes')
    this.#key = Buffer.from(masterKey)
  }

  seal(plaintext: Uint8Array | string, context: string): Buffer {
    const nonce = randomBytes(NONCE)
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce)
    cipher.setAAD(Buffer.from(context, 'utf8'))
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()])
    return Buffer.concat([Buffer.of(VERSION), nonce, body, cipher.getAuthTag()])
  }

  /**
   * A 32-byte key for one purpose (`action-signature`, `override-cosign`, …), derived from the
   * master key with HKDF-SHA256 (RFC 5869; no salt, info = "quint/" + purpose). Every instance
   * with the same master key derives the same key, so no further secret needs configuring, and
   * keys of different purposes are independent: one leaking reveals neither the master key nor
   * the others. Rotating the master key changes every derived key.
   */
  derive(purpose: string): Buffer {
    if (!/^[a-z0-9][a-z0-9:._-]{0,63}$/.test(purpose)) throw new Error(`bad key purpose: ${purpose}`)
    return Buffer.from(hkdfSync('sha256', this.#key, Buffer.alloc(0), `quint/${purpose}`, 32))
  }

  open(sealed: Uint8Array, context: string): Buffer {
    const b = Buffer.from(sealed)
    if (b.length < 1 + NONCE + TAG || b[0] !== VERSION) throw new SecretBoxError('not a sealed value of a known version')
    const decipher = createDecipheriv('aes-256-gcm', this.#key, b.subarray(1, 1 + NONCE))
    decipher.setAAD(Buffer.from(context, 'utf8'))
    decipher.setAuthTag(b.subarray(b.length - TAG))
    try {
      return Buffer.concat([decipher.update(b.subarray(1 + NONCE, b.length - TAG)), decipher.final()])
    } catch {
      throw new SecretBoxError('the sealed value does not open with this key and context')
    }
  }
}

/**
 * AUTH_MASTER_KEY, or a key generated once into `<data dir>/master.key` (0600). Generated keys
 * suit one instance; instances sharing a database must all be given the same AUTH_MASTER_KEY.
 */
export function loadMasterKey(config: Pick<Config, 'AUTH_MASTER_KEY' | 'DATABASE_URL' | 'dataDir'>, log: Logger): Buffer {
  if (config.AUTH_MASTER_KEY) return Buffer.from(config.AUTH_MASTER_KEY, 'hex')
  const file = path.join(config.dataDir, 'master.key')
  fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
  try {
    // wx: two processes starting together never both write; the loser reads the winner's key.
    fs.writeFileSync(file, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' })
    if (config.DATABASE_URL) {
      log.warn(
        { file },
        'AUTH_MASTER_KEY is unset: generated a master key in the data dir; instances sharing this database need the same AUTH_MASTER_KEY',
      )
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  const hex = fs.readFileSync(file, 'utf8').trim()
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`${file} does not hold a 64-hex master key`)
  return Buffer.from(hex, 'hex')
}
