/**
 * @module auth/action-signature
 * `X-Action-Signature` (SPEC §16.8, issue 4 item 6; docs/action-signatures.md): an HMAC-SHA256
 * over a canonical, domain-separated description of one request, keyed per token so the server
 * stores no per-token secret. Pure: callers pass the server secret and the clock in.
 *
 * Header: `t=<unix seconds>,v1=<64 lowercase or uppercase hex>`. Canonical string (LF-separated,
 * no trailing LF):
 *
 *     quint-action-signature/v1
 *     <METHOD, upper case>
 *     <path and query exactly as signed, e.g. /v1/tools/call?x=1>
 *     <sha256 hex of the raw body bytes; of zero bytes when there is no body>
 *     <t>
 *     <jti of the bearer token>
 *     <org id>
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'

export const ACTION_SIGNATURE_TOLERANCE_S = 300
export const ACTION_SIGNATURE_HEADER = 'X-Action-Signature'
const DOMAIN = 'quint-action-signature/v1'
const KEY_DOMAIN = 'quint-action-key|v1|'
/** Longer headers are refused before any parsing; a valid one is ~80 characters. */
const MAX_HEADER_LENGTH = 512
const MAX_FIELDS = 8
const MIN_KEY_BYTES = 32

export interface ActionInput {
  method: string
  /** Path plus query string (origin-form request target), no scheme or host. */
  path: string
  body: Uint8Array
  jti: string
  orgId: string
}

export type ActionSignatureCheck = { ok: true } | { ok: false; reason: 'malformed' | 'timestamp_outside_tolerance' | 'mismatch' }

const METHOD = /^[A-Za-z]{1,16}$/
// A field that could contain LF would let two different requests share a canonical string.
const NO_LINE_BREAK = /^[^\r\n]*$/
const HEX64 = /^[0-9a-fA-F]{64}$/
const TIMESTAMP = /^[0-9]{1,12}$/

function fieldProblem(input: ActionInput & { timestamp: number }): string | undefined {
  if (typeof input.method !== 'string' || !METHOD.test(input.method)) return 'method must be 1-16 ASCII letters'
  if (typeof input.path !== 'string' || !input.path.startsWith('/') || !NO_LINE_BREAK.test(input.path)) {
    return 'path must start with / and contain no line break'
  }
  if (!(input.body instanceof Uint8Array)) return 'body must be bytes'
  if (!Number.isSafeInteger(input.timestamp) || input.timestamp < 0)
    return 'timestamp must be a non-negative integer (unix seconds)'
  for (const [name, v] of [
    ['jti', input.jti],
    ['orgId', input.orgId],
  ] as const) {
    if (typeof v !== 'string' || v.length === 0 || !NO_LINE_BREAK.test(v))
      return `${name} must be a non-empty string without line breaks`
  }
  return undefined
}

/** The exact bytes (as UTF-8) that the MAC covers. Throws TypeError on a field that cannot be encoded unambiguously. */
export function canonicalActionString(input: ActionInput & { timestamp: number }): string {
  const problem = fieldProblem(input)
  if (problem) throw new TypeError(`action signature: ${problem}`)
  const bodyHash = createHash('sha256').update(input.body).digest('hex')
  return [DOMAIN, input.method.toUpperCase(), input.path, bodyHash, String(input.timestamp), input.jti, input.orgId].join('\n')
}

function requireKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length < MIN_KEY_BYTES) {
    throw new TypeError(`action signature: key must be at least ${MIN_KEY_BYTES} bytes`)
  }
}

function mac(key: Uint8Array, input: ActionInput & { timestamp: number }): Buffer {
  return createHmac('sha256', key).update(canonicalActionString(input), 'utf8').digest()
}

/** The header value a client sends: `t=<timestamp>,v1=<hex>`. */
export function signAction(key: Uint8Array, input: ActionInput & { timestamp: number }): string {
  requireKey(key)
  return `t=${input.timestamp},v1=${mac(key, input).toString('hex')}`
}

