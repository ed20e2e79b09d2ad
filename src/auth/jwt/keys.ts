/**
 * @module auth/jwt/keys
 * Per-org ES256 (P-256) signing keys. The private key (PKCS8 DER) is sealed with the SecretBox
 * under the context `signing-key:<org>:<kid>`, so a row copied to another org or kid no longer
 * opens. An org gets its first key lazily, on first need; two instances doing that at once both
 * insert under the partial unique index `signing_keys_one_active`, one wins, the other re-reads.
 *
 * Rotation retires the active key with `verify_until = now + longest token TTL + signer refresh`:
 * another instance may keep signing with the retired key until its signer cache refreshes
 * (SIGNER_REFRESH_MS), and every token it signs must stay verifiable for its whole life.
 *
 * Caches: public keys by (org, kid), with a short negative cache so a stream of tokens naming an
 * unknown kid costs one query per (org, kid) per NEGATIVE_TTL_MS, not one per request; the
 * active private key per org, re-read every SIGNER_REFRESH_MS.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto'
import { withOrg, type Sql, type Tx } from '../../infra/db.ts'
import type { Logger } from '../../infra/log.ts'
import { KID_PATTERN } from './jws.ts'
import type { SecretBox } from '../secret-box.ts'

export const SIGNER_REFRESH_MS = 60_000
const PUBLIC_TTL_MS = 5 * 60_000
const NEGATIVE_TTL_MS = 30_000
const MAX_CACHED = 50_000

export interface PublicJwk {
  kid: string
  kty: 'EC'
  crv: 'P-256'
  x: string
  y: string
  alg: 'ES256'
  use: 'sig'
}

export interface KeyRow {
  kid: string
  public_jwk: PublicJwk
  public_pem: string
  status: 'active' | 'retired'
  created_at: Date
  retired_at: Date | null
  verify_until: Date | null
}

export interface Signer {
  kid: string
  privateKey: KeyObject
}

interface PublicEntry {
  key: KeyObject | null
  /** Key stops verifying at this time (ms); Infinity while active. */
  verifyUntil: number
  cachedUntil: number
}

export class KeyNotFoundError extends Error {}

export function newKid(): string {
  return randomBytes(16).toString('base64url')
}

const sealContext = (orgId: string, kid: string) => `signing-key:${orgId}:${kid}`

export class SigningKeys {
  readonly #public = new Map<string, PublicEntry>()
  readonly #signers = new Map<string, { signer: Signer; until: number }>()
  readonly #inflight = new Map<string, Promise<Signer>>()
  readonly #sql: Sql
  readonly #secrets: SecretBox
  readonly #log: Logger
  /** Longest lifetime any token may have (ms): how long a retired key keeps verifying. */
  readonly #maxTokenTtlMs: number

  constructor(sql: Sql, secrets: SecretBox, log: Logger, options: { maxTokenTtlMs: number }) {
    this.#sql = sql
    this.#secrets = secrets
    this.#log = log
    this.#maxTokenTtlMs = options.maxTokenTtlMs
  }

  /** The org's active signing key, created on first need. */
  signer(orgId: string): Promise<Signer> {
    const hit = this.#signers.get(orgId)
    if (hit && hit.until > Date.now()) return Promise.resolve(hit.signer)
    let p = this.#inflight.get(orgId)
    if (!p) {
      p = this.#loadSigner(orgId).finally(() => this.#inflight.delete(orgId))
      this.#inflight.set(orgId, p)
    }
    return p
  }

  /**
   * The public key that verifies tokens of `orgId` signed under `kid`, or null (unknown, retired
   * past its verify_until, or another org's kid). Synchronous on a cache hit.
   */
  publicKey(orgId: string, kid: string): KeyObject | null | Promise<KeyObject | null> {
    const k = `${orgId}/${kid}`
    const now = Date.now()
    const e = this.#public.get(k)
    if (e && e.cachedUntil > now) return e.key && e.verifyUntil > now ? e.key : null
    return this.#loadPublic(orgId, kid, k)
  }

  /** Every key of the org that still verifies, active first (for `GET /keys/public/{org}`). */
  async verifyingKeys(orgId: string): Promise<KeyRow[]> {
    return withOrg(
      this.#sql,
      orgId,
      (tx) => tx<KeyRow[]>`
      select kid, public_jwk, public_pem, status, created_at, retired_at, verify_until
        from auth.signing_keys
       where status = 'active' or verify_until > now()
       order by (status = 'active') desc, created_at desc`,
    )
  }

