/**
 * @module features/simulate/bounds
 * What keeps a replay over history (a simulation, a retro-hunt) from holding the service up
 * (issue 11; docs/simulate.md "Bounds"): the window's size checked before anything runs, an
 * evaluation budget that hands the event loop back and ends the replay, one replay per org and a
 * few per instance, and database interruptions answered as 503, never 500.
 */
import { AppError, RateLimitedError, UnavailableError } from '../../errors.ts'
import { pgErrorCode, withOrg, type Sql, type Tx } from '../../infra/db.ts'

/** Exported so that tests (and operators, through code) can lower them; read at each request. */
export const SIMULATION_LIMITS = {
  /** Actions in the window above which a simulation is refused before it runs. */
  maxRows: 200_000,
  /** `statement_timeout` of every statement of a simulation (the count, each fetch of the cursor). */
  statementTimeoutMs: 20_000,
  /** Rows fetched per round trip of the cursor (memory: this many rows, at most 1 MiB of arguments each). */
  cursorRows: 200,
  /** Time a replay may spend evaluating; past it, it stops with 422 `simulation_too_large`. */
  evaluationMs: 20_000,
  /** Replays running at once on one instance (one per org): each holds a connection and CPU. */
  concurrent: 2,
}

/** Time between two hand-backs of the event loop during a replay (other requests run meanwhile). */
const SLICE_MS = 10

/**
 * A replay's clock, checked at every row: every SLICE_MS it lets the event loop serve other
 * requests, and past `evaluationMs` it stops the replay (422: the window is too large for it).
 */
export class Budget {
  readonly #start = performance.now()
  #slice = performance.now()

  async yield(): Promise<void> {
    const now = performance.now()
    if (now - this.#start > SIMULATION_LIMITS.evaluationMs) {
      throw new AppError(
        422,
        'simulation_too_large',
        `The replay needs more than ${SIMULATION_LIMITS.evaluationMs / 1000} s of evaluation; ask for fewer days (or a draft with fewer conditions).`,
        { extensions: { max_evaluation_ms: SIMULATION_LIMITS.evaluationMs } },
      )
    }
    if (now - this.#slice < SLICE_MS) return
    await new Promise<void>((resolve) => setImmediate(resolve))
    this.#slice = performance.now()
  }
}

const running = new Set<string>()

/**
 * Runs `fn` in the org's transaction with the simulation's statement timeout; a statement past it
 * is a 503 (`unavailable`, retry with fewer days), never a 500.
 */
export async function withSimulation<T>(sql: Sql, orgId: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const ms = SIMULATION_LIMITS.statementTimeoutMs
  // One replay per org, and a few per instance: a replay holds a connection and evaluates in this
  // process, so they must not crowd out everything else.
  if (running.has(orgId) || running.size >= SIMULATION_LIMITS.concurrent) {
    throw new RateLimitedError('Another simulation or retro-hunt is running; try again in a few seconds.', 5)
  }
  running.add(orgId)
  try {
    return await withOrg(sql, orgId, async (tx) => {
      await tx`select set_config('statement_timeout', ${String(ms)}, true)`
      return fn(tx)
    })
  } catch (err) {
    const code = pgErrorCode(err)
    if (code === '57014') {
      throw new UnavailableError(`The simulation ran past its statement timeout (${ms} ms); try fewer days.`, 5, err)
    }
    // A replica's recovery conflict, or a deadlock with the live consumer: nothing was kept; retry.
    if (code === '40001' || code === '40P01') {
      throw new UnavailableError('The replay was interrupted by concurrent work and rolled back; retry.', 2, err)
    }
    throw err
  } finally {
    running.delete(orgId)
  }
}

/**
 * The window of the last `days` (by when the cloud received an action), refused with 422
 * `simulation_too_large` when it holds more than `SIMULATION_LIMITS.maxRows` actions: a bounded
 * count, before anything is replayed. The replays read `created_at >= now() - days`, the same
 * `now()` (the transaction's).
 */
export async function requireWindow(tx: Tx, days: number): Promise<{ days: number; since: string; until: string }> {
  const [window] = await tx<{ since: Date; until: Date }[]>`
    select now() - make_interval(days => ${days}) as since, now() as until`
  const max = SIMULATION_LIMITS.maxRows
  // Bounded: reads at most max + 1 rows of the window, whatever it holds.
  const [held] = await tx<{ n: number }[]>`
    select count(*)::int as n from (
      select 1 from actions where created_at >= now() - make_interval(days => ${days}) limit ${max + 1}) x`
  if (held!.n > max) {
    throw new AppError(
      422,
      'simulation_too_large',
      `The last ${days} day${days === 1 ? '' : 's'} hold more than ${max} stored actions, the most a replay reads; ask for fewer days.`,
      { extensions: { max_rows: max, days } },
    )
  }
  return { days, since: window!.since.toISOString(), until: window!.until.toISOString() }
}
