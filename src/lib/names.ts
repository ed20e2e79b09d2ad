/**
 * @module lib/names
 * Human-given names (orgs, tokens): 1–200 characters after trimming, no control characters.
 */
import { Type } from '@sinclair/typebox'
import { ValidationError } from '../errors.ts'

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
  if (INVISIBLE.test(name)) return { ok: false, reason: 'name must not contain control, format or separator characters' }
  return { ok: true, name }
}

/** The checked name of a request field, or a 422 naming it. */
export function requireName(raw: string, pointer = '/name'): string {
  const name = checkName(raw)
  if (!name.ok) throw new ValidationError([{ path: pointer, message: name.reason }])
  return name.name
}

/**
 * Characters that do not show as themselves: C0 and C1 controls, zero-width and bidi controls
 * (a U+202E override makes `allow‮evil` read otherwise), line and paragraph separators, BOM.
 * A name or rule that holds one reads differently on a dashboard, in a terminal or in a log.
 */
// eslint-disable-next-line no-control-regex
export const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/
