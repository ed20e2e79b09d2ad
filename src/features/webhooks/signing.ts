/**
 * @module features/webhooks/signing
 * Webhook secrets and the two signature headers every delivery carries:
 *
 * - Standard Webhooks v1 (PITFALLS §2.6): `webhook-id`, `webhook-timestamp` (unix seconds) and
 *   `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where the key is
 *   the base64-decoded part of `whsec_<base64>`. Several signatures are space-separated.
 * - `X-Quint-Signature: t=<timestamp>,v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>` (SPEC
 *   §16.8, Stripe-style), keyed with the whole secret string `whsec_…` as UTF-8, as Stripe does.
 *
 * During a rotation's grace period both the new and the old secret sign, so a receiver that has
 * either one keeps verifying.
 */
import { createHmac, randomBytes } from 'node:crypto'

const PREFIX = 'whsec_'
const SECRET_BYTES = 32

/** A new secret: `whsec_` + base64 of 32 random bytes (the spec allows 24–64). */
export function newSecret(): string {
  return PREFIX + randomBytes(SECRET_BYTES).toString('base64')
}

/** The HMAC key of a Standard Webhooks secret: the bytes the base64 part encodes. */
export function secretKey(secret: string): Buffer {
  if (!secret.startsWith(PREFIX)) throw new Error('not a whsec_ secret')
  return Buffer.from(secret.slice(PREFIX.length), 'base64')
}

export interface SignedHeaders {
  'webhook-id': string
  'webhook-timestamp': string
  'webhook-signature': string
  'x-quint-signature': string
}

/**
 * Headers for one attempt. `secrets` lists the current secret first, then any still-valid
 * previous one. `body` is the exact string sent.
 */
export function signDelivery(messageId: string, timestamp: number, body: string, secrets: readonly string[]): SignedHeaders {
  if (messageId.includes('.')) throw new Error('a webhook id must not contain "."')
  const ts = String(timestamp)
  const standard = secrets.map(
    (s) => 'v1,' + createHmac('sha256', secretKey(s)).update(`${messageId}.${ts}.${body}`).digest('base64'),
  )
  const quint = secrets.map((s) => 'v1=' + createHmac('sha256', s).update(`${ts}.${body}`).digest('hex'))
  return {
    'webhook-id': messageId,
    'webhook-timestamp': ts,
    'webhook-signature': standard.join(' '),
    'x-quint-signature': [`t=${ts}`, ...quint].join(','),
  }
}
