/**
 * @module infra/database
 * Opens the service's database: the embedded server when DATABASE_URL is unset, the given one
 * otherwise. Migrations run with the owner's credentials; the runtime pool connects as quint_app,
 * and start-up refuses to go on if that role could bypass row-level security. An optional read
 * pool (DATABASE_READ_URL, a replica; issue 9) serves the read API under the same checks.
 */
import type { Config } from '../config.ts'
import { createPool, type DbTarget, type Sql } from './db.ts'
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres.ts'
import type { Logger } from './log.ts'
import { migrate, MIGRATION_LOCK_KEY, type MigrationResult } from './migrations.ts'

export interface Database {
  /** Runtime pool (quint_app): all request and worker traffic. */
  readonly app: Sql
  /** Read pool on a replica (DATABASE_READ_URL), same role checks as `app`; null: reads use `app`. */
  readonly read: Sql | null
  readonly appTarget: DbTarget
  readonly ownerTarget: DbTarget
  readonly migration: MigrationResult
  /** Ends the pools (within `budgetMs`, default 5 s), then stops the embedded server if this process runs it. */
  close(budgetMs?: number): Promise<void>
  /** The embedded server (if this process runs it) is told to stop, without waiting. */
  abandon(): void
}

/** Start-up was interrupted (a signal) while the database was being opened or migrated. */
export class OpenAbortedError extends Error {
  override name = 'OpenAbortedError'
}

export class UnsafeRoleError extends Error {
  override name = 'UnsafeRoleError'
}

export const APP_ROLE = 'quint_app'

export async function openDatabase(
  config: Pick<
    Config,
    | 'DATABASE_URL'
    | 'DATABASE_APP_URL'
    | 'DATABASE_READ_URL'
    | 'DATABASE_POOL_MAX'
    | 'DATABASE_STATEMENT_TIMEOUT_MS'
    | 'DATABASE_ACQUIRE_TIMEOUT_MS'
    | 'dataDir'
    | 'QUINT_EMBEDDED_PG_BIN_DIR'
    | 'PARTITION_MONTHS_AHEAD'
  >,
  log: Logger,
  options: {
    serve: boolean
    signal?: AbortSignal
    /** Told of an embedded server as soon as it runs, so an exit that cannot wait can stop it. */
    onEmbedded?: (pg: Pick<EmbeddedPostgres, 'signalStop'>) => void
  } = { serve: false },
): Promise<Database> {
  let embedded: EmbeddedPostgres | null = null
  let ownerTarget: DbTarget
  let appTarget: DbTarget
  if (config.DATABASE_URL) {
    ownerTarget = { url: config.DATABASE_URL }
    appTarget = { url: config.DATABASE_APP_URL ?? withUser(config.DATABASE_URL, APP_ROLE) }
  } else {
    embedded = await startEmbeddedPostgres({
      dataDir: config.dataDir,
      binDir: config.QUINT_EMBEDDED_PG_BIN_DIR,
      serve: options.serve,
      log,
    })
    options.onEmbedded?.(embedded)
    const at = { host: embedded.host, port: embedded.port, database: embedded.database }
    ownerTarget = { ...at, ...embedded.owner }
    appTarget = { ...at, ...embedded.app }
  }

  try {
    // Interrupted while the server was starting: do not begin migrating it.
    if (options.signal?.aborted) throw new OpenAbortedError('start-up interrupted before the database was prepared')
    const preparing = prepareDatabase({ owner: ownerTarget, app: appTarget, appPassword: embedded?.app.password }, config, log)
    // Abandoned below, its failure (the server stopping under it) must not go unhandled.
    preparing.catch(() => {})
    // Migrations can wait on another instance's lock for as long as it holds it: a signal must
    // not wait with them (issue 14). The abandoned migration dies with the process.
    options.signal?.addEventListener(
      'abort',
      () =>
        void preparing.then(
          (p) => p.app.end({ timeout: 0 }),
          () => {},
        ),
      {
        once: true,
      },
    )
    const prepared = await abortable(preparing, options.signal)
    let read: Sql | null = null
    try {
      if (config.DATABASE_READ_URL) read = await openReadPool({ url: config.DATABASE_READ_URL }, config)
    } catch (err) {
      await prepared.app.end({ timeout: 1 }).catch(() => {})
      throw err
    }
    return {
      ...prepared,
      read,
      appTarget,
      ownerTarget,
      async close(budgetMs = 10_000) {
        const timeout = Math.max(0.1, budgetMs / 2_000)
        await Promise.all([prepared.app.end({ timeout }), read?.end({ timeout })])
        await embedded?.stop()
      },
      abandon() {
        embedded?.signalStop()
      },
    }
  } catch (err) {
    await embedded?.stop()
    throw err
  }
}

function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new OpenAbortedError('start-up interrupted while the database was being prepared'))
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      (r) => {
        signal.removeEventListener('abort', onAbort)
        resolve(r)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}

/**
 * Migrates with the owner's credentials, then opens the runtime pool and checks its role.
 * `appPassword` is set on quint_app when we manage the server (embedded).
 */
