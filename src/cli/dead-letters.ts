/**
 * @module cli/dead-letters
 * `quint-cloud dead-letters list|redrive`: the operator's view of the bus messages consumers set
 * aside after BUS_MAX_ATTEMPTS failed attempts, across orgs (issue 14; docs/dead-letters.md).
 * Admins of one org have the same through `/v1/dead-letters`. It connects like `migrate` (the
 * owner's DATABASE_URL, or the embedded database) and redrives through the configured bus, so run
 * it with the service's configuration (BUS, and for BUS=sns the AWS variables).
 */
import { parseArgs } from 'node:util'
import type { Config } from '../config.ts'
import { listAcrossOrgs, redriveOne } from '../features/dead-letters/repo.ts'
import { CONSUMERS, type ConsumerName } from '../bus/bus.ts'
import { openDatabase } from '../infra/database.ts'
import { isUuid } from '../infra/db.ts'
import type { Logger } from '../infra/log.ts'
import { BusUsageError, wireBus } from './bus.ts'

/** A usage error of this command (exit 2, like every usage error). */
export class DeadLettersUsageError extends BusUsageError {
  override name = 'DeadLettersUsageError'
}

export const DEAD_LETTERS_USAGE = `usage: quint-cloud dead-letters list [--org ID] [--consumer NAME] [--limit N] [--json]
       quint-cloud dead-letters redrive (--id ID | --all) [--org ID] [--consumer NAME] [--json]`

const LIST_DEFAULT = 100
const REDRIVE_ALL_MAX = 10_000

export async function deadLettersCommand(config: Config, log: Logger, args: string[]): Promise<number> {
  const [sub, ...rest] = args
  if (sub !== 'list' && sub !== 'redrive') throw new DeadLettersUsageError(DEAD_LETTERS_USAGE)
  let values
  try {
    values = parseArgs({
      args: rest,
      options: {
        org: { type: 'string' },
        consumer: { type: 'string' },
        id: { type: 'string' },
        all: { type: 'boolean' },
        limit: { type: 'string' },
        json: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values
  } catch (err) {
    throw new DeadLettersUsageError(`${(err as Error).message}\n${DEAD_LETTERS_USAGE}`)
  }
  if (values.org !== undefined && !isUuid(values.org)) throw new DeadLettersUsageError('--org: an org id (lowercase UUID)')
  if (values.id !== undefined && !isUuid(values.id)) throw new DeadLettersUsageError('--id: a dead letter id (lowercase UUID)')
  if (values.consumer !== undefined && !(CONSUMERS as readonly string[]).includes(values.consumer)) {
    throw new DeadLettersUsageError(`--consumer: one of ${CONSUMERS.join(', ')}`)
  }
  const consumer = values.consumer as ConsumerName | undefined
  const limit = Number(values.limit ?? LIST_DEFAULT)
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
    throw new DeadLettersUsageError('--limit: an integer from 1 to 10000')
  if (sub === 'list' && (values.id !== undefined || values.all))
    throw new DeadLettersUsageError(`list takes no --id or --all\n${DEAD_LETTERS_USAGE}`)
  if (sub === 'redrive' && (values.id !== undefined) === Boolean(values.all)) {
    throw new DeadLettersUsageError(`redrive needs exactly one of --id ID or --all\n${DEAD_LETTERS_USAGE}`)
  }

  const db = await openDatabase(config, log)
  const wiring = wireBus(config, db.app)
  try {
    if (sub === 'list') {
      const rows = (await listAcrossOrgs(db.app, { limit, ...(values.org ? { orgId: values.org } : {}) })).filter(
        (r) => !consumer || r.consumer === consumer,
      )
      if (values.json) {
        console.log(JSON.stringify(rows.map(({ created_key: _k, ...r }) => r)))
      } else if (rows.length === 0) {
        console.log('no dead letters')
      } else {
        for (const r of rows) {
          console.log(
            `${r.id}  org ${r.org_id}  ${r.consumer}  ${r.kind} (${r.events} events)  attempts ${r.attempts}  ` +
              `${r.created_at.toISOString()}  ${r.error_class}: ${r.error_message.slice(0, 160)}`,
          )
        }
      }
      return 0
    }
    let redriven = 0
    if (values.id) {
      const [found] = await listAcrossOrgs(db.app, { id: values.id, limit: 1, ...(values.org ? { orgId: values.org } : {}) })
      if (!found || !(await redriveOne(db.app, wiring.bus, found.org_id, values.id))) {
        console.error(`error: no dead letter ${values.id}${values.org ? ` in org ${values.org}` : ''}`)
        return 1
      }
      redriven = 1
    } else {
      // The dead letters present now, each in its own tenant transaction: one that fails again
      // and comes back meanwhile waits for the next run instead of looping here.
      const present = (
        await listAcrossOrgs(db.app, { limit: REDRIVE_ALL_MAX, ...(values.org ? { orgId: values.org } : {}) })
      ).filter((r) => !consumer || r.consumer === consumer)
      for (const r of present) if (await redriveOne(db.app, wiring.bus, r.org_id, r.id)) redriven++
    }
    const remaining = (
      await listAcrossOrgs(db.app, { limit: REDRIVE_ALL_MAX, ...(values.org ? { orgId: values.org } : {}) })
    ).filter((r) => !consumer || r.consumer === consumer).length
    if (values.json) console.log(JSON.stringify({ redriven, remaining }))
    else console.log(`redriven ${redriven}; ${remaining} dead letters remain`)
    return 0
  } finally {
    wiring.close()
    await db.close()
  }
}
