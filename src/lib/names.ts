/**
 * @module lib/names
 * Human-given names (orgs, tokens): 1–200 characters after trimming, no control characters.
 */
import { Type } from '@sinclair/typebox'

export const NAME_MAX = 200

export const NameSchema = Type.String({
  minLength: 1,
  maxLength: NAME_MAX,
  pattern: '^[^\\u0000-\\u001f\\u007f]*\\S[^\\u0000-\\u001f\\u007f]*$',
  description: 'Display name: 1–200 characters, not blank, no control characters.',
})

/** Returns the trimmed name, or an explanation of why it is unacceptable. */
export function checkName(raw: string): { ok: true; name: string } | { ok: false; reason: string } {
  const name = raw.trim()
  if (name === '') return { ok: false, reason: 'name must not be blank' }
  if (name.length > NAME_MAX) return { ok: false, reason: `name must be at most ${NAME_MAX} characters` }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return { ok: false, reason: 'name must not contain control characters' }
  return { ok: true, name }
}
