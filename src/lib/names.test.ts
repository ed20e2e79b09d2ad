import { expect, test } from 'bun:test'
import { checkName } from './names.ts'

test('names are trimmed, non-blank, at most 200 characters, free of control characters', () => {
  expect(checkName('  Acme  ')).toEqual({ ok: true, name: 'Acme' })
  expect(checkName('Ünïcødé 🚀')).toEqual({ ok: true, name: 'Ünïcødé 🚀' })
  for (const bad of ['', '   ', 'a\u0000b', 'a\nb', 'x'.repeat(201)]) expect(checkName(bad).ok).toBe(false)
})
