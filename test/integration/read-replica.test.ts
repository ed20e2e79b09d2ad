/**
 * DATABASE_READ_URL (issue 9): the read API on a replica, under the same runtime role and RLS.
 * No real replica runs here, so a second migrated database stands in for it, holding rows the
 * primary does not have: what a read route returns then shows which pool served it. Also: the
 * read pool is visible as `quint-cloud-read` in the replica's pg_stat_activity, connected as
 * quint_app, and start-up refuses a read DSN whose role could bypass row-level security.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { LocalBus } from '../../src/bus/bus.ts'
import { loadConfig } from '../../src/config.ts'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { openDatabase, openReadPool, READ_POOL_APPLICATION_NAME, UnsafeRoleError } from '../../src/infra/database.ts'
import type { Sql } from '../../src/infra/db.ts'
import { testApp, twoOrgApp } from '../helpers/app.ts'
import { databaseEnv, HOOK_TIMEOUT_MS, testDatabase, testLog, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
let replica: TestDatabase
let read: Sql
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg

const POOL = { DATABASE_POOL_MAX: 2, DATABASE_STATEMENT_TIMEOUT_MS: 30_000 }

async function alert(sql: Sql, org: string, title: string) {
  const [row] = await sql<{ id: string }[]>`
    insert into alerts (org_id, rule_key, event_key, severity, title)
    values (${org}, 'builtin:test', ${crypto.randomUUID()}, 'high', ${title}) returning id`
  return row!.id
}

beforeAll(async () => {
  ;({ db, a, b } = await twoOrgApp())
  replica = await testDatabase()
  // The stand-in replica knows the same orgs (credentials are still resolved on the primary).
  for (const org of [a, b]) await replica.owner`insert into organizations (id, name) values (${org.org_id}, ${org.name})`
  read = await openReadPool(replica.appTarget, POOL)
  t = testApp(db, {}, new LocalBus(), { readSql: read })
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await read.end({ timeout: 1 })
  await replica.drop()
  await db.drop()
}, HOOK_TIMEOUT_MS)

describe('the read pool', () => {
  test('read routes are served by the read pool, and RLS applies there as on the primary', async () => {
    await alert(db.owner, a.org_id, 'only on the primary')
    const onReplica = await alert(replica.owner, a.org_id, 'only on the replica')
    await alert(replica.owner, b.org_id, "org B's, on the replica")

    const res = await t.call('GET', '/v1/alerts', { token: a.admin_key })
    expect(res.status).toBe(200)
    expect(res.body.alerts.map((x: { title: string }) => x.title)).toEqual(['only on the replica'])
    const forB = await t.call('GET', '/v1/alerts', { token: b.admin_key })
    expect(forB.body.alerts.map((x: { title: string }) => x.title)).toEqual(["org B's, on the replica"])
    // Writes stay on the primary, which has no such alert.
    const triage = await t.call('PATCH', `/v1/alerts/${onReplica}`, { token: a.admin_key, json: { status: 'acknowledged' } })
    expect(triage.status).toBe(404)
    // Org settings are management, read from the primary.
    expect((await t.call('GET', '/v1/org', { token: a.admin_key })).body.id).toBe(a.org_id)
  })

  test('the replica sees the pool as quint-cloud-read, connected as quint_app', async () => {
    const rows = await replica.owner<{ usename: string }[]>`
      select usename from pg_stat_activity where datname = ${replica.name} and application_name = ${READ_POOL_APPLICATION_NAME}`
    expect(rows.length).toBeGreaterThan(0)
    expect(new Set(rows.map((r) => r.usename))).toEqual(new Set(['quint_app']))
  })

  test('the service opens it from DATABASE_READ_URL and refuses an owner or superuser DSN at start', async () => {
    const env = databaseEnv(db)
    const config = (readUrl: string) => loadConfig({ ...env, DATABASE_READ_URL: readUrl, QUINT_BOOTSTRAP_ORG: '' })
    const opened = await openDatabase(config(env.DATABASE_APP_URL!), testLog)
    try {
      expect(opened.read).not.toBeNull()
      const [who] = await opened.read!<{ u: string; app: string }[]>`
        select current_user as u, current_setting('application_name') as app`
      expect(who).toEqual({ u: 'quint_app', app: READ_POOL_APPLICATION_NAME })
    } finally {
      await opened.close()
    }
    const refused = await openDatabase(config(env.DATABASE_URL!), testLog).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(UnsafeRoleError)
    expect(String((refused as Error).message)).toContain('DATABASE_READ_URL')
    // Unset: no read pool, reads use the runtime pool.
    const primaryOnly = await openDatabase(loadConfig({ ...env, QUINT_BOOTSTRAP_ORG: '' }), testLog)
    expect(primaryOnly.read).toBeNull()
    await primaryOnly.close()
  })
})
