/**
 * @module cli/purge
 * `quint-cloud purge [--json]`: one retention purge run now, the same run `serve` makes every
 * RETENTION_INTERVAL_S (docs/retention.md). Safe beside running servers: they and this command
 * share the per-org locks. Prints what was removed per table and which partitions were dropped.
 */
import { parseArgs } from 'node:util'
import { BusUsageError } from './bus.ts'
import type { Config } from '../config.ts'
import { openDatabase } from '../infra/database.ts'
import type { Logger } from '../infra/log.ts'
import { RetentionPurger } from '../features/retention/purger.ts'

export const PURGE_USAGE = 'usage: quint-cloud purge [--json]'

/** A usage error of this command (exit 2, like every usage error). */
export class PurgeUsageError extends BusUsageError {
  override name = 'PurgeUsageError'
}

export async function purgeCommand(config: Config, log: Logger, args: string[]): Promise<number> {
  let json: boolean | undefined
  try {
    ;({ json } = parseArgs({ args, options: { json: { type: 'boolean' } }, strict: true, allowPositionals: false }).values)
  } catch (err) {
    throw new PurgeUsageError(`${(err as Error).message}\n${PURGE_USAGE}`)
  }
  const db = await openDatabase(config, log)
  try {
    const report = await new RetentionPurger({ sql: db.app, log, batchRows: config.RETENTION_BATCH_ROWS }).runOnce()
    if (json) {
      console.log(JSON.stringify(report))
    } else {
      for (const [table, n] of Object.entries(report.deleted)) console.log(`${table.padEnd(20)} ${n}`)
      console.log(`${'partitions dropped'.padEnd(20)} ${report.partitions.join(', ') || '-'}`)
      if (report.skipped_orgs > 0) console.log(`${report.skipped_orgs} org(s) were being purged by another instance`)
    }
  } finally {
    await db.close()
  }
  return 0
}
