/**
 * What an operator meets first (issue 14, items 15 and 16): every command's --help, a health
 * check pointed at a base URL, a port already in use, a start from `/`, and a shutdown while the
 * database hangs. Real processes, a real embedded Postgres.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { Lifecycle } from '../../src/lifecycle.ts'
import { MIGRATION_LOCK_KEY } from '../../src/infra/migrations.ts'
import { databaseEnv, HOOK_TIMEOUT_MS, testDatabase, testLog } from '../helpers/db.ts'
import { childEnv, cleanUp, freePort, ROOT, runCli, scratchDataDir, startServer } from '../helpers/process.ts'

const dataDir = () => scratchDataDir('quint-op-')
afterAll(cleanUp, HOOK_TIMEOUT_MS)

describe('CLI', () => {
  const commands = ['serve', 'migrate', 'org', 'openapi', 'bus', 'dead-letters', 'healthcheck', 'config']

  test('--help after every command prints its usage and does nothing else', async () => {
    const dir = dataDir()
    for (const command of commands) {
      const r = await runCli([command, '--help'], childEnv({ QUINT_DATA_DIR: dir }))
      expect({ command, code: r.code }).toEqual({ command, code: 0 })
      expect(r.stdout).toContain(`Usage: quint-cloud ${command}`)
    }
    // `serve --help` neither started a server nor initialised a database.
    expect(fs.readdirSync(dir)).toEqual([])
    const help = await runCli(['help', 'org'], childEnv({ QUINT_DATA_DIR: dir }))
    expect(help.stdout).toStartWith('Usage: quint-cloud org create')
    expect((await runCli(['help', 'nope'], childEnv({ QUINT_DATA_DIR: dir }))).code).toBe(2)
  })

  test('healthcheck --url takes a base URL (and a full /ready URL)', async () => {
    let status = 200
    const server = Bun.serve({
      port: 0,
      fetch: (req) => new Response(null, { status: new URL(req.url).pathname === '/ready' ? status : 404 }),
    })
    try {
      const base = `http://127.0.0.1:${server.port}`
      for (const url of [base, `${base}/`, `${base}/ready`, `${base}/ready/`]) {
        expect((await runCli(['healthcheck', '--url', url], childEnv({}))).code).toBe(0)
      }
      status = 503
      expect((await runCli(['healthcheck', '--url', base], childEnv({}))).code).toBe(1)
      // Docker reserves 2: bad usage is "unhealthy" too.
      expect((await runCli(['healthcheck', '--url', 'not a url'], childEnv({}))).code).toBe(1)
    } finally {
      server.stop(true)
    }
  })

  test('a port in use is reported before the embedded Postgres is initialised', async () => {
    const taken = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('someone else') })
    try {
      const dir = dataDir()
      const proc = Bun.spawn(['bun', path.join(ROOT, 'src/main.ts'), 'serve'], {
        cwd: ROOT,
        env: childEnv({ QUINT_DATA_DIR: dir, PORT: String(taken.port), HOST: '127.0.0.1' }),
        stdout: 'pipe',
        stderr: 'pipe',
      })
      const code = await proc.exited
      const stderr = await new Response(proc.stderr).text()
      expect(code).toBe(2)
      expect(stderr).toContain(`Port ${taken.port}`)
      expect(fs.existsSync(path.join(dir, 'pg'))).toBe(false)
    } finally {
      taken.stop(true)
    }
  })

  test('several `org create` at once beside a running server all succeed', async () => {
    const env = childEnv({ QUINT_DATA_DIR: dataDir() })
    const server = await startServer(env)
    // Each opens the server's database and sets the runtime role's password (embedded mode): at
    // the same time, this raced ("tuple concurrently updated").
    const runs = await Promise.all(
      Array.from({ length: 6 }, (_, i) => runCli(['org', 'create', '--name', `org-${i}`, '--json'], env)),
    )
    expect(runs.map((r) => ({ code: r.code, err: r.code === 0 ? '' : r.stderr }))).toEqual(runs.map(() => ({ code: 0, err: '' })))
    server.proc.kill('SIGTERM')
    expect(await server.exited).toBe(0)
  }, 60_000)

  test('config never prints a secret: keys and secrets by name, DSN passwords by shape', async () => {
    const r = await runCli(
      ['config'],
      childEnv({ AUTH_MASTER_KEY: 'ab'.repeat(32), DATABASE_URL: 'postgres://u:pw-secret@h/db' }),
    )
    expect(r.code).toBe(0)
    const shown = JSON.parse(r.stdout) as Record<string, unknown>
    expect(shown.AUTH_MASTER_KEY).toBe('[REDACTED]')
    expect(r.stdout).not.toContain('abab')
    expect(r.stdout).not.toContain('pw-secret')
  })

  test('started from / with a relative data dir, it uses the home directory, not /.quint', async () => {
    const home = dataDir()
    const proc = Bun.spawn(['bun', path.join(ROOT, 'src/main.ts'), 'config'], {
      cwd: '/',
      env: childEnv({ HOME: home, QUINT_DATA_DIR: undefined }),
      stdout: 'pipe',
      stderr: 'pipe',
    })
    expect(await proc.exited).toBe(0)
    expect(JSON.parse(await new Response(proc.stdout).text()).dataDir).toBe(path.join(home, '.quint'))
  })
})

describe('shutdown', () => {
  test('a signal during start-up abandons it: a migration stuck on a lock does not hold the exit, no org is created', async () => {
    const db = await testDatabase()
    try {
      // Another instance migrating, as the start-up sees it: the migration lock, held.
      const holder = await db.owner.reserve()
      await holder`begin`
      await holder`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`
      const port = await freePort()
      const proc = Bun.spawn(['bun', path.join(ROOT, 'src/main.ts'), 'serve'], {
        cwd: ROOT,
        env: childEnv({ ...databaseEnv(db), PORT: String(port), HOST: '127.0.0.1', QUINT_DATA_DIR: dataDir() }),
        stdout: 'pipe',
        stderr: 'pipe',
      })
      // Listening (503 "starting") while the migration waits.
      for (let i = 0; i < 100; i++) {
        const status = await fetch(`http://127.0.0.1:${port}/ready`).then(
          (r) => r.status,
          () => 0,
        )
        if (status === 503) break
        await Bun.sleep(100)
      }
      // Still starting a while later: the migration is waiting on the lock.
      await Bun.sleep(1_500)
      expect((await fetch(`http://127.0.0.1:${port}/ready`)).status).toBe(503)
      const sent = Date.now()
      proc.kill('SIGTERM')
      const code = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => -1)])
      const waited = Date.now() - sent
      await holder`rollback`
      holder.release()
      expect(code).toBe(0)
      expect(waited).toBeLessThan(8_000)
      expect(await new Response(proc.stderr).text()).not.toContain('First start')
      const [orgs] = await db.owner<{ n: number }[]>`select count(*)::int as n from organizations`
      expect(orgs!.n).toBe(0)
    } finally {
      await db.drop()
    }
  }, 60_000)

  test('a signal at any moment of an embedded start-up exits cleanly and leaves no Postgres; a second one exits 1, also leaving none', async () => {
    /** A serve process, once it listens (its signal handlers are installed by then). */
    const start = async (dir: string) => {
      const port = await freePort()
      const proc = Bun.spawn(['bun', path.join(ROOT, 'src/main.ts'), 'serve'], {
        cwd: ROOT,
        env: childEnv({
          QUINT_DATA_DIR: dir,
          PORT: String(port),
          HOST: '127.0.0.1',
          SHUTDOWN_DRAIN_DELAY_MS: '5000',
          SHUTDOWN_TIMEOUT_MS: '20000',
        }),
        stdout: 'pipe',
        stderr: 'pipe',
      })
      for (let i = 0; i < 300; i++) {
        if (
          await fetch(`http://127.0.0.1:${port}/health`).then(
            () => true,
            () => false,
          )
        )
          break
        await Bun.sleep(10)
      }
      return proc
    }
    const postgresOf = (dir: string) =>
      fs
        .readdirSync('/proc')
        .filter((e) => /^\d+$/.test(e))
        .filter((pid) => {
          try {
            return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`${dir}/pg`) && alive(Number(pid))
          } catch {
            return false
          }
        })
    // initdb, launch, migrations: a signal in each of them (the first start of a data dir is slowest).
    let interrupted = 0
    for (const delay of [0, 150, 300, 600]) {
      const dir = dataDir()
      const proc = await start(dir)
      await Bun.sleep(delay)
      const sent = Date.now()
      proc.kill('SIGTERM')
      const code = await proc.exited
      const waited = Date.now() - sent
      const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()])
      // Nothing half-done reported as a crash, whenever the signal came.
      expect({ delay, code, crashed: /PostgresError|Unhandled/.test(stderr) }).toEqual({ delay, code: 0, crashed: false })
      if (!stdout.includes('"msg":"quint-cloud ready"')) {
        interrupted++
        // Never ready: no drain delay to wait out (5 s here), no org created.
        expect(waited).toBeLessThan(4_000)
        expect(stderr).not.toContain('First start')
      }
      await Bun.sleep(500)
      expect({ delay, left: postgresOf(dir) }).toEqual({ delay, left: [] })
    }
    // On a fresh data dir, start-up (initdb, launch, migrations) takes well over 300 ms.
    expect(interrupted).toBeGreaterThanOrEqual(2)
    // A second signal while the first is still unwinding exits 1 at once. The embedded Postgres is
    // frozen as soon as it exists, so the first signal's unwinding cannot finish before the second
    // arrives, and both reach a free event loop (not one blocked in initdb, where they can merge).
    const dir = dataDir()
    const proc = await start(dir)
    const pidFile = path.join(dir, 'pg', 'postmaster.pid')
    let postmaster = 0
    for (let i = 0; i < 1_000 && !(postmaster > 0 && alive(postmaster)); i++) {
      await Bun.sleep(10)
      postmaster = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]) : 0
    }
    expect(postmaster).toBeGreaterThan(0)
    const frozen = [postmaster, ...childrenOf(postmaster)]
    for (const pid of frozen) {
      try {
        process.kill(pid, 'SIGSTOP')
      } catch (err) {
        // A child that ended between the listing and the signal (start-up runs short-lived ones)
        // has nothing left to freeze; the postmaster itself must be there.
        if (pid === postmaster || (err as { code?: string }).code !== 'ESRCH') throw err
      }
    }
    try {
      const stdout = lines(proc.stdout)
      proc.kill('SIGTERM')
      expect(await stdout.until('abandoning start-up')).toBe(true)
      await Bun.sleep(300)
      expect(proc.exitCode).toBeNull()
      // The first signal's unwinding waits up to 30 s on the frozen Postgres: an exit within 10 s
      // with 1 is the second signal's. (Its log line is not asserted: under a loaded suite the
      // buffered log was once cut by the exit, which is not what this test is about.)
      proc.kill('SIGTERM')
      expect(await Promise.race([proc.exited, Bun.sleep(10_000).then(() => -1)])).toBe(1)
    } finally {
      for (const pid of frozen) if (alive(pid)) process.kill(pid, 'SIGCONT')
    }
    // The exit told the (then frozen) Postgres to stop: it does once it runs again.
    let left = postgresOf(dir)
    for (let i = 0; i < 50 && left.length > 0; i++) {
      await Bun.sleep(100)
      left = postgresOf(dir)
    }
    expect(left).toEqual([])
  }, 90_000)

  test('a step that hangs is left behind at its share; the steps after it still run, within the deadline', async () => {
    const lifecycle = new Lifecycle(testLog)
    const ran: string[] = []
    lifecycle.onShutdown('first', () => void ran.push('first'))
    lifecycle.onShutdown('stuck', () => new Promise(() => {}))
    lifecycle.onShutdown('last', () => void ran.push('last'))
    const started = Date.now()
    const clean = await lifecycle.shutdown('test', 1_500)
    expect(clean).toBe(false)
    expect(ran).toEqual(['first', 'last'])
    expect(Date.now() - started).toBeLessThan(1_500)
  })

  test('with the database frozen, SIGTERM closes the listener at once and exits within the deadline', async () => {
    const dir = dataDir()
    const server = await startServer(childEnv({ QUINT_DATA_DIR: dir, SHUTDOWN_TIMEOUT_MS: '5000', LOG_LEVEL: 'info' }))
    const postmaster = Number(fs.readFileSync(path.join(dir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0])
    const frozen = [postmaster, ...childrenOf(postmaster)]
    for (const pid of frozen) {
      try {
        process.kill(pid, 'SIGSTOP')
      } catch (err) {
        // A child that ended between the listing and the signal (start-up runs short-lived ones)
        // has nothing left to freeze; the postmaster itself must be there.
        if (pid === postmaster || (err as { code?: string }).code !== 'ESRCH') throw err
      }
    }
    // Past one revocation-poll interval (2 s): the poll is now stuck in a query, as it was when
    // its stop held the listener open for 18.8 s (issue 14).
    await Bun.sleep(2_500)
    try {
      const port = new URL(server.url).port
      const sent = Date.now()
      server.proc.kill('SIGTERM')
      // The listener is the first step: new connections are refused long before the stuck steps end.
      let refusedAfter = -1
      while (Date.now() - sent < 5_000) {
        const ok = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(500) }).then(
          () => true,
          () => false,
        )
        if (!ok) {
          refusedAfter = Date.now() - sent
          break
        }
        await Bun.sleep(50)
      }
      expect(refusedAfter).toBeGreaterThanOrEqual(0)
      expect(refusedAfter).toBeLessThan(3_000)
      const exited = await Promise.race([server.exited.then(() => Date.now() - sent), Bun.sleep(9_000).then(() => -1)])
      expect(exited).toBeGreaterThan(0)
      expect(exited).toBeLessThan(5_000 + 2_000)
      // The database step could not finish with Postgres frozen, but the exit told it to stop:
      // thawed, it stops by itself rather than running on without its owner.
      for (const pid of frozen) process.kill(pid, 'SIGCONT')
      let gone = false
      for (let i = 0; i < 100 && !gone; i++) {
        gone = !alive(postmaster)
        await Bun.sleep(100)
      }
      expect(gone).toBe(true)
    } finally {
      for (const pid of frozen) {
        try {
          process.kill(pid, 'SIGCONT')
        } catch {
          // gone
        }
      }
      try {
        process.kill(postmaster, 'SIGINT')
      } catch {
        // gone
      }
    }
  }, 60_000)
})

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

/** Direct children of a process (Postgres backends and auxiliary processes of a postmaster). */
function childrenOf(pid: number): number[] {
  const out: number[] = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) out.push(Number(entry))
    } catch {
      // exited meanwhile
    }
  }
  return out
}

/** A child's output read as it comes: `until` waits for a text (false if the stream ends first or after 10 s). */
function lines(stream: ReadableStream<Uint8Array>) {
  let text = ''
  const reader = stream.getReader()
  const decoder = new TextDecoder()
  let done = false
  const pump = (async () => {
    for (;;) {
      const chunk = await reader.read()
      if (chunk.done) break
      text += decoder.decode(chunk.value, { stream: true })
    }
    done = true
  })()
  return {
    async until(needle: string): Promise<boolean> {
      const deadline = Date.now() + 10_000
      while (!text.includes(needle) && !done && Date.now() < deadline) await Promise.race([pump, Bun.sleep(20)])
      return text.includes(needle)
    },
  }
}
