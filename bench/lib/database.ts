/** A throw-away embedded database for a suite: a benchmark must never write into a DATABASE_URL. */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { loadConfig } from '../../src/config.ts'
import { openDatabase, type Database } from '../../src/infra/database.ts'
import { removeDataDir } from '../../src/infra/embedded-postgres.ts'
import type { DbTarget } from '../../src/infra/db.ts'
import type { Logger } from '../../src/infra/log.ts'

export async function withThrowawayDatabase<T>(log: Logger, fn: (db: Database) => Promise<T>): Promise<T> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-bench-'))
  const db = await openDatabase(loadConfig({ QUINT_DATA_DIR: dataDir, QUINT_BOOTSTRAP_ORG: '' }), log)
  try {
    return await fn(db)
  } finally {
    await db.close()
    removeDataDir(dataDir)
  }
}

/** A connection URL for a child `serve`: the embedded server listens on a unix socket, its directory in `?host=`. */
export const dsn = (t: DbTarget): string =>
  'url' in t
    ? t.url
    : `postgres://${t.user}:${encodeURIComponent(t.password)}@localhost:${t.port}/${t.database}?host=${encodeURIComponent(t.host)}`
