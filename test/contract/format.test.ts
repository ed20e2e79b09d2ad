/**
 * The code is as the formatter leaves it (Prettier, .prettierrc.json): `bun run format` fixes
 * what this finds.
 */
import { expect, test } from 'bun:test'
import path from 'node:path'
import { ROOT } from '../helpers/process.ts'

test('prettier --check finds nothing to reformat', async () => {
  const proc = Bun.spawn([path.join(ROOT, 'node_modules/.bin/prettier'), '--check', '.'], {
    cwd: ROOT,
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  expect({ code, unformatted: code === 0 ? '' : `${out}${err}` }).toEqual({ code: 0, unformatted: '' })
})
