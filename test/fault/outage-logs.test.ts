/**
 * A database outage as the operator's log shows it (issue 14, item 14): requests answer 503 with
 * Retry-After, but the error log is not flooded (it was 24 error lines in 5 s, one per retry of
 * every loop and one per request), and the readiness probe's 503s are not errors at all.
 * A real `serve` process on its embedded Postgres, which the test stops.
 */
import { afterAll, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { removeDataDir } from '../../src/infra/embedded-postgres.ts'
import { HOOK_TIMEOUT_MS } from '../helpers/db.ts'
import { childEnv, killSpawned, startServer } from '../helpers/process.ts'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-outage-'))
afterAll(async () => {
  await killSpawned()
  removeDataDir(dir)
}, HOOK_TIMEOUT_MS)

test('during a database outage: 503s with Retry-After, a few error lines, none for /ready', async () => {
  const server = await startServer(
    childEnv({ QUINT_DATA_DIR: dir, LOG_LEVEL: 'info', CONSUMER_POLL_MS: '100', WEBHOOK_POLL_MS: '100' }),
  )
  const adminKey = /admin API key : (qk_[0-9a-f]{64})/.exec(server.stderr())![1]!
  const postmaster = Number(fs.readFileSync(path.join(dir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0])
  process.kill(postmaster, 'SIGINT')
  for (let i = 0; i < 100 && fs.existsSync(path.join(dir, 'pg', 'postmaster.pid')); i++) await Bun.sleep(100)
  // /ready reuses its last database probe for a second.
  await Bun.sleep(1_100)
  const from = server.stdout().length

  const statuses = new Set<number>()
  const started = Date.now()
  while (Date.now() - started < 5_000) {
    // A fresh credential each time: a cached one would not need the database.
    const alerts = await fetch(`${server.url}/v1/alerts`, {
      headers: { authorization: `Bearer qk_${'0'.repeat(63)}${Date.now() % 10}` },
    })
    statuses.add(alerts.status)
    if (alerts.status === 503) expect(alerts.headers.get('retry-after')).not.toBeNull()
    const listed = await fetch(`${server.url}/v1/deploy-tokens`, { headers: { authorization: `Bearer ${adminKey}` } })
    statuses.add(listed.status)
    expect((await fetch(`${server.url}/ready`)).status).toBe(503)
    await Bun.sleep(100)
  }
  expect([...statuses]).toContain(503)
  expect([...statuses].filter((s) => s >= 500 && s !== 503)).toEqual([])

  const lines = server
    .stdout()
    .slice(from)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: string; msg: string; route?: string; status?: number })
  const errors = lines.filter((l) => l.level === 'error')
  // At most one line per failing loop (three consumer threads, the revocation poll, the webhook
  // loop), however many times each retried in these 5 s.
  expect(errors.length).toBeLessThanOrEqual(6)
  expect(lines.filter((l) => l.route === '/ready' && l.level !== 'info')).toEqual([])
  expect(
    lines.filter((l) => l.msg === 'request' && l.status === 503 && l.route !== '/ready').every((l) => l.level === 'warn'),
  ).toBe(true)
}, 60_000)
