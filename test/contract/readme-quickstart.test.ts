/**
 * The README's quick start is run as written (issue 14: docs that match the code). Its shell
 * blocks are executed in order in a scratch directory, with three substitutions only: a free port
 * instead of 8000, the checkout's `src/main.ts serve` instead of `bun run start` (which needs the
 * checkout as working directory), and a short wait before the alert is read (the consumers derive
 * it in the background, as the README says).
 */
import { afterAll, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { removeDataDir } from '../../src/infra/embedded-postgres.ts'
import { HOOK_TIMEOUT_MS } from '../helpers/db.ts'
import { childEnv, freePort, ROOT } from '../helpers/process.ts'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-readme-'))
afterAll(() => {
  removeDataDir(path.join(dir, '.quint'))
  fs.rmSync(dir, { recursive: true, force: true })
}, HOOK_TIMEOUT_MS)

test('the quick start works as written: credentials from the banner, an event in, its alerts out, a deploy token revoked', async () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('### Tests'))
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!)
  expect(blocks.length).toBeGreaterThanOrEqual(4)
  expect(blocks[0]).toContain('npm i -g bun@1.4.5 && bun install')
  const port = await freePort()
  const script = [
    'set -eu',
    ...blocks.map((b) =>
      b
        .replace('npm i -g bun@1.4.5 && bun install\n', '')
        .replace('bun run start', `bun ${path.join(ROOT, 'src/main.ts')} serve`)
        .replaceAll('localhost:8000', `localhost:${port}`)
        .replace('curl -s localhost', (m) => (b.includes('/v1/alerts') ? `sleep 2; ${m}` : m)),
    ),
    'echo; echo "DELETED=$(curl -s -o /dev/null -w "%{http_code}" -X DELETE localhost:' +
      port +
      '/v1/deploy-tokens/$ID -H "Authorization: Bearer $ADMIN_KEY")"',
    'kill %1; wait',
  ].join('\n')
  const proc = Bun.spawn(['bash', '-c', script], {
    cwd: dir,
    env: childEnv({ PORT: String(port), QUINT_DATA_DIR: path.join(dir, '.quint') }),
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  expect({ code, err: code === 0 ? '' : err }).toEqual({ code: 0, err: '' })
  expect(out).toContain('"accepted":1')
  expect(out).toContain('"rule_key":"builtin:destructive_command"')
  expect(out).toContain('"rule_key":"builtin:high_risk"')
  expect(out).toMatch(/"token":"qt_deploy_[0-9a-f]{32}"/)
  // The README's own DELETE ran first (204); deleting again is idempotent.
  expect(out).toContain('DELETED=204')
  expect(fs.readFileSync(path.join(dir, 'quint.log'), 'utf8')).toContain('"route":"/v1/deploy-tokens/:id","status":204')
}, 90_000)

test('one Bun version everywhere: the README install, .ci/run, engines.bun and the running Bun', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const installed = /npm i -g bun@(\d+\.\d+\.\d+)/.exec(readme)?.[1]
  const ci = /BUN_VERSION=(\d+\.\d+\.\d+)/.exec(fs.readFileSync(path.join(ROOT, '.ci/run'), 'utf8'))?.[1]
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { engines: { bun: string } }
  if (!installed) throw new Error('the README installs no pinned Bun version')
  expect({ ci, engines: pkg.engines.bun, running: Bun.version }).toEqual({
    ci: installed,
    engines: `>=${installed}`,
    running: installed,
  })
})
