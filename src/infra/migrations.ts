/**
 * @module infra/migrations
 * Forward-only SQL migrations from `sql/`, applied by `quint-cloud migrate` and at every start.
 * Each file runs in its own transaction under a transaction-level advisory lock, so instances
 * starting together apply each file once; a file whose text changed after it was applied
 * (checksum drift) stops the run, as does a database newer than this binary.
 *
 * The files are imported as text so the compiled executable carries them (no `sql/` at run time).
 * A test checks that this list matches the directory.
 */
import { createHash } from 'node:crypto'
import type { Sql } from './db.ts'
import m0001 from '../../sql/0001_foundation.sql' with { type: 'text' }
import m0002 from '../../sql/0002_fleet.sql' with { type: 'text' }
import m0003 from '../../sql/0003_actions.sql' with { type: 'text' }
import m0004 from '../../sql/0004_rules_and_delivery.sql' with { type: 'text' }
import m0005 from '../../sql/0005_auth.sql' with { type: 'text' }
import m0006 from '../../sql/0006_hardening.sql' with { type: 'text' }
import m0007 from '../../sql/0007_ingest_bus.sql' with { type: 'text' }
import m0008 from '../../sql/0008_machine_inventory.sql' with { type: 'text' }
import m0009 from '../../sql/0009_ingest_tuning.sql' with { type: 'text' }
import m0010 from '../../sql/0010_ingest_storage.sql' with { type: 'text' }
import m0011 from '../../sql/0011_webhooks.sql' with { type: 'text' }
import m0012 from '../../sql/0012_auth_tokens.sql' with { type: 'text' }
import m0013 from '../../sql/0013_overrides.sql' with { type: 'text' }
import m0014 from '../../sql/0014_revocation_poll.sql' with { type: 'text' }
import m0015 from '../../sql/0015_dead_letters.sql' with { type: 'text' }
import m0016 from '../../sql/0016_idempotency.sql' with { type: 'text' }
import m0017 from '../../sql/0017_read_side.sql' with { type: 'text' }
import m0018 from '../../sql/0018_ingest_stats.sql' with { type: 'text' }
import m0019 from '../../sql/0019_retention.sql' with { type: 'text' }
import m0020 from '../../sql/0020_causal_chain.sql' with { type: 'text' }
import m0021 from '../../sql/0021_machine_read.sql' with { type: 'text' }
import m0022 from '../../sql/0022_members.sql' with { type: 'text' }
import m0023 from '../../sql/0023_audit_request.sql' with { type: 'text' }
import m0024 from '../../sql/0024_token_lifecycle.sql' with { type: 'text' }
import m0025 from '../../sql/0025_policies.sql' with { type: 'text' }
import m0026 from '../../sql/0026_audit_sync.sql' with { type: 'text' }
import m0027 from '../../sql/0027_threat_signatures.sql' with { type: 'text' }
import m0028 from '../../sql/0028_fleet_stream.sql' with { type: 'text' }
import m0029 from '../../sql/0029_session_flows.sql' with { type: 'text' }
import m0030 from '../../sql/0030_policy_delivery.sql' with { type: 'text' }
import m0031 from '../../sql/0031_live_log.sql' with { type: 'text' }
import m0032 from '../../sql/0032_pending_approvals.sql' with { type: 'text' }
import m0033 from '../../sql/0033_bus_payload.sql' with { type: 'text' }

export interface Migration {
  version: number
  name: string
  sql: string
  checksum: string
}

const FILES: Record<string, string> = {
  '0001_foundation.sql': m0001,
  '0002_fleet.sql': m0002,
  '0003_actions.sql': m0003,
  '0004_rules_and_delivery.sql': m0004,
  '0005_auth.sql': m0005,
  '0006_hardening.sql': m0006,
  '0007_ingest_bus.sql': m0007,
  '0008_machine_inventory.sql': m0008,
  '0009_ingest_tuning.sql': m0009,
  '0010_ingest_storage.sql': m0010,
  '0011_webhooks.sql': m0011,
  '0012_auth_tokens.sql': m0012,
  '0013_overrides.sql': m0013,
  '0014_revocation_poll.sql': m0014,
  '0015_dead_letters.sql': m0015,
  '0016_idempotency.sql': m0016,
  '0017_read_side.sql': m0017,
  '0018_ingest_stats.sql': m0018,
  '0019_retention.sql': m0019,
  '0020_causal_chain.sql': m0020,
  '0021_machine_read.sql': m0021,
  '0022_members.sql': m0022,
  '0023_audit_request.sql': m0023,
  '0024_token_lifecycle.sql': m0024,
  '0025_policies.sql': m0025,
  '0026_audit_sync.sql': m0026,
  '0027_threat_signatures.sql': m0027,
  '0028_fleet_stream.sql': m0028,
  '0029_session_flows.sql': m0029,
  '0030_policy_delivery.sql': m0030,
  '0031_live_log.sql': m0031,
  '0032_pending_approvals.sql': m0032,
  '0033_bus_payload.sql': m0033,
}

export const MIGRATIONS: readonly Migration[] = Object.entries(FILES)
  .map(([file, sql]) => {
    const match = /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(file)
    if (!match) throw new Error(`bad migration file name: ${file}`)
    return {
      version: Number(match[1]),
      name: match[2]!,
      sql,
      checksum: createHash('sha256').update(sql).digest('hex'),
    }
  })
  .sort((a, b) => a.version - b.version)

// pg_advisory_xact_lock key: any constant unique to this purpose.
export const MIGRATION_LOCK_KEY = 0x71756e74

export class MigrationError extends Error {
  override name = 'MigrationError'
}

export interface MigrationResult {
  applied: { version: number; name: string }[]
  current: number
}

/** Applies pending migrations with the schema owner's pool. */
export async function migrate(owner: Sql, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrationResult> {
  // Under the lock too: concurrent `create table if not exists` race on pg_type (42710).
  await owner.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`
    await tx`
      create table if not exists quint_schema_migrations (
        version    integer primary key,
        name       text not null,
        checksum   text not null,
        applied_at timestamptz not null default now()
      )`
  })
  const applied: MigrationResult['applied'] = []
  for (;;) {
    const next = await owner.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`
      const rows = await tx<{ version: number; name: string; checksum: string }[]>`
        select version, name, checksum from quint_schema_migrations order by version`
      verifyHistory(rows, migrations)
      const pending = migrations.find((m) => !rows.some((r) => r.version === m.version))
      if (!pending) return null
      await tx.unsafe(pending.sql)
      await tx`
        insert into quint_schema_migrations (version, name, checksum)
        values (${pending.version}, ${pending.name}, ${pending.checksum})`
      return pending
    })
    if (!next) break
    applied.push({ version: next.version, name: next.name })
  }
  return { applied, current: migrations.at(-1)?.version ?? 0 }
}

function verifyHistory(rows: { version: number; name: string; checksum: string }[], migrations: readonly Migration[]): void {
  for (const row of rows) {
    const known = migrations.find((m) => m.version === row.version)
    if (!known) {
      throw new MigrationError(
        `database has migration ${row.version} (${row.name}) that this binary does not know: it is newer than this build`,
      )
    }
    if (known.checksum !== row.checksum) {
      throw new MigrationError(
        `migration ${row.version} (${row.name}) changed after it was applied (checksum drift); migrations are forward-only: add a new file instead`,
      )
    }
  }
}
