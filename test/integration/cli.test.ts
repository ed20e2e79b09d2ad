/**
 * The binary as an operator runs it: zero-config start on an embedded Postgres in a fresh data
 * dir, first-start credentials printed once, graceful SIGTERM, recovery after SIGKILL, and the
 * CLI's answers to good and bad input. Real processes, real Postgres, no mocks.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { childEnv, cleanUp, freePort, runCli, scratchDataDir, startServer } from '../helpers/process.ts'
import { HOOK_TIMEOUT_MS } from '../helpers/db.ts'

const dataDir = () => scratchDataDir('quint-cli-')
afterAll(cleanUp, HOOK_TIMEOUT_MS)

function postmasterPid(dir: string): number | null {
  try {
    return Number(fs.readFileSync(path.join(dir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0])
  } catch {
    return null
  }
}

/** Running, and not a zombie: an orphan whose killed parent nobody reaps stays listed as Z. */
function alive(pid: number | null): boolean {
  if (!pid) return false
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

describe('serve on an embedded Postgres', () => {
  test('first start creates an org and prints its credentials once; they work; SIGTERM exits 0; a restart prints nothing', async () => {
    const dir = dataDir()
    const env = childEnv({ QUINT_DATA_DIR: dir, SHUTDOWN_TIMEOUT_MS: '10000' })
    const first = await startServer(env)
    const adminKey = /admin API key : (qk_[0-9a-f]{64})/.exec(first.stderr())?.[1]
    const deployToken = /deploy token  : (qt_deploy_[0-9a-f]{32})/.exec(first.stderr())?.[1]
    expect(adminKey).toBeDefined()
    expect(deployToken).toBeDefined()

    const health = await fetch(`${first.url}/health`)
    expect(await health.json()).toMatchObject({ status: 'ok' })
    // The banner names where to open the console (issue 12), and the console is there.
    const port = new URL(first.url).port
    expect(first.stderr()).toContain(`Open the console at http://127.0.0.1:${port}/ and paste the admin API key.`)
    const page = await fetch(`${first.url}/`)
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('<meta name="quint-console"')
    const created = await fetch(`${first.url}/v1/deploy-tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'laptop' }),
    })
    expect(created.status).toBe(201)
    const { token } = (await created.json()) as { token: string }

    first.proc.kill('SIGTERM')
    expect(await first.exited).toBe(0)
    const logs = first.stdout()
    expect(logs).toContain('"msg":"shutdown step done"')
    // Every stdout line is JSON, and no raw credential ever reached the logs.
    for (const line of logs.trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow()
    for (const secret of [adminKey!, deployToken!, token]) expect(logs).not.toContain(secret)
    expect(alive(postmasterPid(dir))).toBe(false) // embedded Postgres stopped with us
    expect(fs.statSync(path.join(dir, 'pg-credentials.json')).mode & 0o777).toBe(0o600)

    const second = await startServer(env)
    expect(second.stderr()).not.toContain('admin API key')
    const list = await fetch(`${second.url}/v1/deploy-tokens`, { headers: { authorization: `Bearer ${adminKey}` } })
    expect(((await list.json()) as { deploy_tokens: unknown[] }).deploy_tokens.length).toBe(2)
    second.proc.kill('SIGTERM')
    expect(await second.exited).toBe(0)
  })

  test('after SIGKILL the next start takes over the orphaned Postgres and keeps every committed row', async () => {
    const dir = dataDir()
    const env = childEnv({ QUINT_DATA_DIR: dir })
    const first = await startServer(env)
    const adminKey = /admin API key : (qk_[0-9a-f]{64})/.exec(first.stderr())![1]!
    const made = await fetch(`${first.url}/v1/deploy-tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'before-kill' }),
    })
    expect(made.status).toBe(201)
    first.proc.kill('SIGKILL')
    await first.exited
    const orphan = postmasterPid(dir)
    expect(alive(orphan)).toBe(true) // SIGKILL leaves Postgres running

    const second = await startServer(env)
    expect(second.stdout()).toContain('embedded postgres already running')
    const list = await fetch(`${second.url}/v1/deploy-tokens`, { headers: { authorization: `Bearer ${adminKey}` } })
    const names = ((await list.json()) as { deploy_tokens: { name: string }[] }).deploy_tokens.map((t) => t.name)
    expect(names).toContain('before-kill')
    second.proc.kill('SIGTERM')
    expect(await second.exited).toBe(0)
    expect(alive(orphan)).toBe(false)
  })

  test('a stale postmaster.pid naming a live, unrelated process is neither adopted nor signalled', async () => {
    const dir = dataDir()
    const env = childEnv({ QUINT_DATA_DIR: dir })
    const first = await startServer(env)
    first.proc.kill('SIGTERM')
    expect(await first.exited).toBe(0)
    // As after a container restart: the old file, with a pid now used by another program (us).
    const pgDir = path.join(dir, 'pg')
    fs.writeFileSync(path.join(pgDir, 'postmaster.pid'), `${process.pid}\n${pgDir}\n0\n5432\n${pgDir}\n\n0 0\nready   \n`)
    const second = await startServer(env)
    expect(alive(postmasterPid(dir))).toBe(true)
    expect(postmasterPid(dir)).not.toBe(process.pid)
    second.proc.kill('SIGTERM')
    expect(await second.exited).toBe(0)
  })

  test('a second server on the same data dir is refused', async () => {
    const dir = dataDir()
    const env = childEnv({ QUINT_DATA_DIR: dir })
    const first = await startServer(env)
    const second = await runCli(['serve'], { ...env, PORT: String(await freePort()) })
    expect(second.code).toBe(1)
    expect(second.stderr).toContain('another quint-cloud server')
    expect((await fetch(`${first.url}/ready`)).status).toBe(200)
    first.proc.kill('SIGTERM')
    expect(await first.exited).toBe(0)
  })
})