/** Parses `t=…,v1=…`; unknown `name=value` fields are ignored (room for a later `v2`). */
function parseHeader(header: string): { t: number; v1: string } | undefined {
  if (header.length === 0 || header.length > MAX_HEADER_LENGTH) return undefined
  const parts = header.split(',')
  if (parts.length > MAX_FIELDS) return undefined
  let t: string | undefined
  let v1: string | undefined
  for (const raw of parts) {
    const part = raw.trim()
    const eq = part.indexOf('=')
    if (eq <= 0) return undefined
    const name = part.slice(0, eq)
    const value = part.slice(eq + 1)
    if (!/^[a-z][a-z0-9]{0,15}$/.test(name)) return undefined
    if (name === 't') {
      if (t !== undefined || !TIMESTAMP.test(value)) return undefined
      t = value
    } else if (name === 'v1') {
      if (v1 !== undefined || !HEX64.test(value)) return undefined
      v1 = value
    }
  }
  if (t === undefined || v1 === undefined) return undefined
  return { t: Number(t), v1 }
}

/**
 * Checks a presented header against the request. Never throws on anything the client controls
 * (missing, empty, oversized, wrong-length or non-hex header; odd request fields): those are
 * `malformed`. The timestamp must be within ±ACTION_SIGNATURE_TOLERANCE_S of `nowS`, both ways.
 * The MAC comparison is constant-time over two 32-byte buffers; the length is fixed by the parse
 * (64 hex digits), so timingSafeEqual can never see different lengths. What the early returns
 * reveal (the shape of the attacker's own header, the public timestamp) involves no secret.
 * A replay inside the window verifies: callers that need single use track `(org, jti, t, v1)`.
 */
export function verifyActionSignature(
  key: Uint8Array,
  header: string | undefined | null,
  input: ActionInput,
  nowS: number,
): ActionSignatureCheck {
  requireKey(key)
  if (typeof header !== 'string') return { ok: false, reason: 'malformed' }
  const parsed = parseHeader(header)
  if (!parsed) return { ok: false, reason: 'malformed' }
  const signedInput = { ...input, timestamp: parsed.t }
  if (fieldProblem(signedInput)) return { ok: false, reason: 'malformed' }
  if (!Number.isFinite(nowS) || Math.abs(Math.floor(nowS) - parsed.t) > ACTION_SIGNATURE_TOLERANCE_S) {
    return { ok: false, reason: 'timestamp_outside_tolerance' }
  }
  const expected = mac(key, signedInput)
  const presented = Buffer.from(parsed.v1, 'hex')
  if (presented.length !== expected.length) return { ok: false, reason: 'malformed' } // unreachable: HEX64
  return timingSafeEqual(presented, expected) ? { ok: true } : { ok: false, reason: 'mismatch' }
}

/**
 * The per-token signing key: HMAC-SHA256(serverSecret, "quint-action-key|v1|" + orgId + "|" + jti).
 * Derived on demand, so nothing per token is stored; it is handed to the client once, in the
 * response that mints the token (docs/action-signatures.md). Throws TypeError when orgId or jti is
 * empty or contains `|` (that would make two (org, jti) pairs derive one key) or when the server
 * secret is shorter than 32 bytes.
 */
export function actionKeyFor(serverSecret: Uint8Array, orgId: string, jti: string): Buffer {
  requireKey(serverSecret)
  for (const [name, v] of [
    ['orgId', orgId],
    ['jti', jti],
  ] as const) {
    if (typeof v !== 'string' || v.length === 0 || v.includes('|'))
      throw new TypeError(`action key: ${name} must be non-empty and contain no "|"`)
  }
  return createHmac('sha256', serverSecret).update(`${KEY_DOMAIN}${orgId}|${jti}`, 'utf8').digest()
}
