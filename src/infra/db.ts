/**
 * @module infra/db
 * postgres.js pools and the one tenant helper. Every piece of tenant work runs inside `withOrg`,
 * which opens a transaction and sets `app.current_org_id` with `set_config(…, true)` before
 * anything else, so the setting dies with the transaction and never leaks to the next borrower.
 */
import postgres from 'postgres'

export type Sql = postgres.Sql<Record<string, never>>
/** A connection inside a tenant (or lookup) transaction. */
export type Tx = postgres.ReservedSql<Record<string, never>>
/** A statement built but not yet sent: what `queryOrg` takes. */
export type Statement<T extends readonly postgres.MaybeRow[]> = postgres.PendingQuery<T>

/** Where a pool connects: a DSN, or options (the embedded server listens on a unix socket). */
export type DbTarget = { url: string } | { host: string; port: number; user: string; password: string; database: string }

export interface PoolOptions {
  max: number
  statementTimeoutMs?: number
  applicationName?: string
  /**
   * Longest a query or a `reserve()` waits for a connection (all busy, or reconnecting) before it
   * fails with code ACQUIRE_TIMEOUT, which `isTransientDbError` maps to 503. Unset: no bound
   * (migrations, tests).
   */
  acquireTimeoutMs?: number
  /**
   * Told of every statement the pool sends, with its bind values, as postgres.js builds it. Off
   * by default: while set, postgres.js records a stack trace per query. For tests that capture
   * the SQL a route really runs (issue 9: the read side's EXPLAIN test).
   */
  onQuery?: (query: string, parameters: readonly unknown[]) => void
}

/**
 * Seconds before a lost connection is opened again: 50 ms doubling to at most 2 s, jittered. The
 * library's own grows to 20 s, and after Postgres dropped every connection (issue 14) each
 * reconnect waited that long, so the pool stayed down long after the database came back.
 */
export function reconnectBackoff(retries: number): number {
  return Math.min(0.05 * 2 ** Math.max(0, retries - 1), 2) * (0.5 + Math.random() / 2)
}

export function createPool(target: DbTarget, options: PoolOptions): Sql {
  const common = {
    max: options.max,
    idle_timeout: 30,
    max_lifetime: 60 * 30,
    connect_timeout: 10,
    backoff: reconnectBackoff,
    acquire_timeout: options.acquireTimeoutMs ? options.acquireTimeoutMs / 1000 : null,
    onnotice: () => {},
    debug: options.onQuery
      ? (_connection: number, query: string, parameters: unknown[]) => options.onQuery!(query, parameters)
      : false,
    connection: {
      application_name: options.applicationName ?? 'quint-cloud',
      // Bounds every statement and kills a transaction left open by a crashed caller.
      ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
      idle_in_transaction_session_timeout: 60_000,
    },
  } satisfies postgres.Options<Record<string, never>>
  if (!('url' in target)) return postgres({ ...target, ...common })
  const socket = socketOf(target.url)
  return socket ? postgres(socket.url, { ...common, host: socket.dir }) : postgres(target.url, common)
}

/**
 * A `?host=/dir` query names a unix-socket directory, as libpq reads it
 * (`postgres://user:pw@localhost/db?host=/var/run/postgresql`); postgres.js takes only the URL's
 * host, which cannot hold a path, and would send `host` to the server as a setting.
 */