describe('CLI', () => {
  test('org create --json prints exactly the documented object; migrate is then a no-op', async () => {
    const env = childEnv({ QUINT_DATA_DIR: dataDir() })
    const res = await runCli(['org', 'create', '--name', 'Acme', '--json'], env)
    expect(res.code).toBe(0)
    const out = JSON.parse(res.stdout)
    expect(Object.keys(out).sort()).toEqual(['admin_key', 'deploy_token', 'org_id'])
    expect(out.org_id).toMatch(/^[0-9a-f-]{36}$/)
    expect(out.admin_key).toMatch(/^qk_[0-9a-f]{64}$/)
    expect(out.deploy_token).toMatch(/^qt_deploy_[0-9a-f]{32}$/)
    const migrate = await runCli(['migrate', '--json'], env)
    expect(migrate.code).toBe(0)
    expect(JSON.parse(migrate.stdout)).toMatchObject({ applied: [] })
    // With its first owner invited (issue 10): claimed at their first sign-in.
    const owned = await runCli(['org', 'create', '--name', 'Bolt', '--owner-email', 'Boss@Bolt.example', '--json'], env)
    expect(owned.code).toBe(0)
    expect(JSON.parse(owned.stdout)).toMatchObject({ owner_invited: 'boss@bolt.example' })
  })

  test.each([
    [['org', 'create'], 'needs --name'],
    [['org', 'create', '--name', '  '], 'must not be blank'],
    [['org', 'create', '--name', 'x', '--bogus'], 'bogus'],
    [['org', 'create', '--name', 'x', '--owner-email', 'nope'], 'not an email address'],
    [['org', 'delete'], 'usage'],
    [['frobnicate'], 'unknown command'],
    [['serve', 'extra'], 'takes no arguments'],
  ])('%j exits 2 with a clear message', async (args, message) => {
    const res = await runCli(args, childEnv({ QUINT_DATA_DIR: dataDir() }))
    expect(res.code).toBe(2)
    expect(res.stderr).toContain(message)
  })

  test('an unusable bootstrap org name is a configuration error (exit 2), caught before anything starts', async () => {
    const res = await runCli(['serve'], childEnv({ QUINT_DATA_DIR: dataDir(), QUINT_BOOTSTRAP_ORG: 'x'.repeat(300) }))
    expect(res.code).toBe(2)
    expect(res.stderr).toContain('QUINT_BOOTSTRAP_ORG')
  })

  test('bad configuration lists every bad variable at once, without echoing secrets, and exits 2', async () => {
    const res = await runCli(
      ['migrate'],
      childEnv({
        PORT: 'eighty',
        LOG_LEVEL: 'loud',
        DATABASE_URL: 'mysql://user:hunter2@db/x',
        SHUTDOWN_TIMEOUT_MS: '5',
      }),
    )
    expect(res.code).toBe(2)
    for (const v of ['PORT', 'LOG_LEVEL', 'DATABASE_URL', 'SHUTDOWN_TIMEOUT_MS']) expect(res.stderr).toContain(v)
    expect(res.stderr).not.toContain('hunter2')
  })

  test('openapi prints the document without a database; help and --version work', async () => {
    const api = await runCli(['openapi'], childEnv({}))
    expect(api.code).toBe(0)
    expect(JSON.parse(api.stdout).paths).toHaveProperty('/v1/deploy-tokens')
    expect((await runCli(['--version'], childEnv({}))).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/)
    expect((await runCli(['help'], childEnv({}))).stdout).toContain('org create --name NAME')
  })

  test('healthcheck fails when nothing listens', async () => {
    const res = await runCli(['healthcheck', '--url', 'http://127.0.0.1:1/ready'], childEnv({}))
    expect(res.code).toBe(1)
  })
})