export async function prepareDatabase(
  targets: { owner: DbTarget; app: DbTarget; appPassword?: string },
  config: Pick<Config, 'DATABASE_POOL_MAX' | 'DATABASE_STATEMENT_TIMEOUT_MS' | 'PARTITION_MONTHS_AHEAD'> &
    Partial<Pick<Config, 'DATABASE_ACQUIRE_TIMEOUT_MS'>>,
  log: Logger,
): Promise<{ app: Sql; migration: MigrationResult }> {
  const owner = createPool(targets.owner, { max: 1, applicationName: 'quint-cloud-migrate' })
  let migration: MigrationResult
  try {
    migration = await migrate(owner)
    if (targets.appPassword !== undefined) {
      const password = targets.appPassword
      // Under the migration lock: two processes opening one database at once (`org create` beside
      // a starting server, or several of them) failed with "tuple concurrently updated".
      await owner.begin(async (tx) => {
        await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`
        // Our own generated hex password, so inlining is safe; ALTER ROLE takes no bind parameters.
        await tx.unsafe(`alter role ${APP_ROLE} password '${password.replace(/'/g, "''")}'`)
      })
    }
  } finally {
    await owner.end({ timeout: 5 })
  }
  for (const m of migration.applied) log.info({ version: m.version, name: m.name }, 'migration applied')

  const app = createPool(targets.app, {
    max: config.DATABASE_POOL_MAX,
    statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
    acquireTimeoutMs: config.DATABASE_ACQUIRE_TIMEOUT_MS,
  })
  try {
    await assertSafeRole(app)
    const created = await ensurePartitions(app, config.PARTITION_MONTHS_AHEAD)
    if (created.length > 0) log.info({ partitions: created }, 'actions partitions created')
  } catch (err) {
    await app.end({ timeout: 1 }).catch(() => {})
    throw err
  }
  return { app, migration }
}

/** Name the read pool's connections carry (`pg_stat_activity.application_name` on the replica). */
export const READ_POOL_APPLICATION_NAME = 'quint-cloud-read'

/**
 * Opens the read API's pool on a replica (issue 9). It must connect as a role RLS binds, exactly
 * like the runtime pool: a replica reached as the owner or a superuser would show every org's
 * rows to every reader. Nothing is migrated through it (a replica is read-only).
 */
export async function openReadPool(
  target: DbTarget,
  config: Pick<Config, 'DATABASE_POOL_MAX' | 'DATABASE_STATEMENT_TIMEOUT_MS'> &
    Partial<Pick<Config, 'DATABASE_ACQUIRE_TIMEOUT_MS'>>,
): Promise<Sql> {
  const read = createPool(target, {
    max: config.DATABASE_POOL_MAX,
    statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
    acquireTimeoutMs: config.DATABASE_ACQUIRE_TIMEOUT_MS,
    applicationName: READ_POOL_APPLICATION_NAME,
  })
  try {
    await assertSafeRole(read, 'read replica', 'DATABASE_READ_URL')
  } catch (err) {
    await read.end({ timeout: 1 }).catch(() => {})
    throw err
  }
  return read
}

/** Keeps monthly `actions` partitions created ahead; safe to call from every instance. */
export async function ensurePartitions(app: Sql, monthsAhead: number): Promise<string[]> {
  const rows = await app<{ name: string }[]>`
    select quint_ensure_actions_partitions(${monthsAhead}) as name`
  return rows.map((r) => r.name)
}

/**
 * RLS protects nothing if the runtime role is superuser, BYPASSRLS, or owns the tables, directly
 * or through membership in the owning role (an owner can switch RLS off). Checked on every start,
 * against the live catalog.
 */
export async function assertSafeRole(app: Sql, pool = 'runtime', variable = 'DATABASE_APP_URL'): Promise<void> {
  const [role] = await app<{ name: string; superuser: boolean; bypass: boolean; owned: number }[]>`
    select r.rolname as name, r.rolsuper as superuser, r.rolbypassrls as bypass,
           (select count(*)::int from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where c.relkind in ('r', 'p', 'v', 'm') and n.nspname in ('public', 'auth')
               and pg_has_role(r.oid, c.relowner, 'MEMBER')) as owned
      from pg_roles r where r.rolname = current_user`
  if (!role) throw new UnsafeRoleError('cannot read the runtime role from pg_roles')
  const problems = [
    role.superuser && 'is a superuser',
    role.bypass && 'has BYPASSRLS',
    role.owned > 0 && `owns ${role.owned} relation(s) (directly or as a member of the owner)`,
  ].filter(Boolean)
  if (problems.length > 0) {
    throw new UnsafeRoleError(
      `${pool} database role "${role.name}" ${problems.join(', ')}: row-level security would not isolate tenants. ` +
        `Connect as ${APP_ROLE} (${variable}).`,
    )
  }
}

function withUser(url: string, user: string): string {
  const u = new URL(url)
  u.username = user
  u.password = ''
  return u.toString()
}