  /** The active key row, created when the org has none. */
  async ensureActive(orgId: string): Promise<{ row: KeyRow; created: boolean }> {
    return withOrg(this.#sql, orgId, async (tx) => {
      const existing = await activeRow(tx)
      if (existing) return { row: existing, created: false }
      const created = await this.#insertActive(tx, orgId)
      return created ? { row: created, created: true } : { row: (await activeRow(tx))!, created: false }
    })
  }

  /**
   * Retires the active key `kid` and activates a new one, in one transaction. Throws
   * KeyNotFoundError when `kid` is not the org's active key.
   */
  /** `record` runs in the rotation's transaction (the audit log: committed with it, or not at all). */
  async rotate(orgId: string, kid: string, record?: (tx: Tx, fresh: KeyRow) => Promise<void>): Promise<KeyRow> {
    const row = await withOrg(this.#sql, orgId, async (tx) => {
      const [cur] = await tx<{ kid: string }[]>`
        select kid from auth.signing_keys where kid = ${kid} and status = 'active' for update`
      if (!cur) throw new KeyNotFoundError(kid)
      const graceMs = this.#maxTokenTtlMs + SIGNER_REFRESH_MS
      await tx`
        update auth.signing_keys
           set status = 'retired', retired_at = now(), verify_until = now() + ${graceMs / 1000} * interval '1 second'
         where kid = ${kid}`
      const fresh = await this.#insertActive(tx, orgId)
      if (!fresh) throw new Error('a concurrent rotation activated another key')
      await record?.(tx, fresh)
      return fresh
    })
    this.#signers.delete(orgId)
    this.#public.delete(`${orgId}/${kid}`)
    return row
  }

  async #loadSigner(orgId: string): Promise<Signer> {
    const { row } = await this.ensureActive(orgId)
    const [sealed] = await withOrg(
      this.#sql,
      orgId,
      (tx) => tx<{ c: Buffer }[]>`
      select private_key_ciphertext as c from auth.signing_keys where kid = ${row.kid}`,
    )
    const der = this.#secrets.open(sealed!.c, sealContext(orgId, row.kid))
    const signer = { kid: row.kid, privateKey: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }) }
    this.#signers.set(orgId, { signer, until: Date.now() + SIGNER_REFRESH_MS })
    return signer
  }

  async #loadPublic(orgId: string, kid: string, cacheKey: string): Promise<KeyObject | null> {
    const now = Date.now()
    let entry: PublicEntry = { key: null, verifyUntil: 0, cachedUntil: now + NEGATIVE_TTL_MS }
    if (KID_PATTERN.test(kid)) {
      const [row] = await withOrg(
        this.#sql,
        orgId,
        (tx) => tx<{ public_pem: string; status: string; verify_until: Date | null }[]>`
        select public_pem, status, verify_until from auth.signing_keys where kid = ${kid}`,
      )
      if (row) {
        const verifyUntil = row.status === 'active' ? Number.POSITIVE_INFINITY : (row.verify_until?.getTime() ?? 0)
        entry = { key: createPublicKey(row.public_pem), verifyUntil, cachedUntil: now + PUBLIC_TTL_MS }
      }
    }
    if (this.#public.size >= MAX_CACHED) {
      const oldest = this.#public.keys().next().value
      if (oldest !== undefined) this.#public.delete(oldest)
    }
    this.#public.set(cacheKey, entry)
    return entry.key && entry.verifyUntil > now ? entry.key : null
  }

  /** Inserts a new active key; null when another transaction's active key won the race. */
  async #insertActive(tx: Tx, orgId: string): Promise<KeyRow | null> {
    const kid = newKid()
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const jwk = publicKey.export({ format: 'jwk' }) as { x: string; y: string }
    const publicJwk: PublicJwk = { kid, kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, alg: 'ES256', use: 'sig' }
    const pem = publicKey.export({ format: 'pem', type: 'spki' }) as string
    const sealed = this.#secrets.seal(privateKey.export({ format: 'der', type: 'pkcs8' }), sealContext(orgId, kid))
    const rows = await tx<KeyRow[]>`
      insert into auth.signing_keys (org_id, kid, public_jwk, public_pem, private_key_ciphertext)
      values (${orgId}, ${kid}, ${tx.json(publicJwk as never)}, ${pem}, ${sealed})
      on conflict (org_id) where status = 'active' do nothing
      returning kid, public_jwk, public_pem, status, created_at, retired_at, verify_until`
    if (rows[0]) this.#log.info({ org_id: orgId, kid }, 'signing key created')
    return rows[0] ?? null
  }
}

async function activeRow(tx: Tx): Promise<KeyRow | undefined> {
  const [row] = await tx<KeyRow[]>`
    select kid, public_jwk, public_pem, status, created_at, retired_at, verify_until
      from auth.signing_keys where status = 'active'`
  return row
}