function socketOf(url: string): { url: string; dir: string } | null {
  try {
    const u = new URL(url)
    const dir = u.searchParams.get('host')
    if (!dir?.startsWith('/')) return null
    u.searchParams.delete('host')
    return { url: u.toString(), dir }
  } catch {
    return null
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export function isUuid(value: string): boolean {
  return UUID.test(value)
}

/**
 * A path id as a lower-case UUID, or `missing()` thrown: a malformed id answers as an unknown one
 * (issue 9: the same 404 on every route).
 */
export function uuidOr(raw: string, missing: () => Error): string {
  const id = raw.toLowerCase()
  if (!isUuid(id)) throw missing()
  return id
}

/**
 * Runs `fn` in a transaction scoped to one org: RLS then shows and accepts only that org's rows.
 *
 * The connection is taken with `sql.reserve()` before BEGIN is sent. `sql.begin()` has open
 * reports (porsager/postgres #1189, #823, #1204) of BEGIN reaching the server without the
 * connection being reserved, after which unrelated queries run inside the open transaction, and
 * here that means inside another org's context. A reserved connection belongs to us alone.
 *
 * @example
 * const rows = await withOrg(sql, orgId, (tx) => tx`select id, name from api_tokens`)
 */
export function withOrg<T>(sql: Sql, orgId: string, fn: (tx: Tx) => Promise<T>, options: OrgTxOptions = {}): Promise<T> {
  if (!isUuid(orgId)) return Promise.reject(new TypeError('withOrg: org id must be a lowercase UUID'))
  return withSettings(sql, orgSettings(orgId, options), fn)
}

/**
 * `withOrg` for one statement, in one round trip: BEGIN, the settings, the statement and COMMIT
 * leave together on the reserved connection, where `withOrg` waits for each in turn. For the read
 * side's hot pages (issue 9: the events page's price beside raw SQL), whose work is one query.
 * `build` must only build the statement (postgres.js sends it when it is executed here).
 *
 * @example
 * const rows = await queryOrg(sql, orgId, (tx) => tx`select id from actions limit 10`)
 */
export async function queryOrg<T extends readonly postgres.MaybeRow[]>(
  sql: Sql,
  orgId: string,
  build: (tx: Tx) => Statement<T>,
  options: OrgTxOptions = {},
): Promise<T> {
  if (!isUuid(orgId)) throw new TypeError('queryOrg: org id must be a lowercase UUID')
  const settings = orgSettings(orgId, options)
  const tx = await sql.reserve()
  try {
    // Executed in this order, so sent in this order. Should BEGIN or a setting fail, the statement
    // and COMMIT fail or roll back with it, and the error below is theirs: RLS without its org
    // reads nothing, and nothing here writes.
    const sent = [tx.unsafe('begin').execute(), applySettings(tx, settings), build(tx).execute(), tx.unsafe('commit').execute()]
    const [begun, applied, rows, done] = await Promise.allSettled(sent)
    for (const step of [begun, applied, rows, done]) if (step!.status === 'rejected') throw step!.reason
    if ((done as PromiseFulfilledResult<postgres.RowList<never[]>>).value.command === 'ROLLBACK') {
      throw new Error('transaction was rolled back by the server')
    }
    return (rows as PromiseFulfilledResult<T>).value
  } finally {
    tx.release()
  }
}

function orgSettings(orgId: string, options: OrgTxOptions): Record<string, string> {
  const settings: Record<string, string> = { 'app.current_org_id': orgId }
  if (options.genericPlans) settings.plan_cache_mode = 'force_generic_plan'
  return settings
}

/** Every setting in one statement (transaction-local), checked: a value not applied is an error. */
async function applySettings(tx: Tx, settings: Record<string, string>): Promise<void> {
  const entries = Object.entries(settings)
  const [row] = await tx
    .unsafe<Record<string, string>[]>(
      `select ${entries.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true) as s${i}`).join(', ')}`,
      entries.flat(),
      { prepare: true },
    )
    .execute()
  entries.forEach(([name, value], i) => {
    if (row?.[`s${i}`] !== value) throw new Error(`transaction setting ${name} was not applied`)
  })
}

export interface OrgTxOptions {
  /**
   * Prepared statements of this transaction use their generic plan. Under RLS a keyset read with
   * `limit $n` looks cheaper to Postgres with its values known, so it is planned afresh on every
   * execution (~1 ms, more than running it; issue 9). For statements whose plan does not depend
   * on the values: the generic plan was checked to be the same as the custom one.
   */
  genericPlans?: boolean
}

/**
 * Runs `fn` in a transaction with the given transaction-local settings. `withOrg` is the tenant
 * form; the credential resolver uses `app.lookup_token_hash` (see sql/0001_foundation.sql).
 */
export async function withSettings<T>(sql: Sql, settings: Record<string, string>, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const tx = await sql.reserve()
  let open = false
  try {
    // BEGIN and the settings leave together, pipelined on our reserved connection: one round trip
    // instead of two on every tenant transaction (issue 9's read latency). postgres.js sends a
    // query when it is first executed or awaited, so each is executed here, in this order.
    const [begun, applied] = await Promise.allSettled([tx.unsafe('begin').execute(), applySettings(tx, settings)])
    if (begun!.status === 'rejected') throw begun!.reason
    open = true
    if (applied!.status === 'rejected') throw applied!.reason
    const result = await fn(tx)
    const done = await tx.unsafe('commit')
    open = false
    // COMMIT of a transaction that already failed (an error `fn` caught and swallowed) answers
    // ROLLBACK without raising: report it instead of claiming the writes happened.
    if (done.command === 'ROLLBACK') throw new Error('transaction was rolled back by the server')
    return result
  } catch (err) {
    if (open) await tx.unsafe('rollback').catch(() => {})
    throw err
  } finally {
    tx.release()
  }
}

const TRANSIENT_CODES = new Set([
  'ACQUIRE_TIMEOUT', // no pooled connection within DATABASE_ACQUIRE_TIMEOUT_MS (issue 14)
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'ETIMEDOUT',
  'EPIPE',
  'ENOENT', // unix socket gone while the embedded server restarts
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available
  '57014', // query_canceled (statement_timeout)
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
])

/** True when retrying later may succeed: the caller should answer 503 + Retry-After, not 500. */
export function isTransientDbError(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false
  const code = (err as { code?: unknown }).code
  if (typeof code !== 'string') return false
  // Class 08: connection exceptions; class 53: insufficient resources (too many connections…).
  return TRANSIENT_CODES.has(code) || code.startsWith('08') || code.startsWith('53')
}

/** Minimal view of a server error, for mapping constraint violations. */
export function pgErrorCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code
  return undefined
}
