/**
 * @module auth/opaque/format
 * Opaque credentials: random secrets with a type prefix (SPEC §2). Only SHA-256(token) is
 * stored; the raw value is shown once at creation. Prefixes tell kinds apart before any lookup.
 */
import { createHash, randomBytes } from 'node:crypto'

export type TokenKind = 'install' | 'enrollment' | 'service' | 'personal' | 'api_key'

interface Format {
  prefix: string
  /** Random bytes in a newly minted token (hex-encoded after the prefix). */
  bytes: number
  kind: TokenKind
}

/** What we mint. */
export const FORMATS = {
  adminKey: { prefix: 'qk_', bytes: 32, kind: 'api_key' },
  deployToken: { prefix: 'qt_deploy_', bytes: 16, kind: 'install' },
  /** Single use: exchanged at `POST /v1/machines/register` for a service token (issue 10). */
  enrollmentToken: { prefix: 'qt_dk_', bytes: 32, kind: 'enrollment' },
  /** CI/CD, or minted at registration for install/enrollment credentials, bound to one machine. */
  serviceToken: { prefix: 'qt_sk_', bytes: 32, kind: 'service' },
  /** A member's own token, within the member's role, revoked with the membership. */
  personalToken: { prefix: 'qt_pk_', bytes: 32, kind: 'personal' },
} as const satisfies Record<string, Format>

export type OpaqueFormat = (typeof FORMATS)[keyof typeof FORMATS]

/**
 * Every opaque prefix accepted on the wire (SPEC §2, §3.3). Longest first, so `qt_deploy_` wins
 * over a shorter prefix it starts with. JWT-bearing `qt_app_` … `qt_override_` are not opaque.
 */
const ACCEPTED_PREFIXES = ['qt_deploy_', 'qt_dk_', 'qt_sk_', 'qt_pk_', 'qk_'] as const

// Secrets are hex; the length bounds keep absurd headers out of the hash and cache.
const OPAQUE = /^(qt_deploy_|qt_dk_|qt_sk_|qt_pk_|qk_)[0-9a-f]{32,128}$/

export interface MintedToken {
  raw: string
  hash: Buffer
  /** Non-secret hint shown in listings: the prefix and first 4 hex characters. */
  displayPrefix: string
}

export function mintToken(format: Format): MintedToken {
  const raw = format.prefix + randomBytes(format.bytes).toString('hex')
  return { raw, hash: hashToken(raw), displayPrefix: raw.slice(0, format.prefix.length + 4) }
}

export function hashToken(raw: string): Buffer {
  return createHash('sha256').update(raw, 'utf8').digest()
}

/** True for strings shaped like an opaque credential we could have issued. */
export function isOpaqueToken(raw: string): boolean {
  return OPAQUE.test(raw)
}

export function opaquePrefix(raw: string): string | undefined {
  return ACCEPTED_PREFIXES.find((p) => raw.startsWith(p))
}
