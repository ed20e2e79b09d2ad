/**
 * Test databases on a real Postgres: the system one when DATABASE_URL is set, otherwise one
 * embedded server started for the whole run (test/setup.ts). Each test file gets a fresh database
 * with every migration applied and a runtime pool connected as quint_app, exactly as the service
 * connects. Nothing here mocks the database.
 */
import os from 'node:os'
import path from 'node:path'
import fs from 'node:fs'
import { createPool, type DbTarget, type Sql } from '../../src/infra/db.ts'
import { APP_ROLE, prepareDatabase } from '../../src/infra/database.ts'
import { removeDataDir, startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/infra/embedded-postgres.ts'
import { createLogger } from '../../src/infra/log.ts'

export const testLog = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent', 'stderr')

interface Server {
  kind: 'external' | 'embedded'
  /** Owner-level target for a given database name. */
  owner(database: string): DbTarget
  app(database: string): DbTarget
  appPassword?: string
  stop(): Promise<void>
}

let server: Server | null = null

export async function startTestServer(): Promise<void> {
  if (server) return
  const url = process.env.DATABASE_URL
  if (url) {
    const at = (db: string, user?: string) => {
      const u = new URL(url)
      u.pathname = `/${db}`
      if (user) {
        u.username = user
        u.password = ''
      }
      return { url: u.toString() }
    }
    server = {
      kind: 'external',
      owner: (db) => at(db),
      app: (db) => at(db, APP_ROLE),
      async stop() {},
    }
    return
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-test-'))
  // Durability is irrelevant for throw-away test databases.
  const pg: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir, serve: true, log: testLog, ephemeral: true })
  const at = (db: string, who: { user: string; password: string }) => ({
    host: pg.host,
    port: pg.port,
    database: db,
    ...who,
  })
  server = {
    kind: 'embedded',
    owner: (db) => at(db, pg.owner),
    app: (db) => at(db, pg.app),
    appPassword: pg.app.password,
    async stop() {
      await pg.stop()
      removeDataDir(dataDir)
    },
  }
}

export async function stopTestServer(): Promise<void> {
  await server?.stop()
  server = null
}

export function serverKind(): 'external' | 'embedded' {
  if (!server) throw new Error('test database server not started (test/setup.ts preload)')
  return server.kind
}

export interface TestDatabase {
  name: string
  /** quint_app pool: what the service uses. */
  app: Sql
  /** Owner pool (superuser on the test servers): for set-up and catalog checks only. */
  owner: Sql
  ownerTarget: DbTarget
  appTarget: DbTarget
  /** Runs `stop` (an app's background work on this database) before the database is dropped. */
  onDrop(stop: () => Promise<void>): void
  drop(): Promise<void>
}

/** A new, empty database on the test server (no migrations). */
export async function emptyDatabase(): Promise<{ name: string; owner: Sql; ownerTarget: DbTarget; drop(): Promise<void> }> {
  if (!server) throw new Error('test database server not started (test/setup.ts preload)')
  const s = server
  const name = `quint_t_${crypto.randomUUID().replace(/-/g, '').slice(0, 16)}`
  const admin = createPool(s.owner('postgres'), { max: 1 })
  await admin.unsafe(`create database ${name}`)
  await admin.end()
  const ownerTarget = s.owner(name)
  const owner = createPool(ownerTarget, { max: 2 })
  return {
    name,
    owner,
    ownerTarget,
    async drop() {
      await owner.end({ timeout: 1 })
      const a = createPool(s.owner('postgres'), { max: 1 })
      await a.unsafe(`drop database if exists ${name} with (force)`)
      await a.end()
    },
  }
}

/** A fresh database with every migration applied, as the service prepares it. */
export async function testDatabase(options: { poolMax?: number } = {}): Promise<TestDatabase> {
  const empty = await emptyDatabase()
  const appTarget = server!.app(empty.name)
  const { app } = await prepareDatabase(
    { owner: empty.ownerTarget, app: appTarget, appPassword: server!.appPassword },
    { DATABASE_POOL_MAX: options.poolMax ?? 5, DATABASE_STATEMENT_TIMEOUT_MS: 30_000, PARTITION_MONTHS_AHEAD: 2 },
    testLog,
  )
  const stops: (() => Promise<void>)[] = []
  return {
    ...empty,
    app,
    appTarget,
    onDrop: (stop) => void stops.push(stop),
    async drop() {
      for (const stop of stops.splice(0)) await stop()
      await app.end({ timeout: 1 })
      await empty.drop()
    },
  }
}

/**
 * Bun applies its 5 s default to hooks (bunfig's `timeout` covers tests only); creating and
 * migrating a database or stopping Postgres can take longer on a loaded 2-core machine.
 */
export const HOOK_TIMEOUT_MS = 60_000

/**
 * Environment for a child `quint-cloud` process on this test database, as owner (DATABASE_URL)
 * and runtime role (DATABASE_APP_URL), on either server (the embedded one listens on a unix
 * socket: `?host=<dir>`).
 */
export function databaseEnv(db: Pick<TestDatabase, 'ownerTarget' | 'appTarget'>): Record<string, string> {
  const url = (t: DbTarget) =>
    'url' in t
      ? t.url
      : `postgres://${encodeURIComponent(t.user)}:${encodeURIComponent(t.password)}@localhost:${t.port}/${t.database}?host=${encodeURIComponent(t.host)}`
  return { DATABASE_URL: url(db.ownerTarget), DATABASE_APP_URL: url(db.appTarget) }
}
