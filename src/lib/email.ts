/**
 * @module lib/email
 * The one rule for an email address a member is invited by (issue 10): printable ASCII around one
 * `@`, at most 320 characters, compared lower-cased. ASCII only: lower-casing Unicode folds
 * look-alikes onto real addresses (the Kelvin sign becomes `k`).
 */
export const EMAIL_PATTERN = '^[\\x21-\\x3f\\x41-\\x7e]+@[\\x21-\\x3f\\x41-\\x7e]+$'
export const MAX_EMAIL = 320
const EMAIL = new RegExp(EMAIL_PATTERN)

/** The address lower-cased, or null when it does not follow the rule. */
export function normalEmail(raw: string): string | null {
  return raw.length >= 3 && raw.length <= MAX_EMAIL && EMAIL.test(raw) ? raw.toLowerCase() : null
}
