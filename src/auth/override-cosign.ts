/**
 * @module auth/override-cosign
 * The cosignature returned by `POST /overrides/{event_id}/decide` (SPEC §16.7):
 * HMAC-SHA256(secret, "override|{event_id}|{decision}|{override_jti}") as 64 lowercase hex.
 * The string format is the Gen A service's, kept for compatibility. Pure: the secret is passed in.
 *
 * `|` separates fields without escaping. That stays unambiguous as long as the last two fields
 * cannot contain `|`: the jti is the part after the last `|`, the decision the part before it, and
 * whatever remains is the event id (which may contain anything). Both are server-controlled (a
 * UUID we minted and a value from `allowed_decisions`), and are checked here.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

const MIN_SECRET_BYTES = 32
const HEX64 = /^[0-9a-f]{64}$/

function cosignInput(eventId: string, decision: string, overrideJti: string): string {
  if (typeof eventId !== 'string' || eventId.length === 0) throw new TypeError('override cosignature: eventId must be non-empty')
  for (const [name, v] of [
    ['decision', decision],
    ['overrideJti', overrideJti],
  ] as const) {
    if (typeof v !== 'string' || v.length === 0 || v.includes('|')) {
      throw new TypeError(`override cosignature: ${name} must be non-empty and contain no "|"`)
    }
  }
  return `override|${eventId}|${decision}|${overrideJti}`
}

function requireSecret(secret: Uint8Array): void {
  if (!(secret instanceof Uint8Array) || secret.length < MIN_SECRET_BYTES) {
    throw new TypeError(`override cosignature: secret must be at least ${MIN_SECRET_BYTES} bytes`)
  }
}

/** HMAC-SHA256(secret, "override|{event_id}|{decision}|{override_jti}") as 64 lowercase hex. */
export function overrideCosignature(secret: Uint8Array, eventId: string, decision: string, overrideJti: string): string {
  requireSecret(secret)
  return createHmac('sha256', secret)
    .update(cosignInput(eventId, decision, overrideJti), 'utf8')
    .digest('hex')
}

/**
 * Constant-time check of a presented cosignature (e.g. by an auditor). False, never a throw, for
 * anything that is not 64 lowercase hex or for fields that could not have been cosigned.
 */
export function verifyOverrideCosignature(
  secret: Uint8Array,
  eventId: string,
  decision: string,
  overrideJti: string,
  presented: unknown,
): boolean {
  requireSecret(secret)
  if (typeof presented !== 'string' || !HEX64.test(presented)) return false
  let expected: string
  try {
    expected = overrideCosignature(secret, eventId, decision, overrideJti)
  } catch {
    return false
  }
  const a = Buffer.from(presented, 'hex')
  const b = Buffer.from(expected, 'hex')
  return a.length === b.length && timingSafeEqual(a, b)
}
