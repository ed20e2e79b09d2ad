/**
 * The ack's ledger check probes the ledger's primary key once per key, however the statistics
 * stand (issue 13). On a ledger never analysed, where one org owns every row, `event_key =
 * any($1)` was planned as a scan of the org's rows filtered by the batch's 500 keys: acks of
 * 1.5–5 s at half load. The statement `knownKeys` sends is captured (the pool's `onQuery` hook)
 * and EXPLAINed with its bind values, as quint_app inside `withOrg`, on such a ledger.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { knownKeys } from '../../src/features/actions/ledger.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { createPool, withOrg, type Sql } from '../../src/infra/db.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'

const ROWS = 100_000

let db: TestDatabase
let observed: Sql
let org: CreatedOrg
let captured: { query: string; params: unknown[] }[] = []

beforeAll(async () => {
  db = await testDatabase()
  observed = createPool(db.appTarget, { max: 1, onQuery: (query, params) => void captured.push({ query, params: [...params] }) })
  org = await createOrg(db.app, 'ledger org', 'cli')
  // Written as the pipeline writes it, in one go, and never analysed: a young ledger.
  await db.owner`alter table event_keys set (autovacuum_enabled = false)`
  await db.owner`
    insert into event_keys (org_id, event_key, action_id, action_created_at)
    select ${org.org_id}, 'e:k-' || i, gen_random_uuid(), now() from generate_series(1, ${ROWS}) as i`
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await observed.end({ timeout: 1 })
  await db.drop()
}, HOOK_TIMEOUT_MS)

test('the ack finds stored keys by one primary-key probe each, on a ledger never analysed', async () => {
  const keys = [
    ...Array.from({ length: 400 }, (_, i) => `e:k-${i * 97 + 1}`),
    ...Array.from({ length: 100 }, (_, i) => `e:new-${i}`),
  ]
  captured = []
  const known = await withOrg(observed, org.org_id, (tx) => knownKeys(tx, keys))
  expect(new Set(known)).toEqual(new Set(keys.slice(0, 400)))

  const statement = captured.find((c) => /\bevent_keys\b/.test(c.query))
  expect(statement).toBeDefined()
  type Explained = { 'QUERY PLAN': { Plan: Record<string, unknown> }[] }
  const plan = await withOrg(db.app, org.org_id, (tx) =>
    tx.unsafe<Explained[]>(`explain (format json) ${statement!.query}`, statement!.params as never[]),
  )
  const nodes: { 'Node Type': string; 'Relation Name'?: string; 'Index Name'?: string; 'Index Cond'?: string }[] = []
  const walk = (n: Record<string, unknown>) => {
    nodes.push(n as never)
    for (const c of (n.Plans as Record<string, unknown>[] | undefined) ?? []) walk(c)
  }
  walk(plan[0]!['QUERY PLAN'][0]!.Plan)
  const onLedger = nodes.filter((n) => n['Relation Name'] === 'event_keys')
  expect(onLedger.length).toBe(1)
  expect(onLedger[0]!['Index Name']).toBe('event_keys_pkey')
  expect(onLedger[0]!['Index Cond']).toContain('event_key = k.event_key')
})
