/**
 * Migrations from zero, re-run, concurrent runners, checksum drift and a database newer than the
 * binary; and the embedded list must match the files in sql/.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { createPool } from '../../src/infra/db.ts'
import { migrate, MigrationError, MIGRATIONS } from '../../src/infra/migrations.ts'
import { emptyDatabase } from '../helpers/db.ts'
import { HOOK_TIMEOUT_MS } from '../helpers/db.ts'

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
}, HOOK_TIMEOUT_MS)

async function fresh() {
  const db = await emptyDatabase()
  cleanup.push(db.drop)
  return db
}

describe('migrations', () => {
  test('the compiled-in list is exactly the files in sql/, in order', () => {
    const files = fs
      .readdirSync(path.join(import.meta.dir, '../../sql'))
      .filter((f) => f.endsWith('.sql'))
      .sort()
    expect(MIGRATIONS.map((m) => `${String(m.version).padStart(4, '0')}_${m.name}.sql`)).toEqual(files)
    expect(MIGRATIONS.map((m) => m.version)).toEqual(files.map((_, i) => i + 1))
  })

  test('apply from zero, then a re-run applies nothing', async () => {
    const db = await fresh()
    const first = await migrate(db.owner)
    expect(first.applied.map((m) => m.version)).toEqual(MIGRATIONS.map((m) => m.version))
    const second = await migrate(db.owner)
    expect(second.applied).toEqual([])
    const rows = await db.owner<{ version: number; checksum: string }[]>`
      select version, checksum from quint_schema_migrations order by version`
    expect([...rows]).toEqual(MIGRATIONS.map((m) => ({ version: m.version, checksum: m.checksum })))
  })

  test('concurrent runners apply each migration exactly once', async () => {
    const db = await fresh()
    const pools = [0, 1, 2, 3].map(() => createPool(db.ownerTarget, { max: 1 }))
    try {
      const results = await Promise.all(pools.map((p) => migrate(p)))
      const applied = results.flatMap((r) => r.applied.map((m) => m.version)).sort((x, y) => x - y)
      expect(applied).toEqual(MIGRATIONS.map((m) => m.version))
    } finally {
      await Promise.all(pools.map((p) => p.end()))
    }
  })

  test('each migration runs in its own transaction: a failing file leaves no trace and stops the run', async () => {
    const db = await fresh()
    const broken = [
      ...MIGRATIONS.slice(0, 1),
      { version: 2, name: 'broken', sql: 'create table half_done (x int); select 1/0;', checksum: 'x' },
    ]
    await expect(migrate(db.owner, broken)).rejects.toThrow('division by zero')
    const [t] = await db.owner<{ t: string | null }[]>`select to_regclass('half_done')::text as t`
    expect(t!.t).toBeNull()
    const rows = await db.owner<{ version: number }[]>`select version from quint_schema_migrations`
    expect(rows.map((r) => r.version)).toEqual([1])
  })

  test('a migration edited after it was applied is detected (checksum drift)', async () => {
    const db = await fresh()
    await migrate(db.owner)
    const edited = MIGRATIONS.map((m) => (m.version === 2 ? { ...m, sql: m.sql + '\n-- edited', checksum: 'different' } : m))
    await expect(migrate(db.owner, edited)).rejects.toThrow(MigrationError)
    await expect(migrate(db.owner, edited)).rejects.toThrow('checksum drift')
  })

  test('a database newer than this binary is refused', async () => {
    const db = await fresh()
    await migrate(db.owner)
    await expect(migrate(db.owner, MIGRATIONS.slice(0, 3))).rejects.toThrow('newer than this build')
  })
})
