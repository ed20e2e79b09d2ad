/**
 * The read side's hot queries use indexes under RLS as the app role (issue 9). The SQL is not
 * copied here: a test app whose pool records every statement it sends (the `onQuery` hook of
 * src/infra/db.ts) serves each request, and every captured statement that reads `actions`,
 * `sessions` or `alerts` is then EXPLAINed with the same bind values, as quint_app inside
 * `withOrg`, on a data set large enough (60k actions, 4,000+ sessions over six orgs, analysed)
 * that the planner's choice means something. A sequential scan of one of those tables (or of an
 * `actions` month partition) fails the test, naming the request and the statement.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createPool, withOrg, type Sql } from '../../src/infra/db.ts'
import { loadReadSide, type Loaded, type OrgShape } from '../../bench/lib/query-data.ts'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'

// The big org first (it holds the 500-event timeline); sessions short so `sessions` is large too.
const SHAPE: OrgShape[] = [
  { events: 30_000, concurrent: 10, stepsPerSession: 5, agents: 12, machines: 8, timeline: true },
  ...Array.from({ length: 5 }, () => ({
    events: 6_000,
    concurrent: 5,
    stepsPerSession: 3,
    agents: 4,
    machines: 3,
    timeline: false,
  })),
]
const WATCHED = /^(actions(_\d{6})?|sessions|alerts)$/

interface Statement {
  query: string
  params: unknown[]
}

let db: TestDatabase
let observed: Sql
let t: ReturnType<typeof testApp>
let loaded: Loaded
let recording: Statement[] | null = null
/** Month partitions with no row (the months ahead): a scan of nothing is the right plan there. */
let empty: Set<string>

beforeAll(async () => {
  db = await testDatabase()
  observed = createPool(db.appTarget, {
    max: 3,
    onQuery: (query, params) => void recording?.push({ query, params: [...params] }),
  })
  // The read routes' pool (the replica seam of issue 9): every statement they send is recorded.
  t = testApp(db, {}, undefined, { readSql: observed })
  loaded = await loadReadSide(db.app, db.owner, SHAPE)
  const parts = await db.owner<{ name: string; rows: number }[]>`
    select c.relname as name, (xpath('/row/n/text()', query_to_xml(format('select count(*) as n from %I', c.relname), false, true, '')))[1]::text::int as rows
      from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'actions'::regclass`
  empty = new Set(parts.filter((p) => p.rows === 0).map((p) => p.name))
  expect(parts.length - empty.size).toBeGreaterThan(0)
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
  await observed.end({ timeout: 1 })
}, HOOK_TIMEOUT_MS)

/** GET `path` as the big org's admin; returns its body and the statements on the watched tables. */
async function capture(path: string): Promise<{ body: any; statements: Statement[] }> {
  const token = loaded.big.org.admin_key
  recording = []
  const res = await t.call('GET', path, { token })
  const statements = recording
  recording = null
  expect(res.status).toBe(200)
  return { body: res.body, statements: statements.filter((s) => /\b(actions|sessions|alerts)\b/.test(s.query)) }
}

interface PlanNode {
  'Node Type': string
  'Relation Name'?: string
  Plans?: PlanNode[]
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)]
}

/** Each statement's plan nodes, EXPLAINed as quint_app under the big org's RLS context. */
async function explain(statements: Statement[]): Promise<{ query: string; nodes: PlanNode[] }[]> {
  return withOrg(db.app, loaded.big.org.org_id, async (tx) => {
    const out = []
    for (const s of statements) {
      const [row] = await tx.unsafe<{ 'QUERY PLAN': { Plan: PlanNode }[] }[]>(
        `explain (format json) ${s.query}`,
        s.params as never[],
      )
      out.push({ query: s.query, nodes: nodes(row!['QUERY PLAN'][0]!.Plan) })
    }
    return out
  })
}

/**
 * The same, with the generic plan a prepared statement settles on (routes that ask for it with
 * `genericPlans`, src/infra/db.ts): the plan chosen without the values must be indexed too.
 */
async function explainGeneric(statements: Statement[]): Promise<{ query: string; nodes: PlanNode[] }[]> {
  return withOrg(
    db.app,
    loaded.big.org.org_id,
    async (tx) => {
      const out = []
      // The statements that read the watched tables (a setting's `set_config($1, …)` cannot be
      // prepared without its types).
      for (const [i, s] of statements.filter((x) => /\b(actions|sessions|alerts)\b/.test(x.query)).entries()) {
        await tx.unsafe(`prepare generic_${i} as ${s.query}`)
        // Literals: untyped, each takes its parameter's type (a bound `$n` here would need one).
        const text = (v: unknown) => (Array.isArray(v) ? `{${v.join(',')}}` : v instanceof Date ? v.toISOString() : String(v))
        const literal = (v: unknown) => `'${text(v).replace(/'/g, "''")}'`
        const args = s.params.map((v) => (v === null ? 'null' : literal(v))).join(', ')
        const [row] = await tx.unsafe<{ 'QUERY PLAN': { Plan: PlanNode }[] }[]>(
          `explain (format json) execute generic_${i}${args ? `(${args})` : ''}`,
        )
        await tx.unsafe(`deallocate generic_${i}`)
        out.push({ query: s.query, nodes: nodes(row!['QUERY PLAN'][0]!.Plan) })
      }
      return out
    },
    { genericPlans: true },
  )
}

async function expectIndexed(path: string, options: { generic?: boolean } = {}) {
  const { body, statements } = await capture(path)
  expect(statements.length).toBeGreaterThan(0)
  const plans = await (options.generic ? explainGeneric : explain)(statements)
  const scans = plans.flatMap((p) =>
    p.nodes
      .filter((n) => n['Node Type'] === 'Seq Scan' && WATCHED.test(n['Relation Name'] ?? '') && !empty.has(n['Relation Name']!))
      .map((n) => `${path}: Seq Scan on ${n['Relation Name']} in\n${p.query.replace(/\s+/g, ' ').trim()}`),
  )
  expect(scans).toEqual([])
  // The plans did read the tables (through an index), so an empty list above means something.
  const reads = plans.flatMap((p) => p.nodes).filter((n) => WATCHED.test(n['Relation Name'] ?? ''))
  expect(reads.length).toBeGreaterThan(0)
  return body
}

describe('read queries use indexes under RLS as quint_app (issue 9)', () => {
  test('events list, first page', async () => {
    const body = await expectIndexed('/v1/events')
    expect(body.events).toHaveLength(50)
  })

  test('events list with a cursor and two filters', async () => {
    const first = await t.call('GET', '/v1/events?agent_id=agent-3&action_type=tools%2Fcall', { token: loaded.big.org.admin_key })
    expect(first.status).toBe(200)
    expect(first.body.next_cursor).toEqual(expect.any(String))
    const body = await expectIndexed(
      `/v1/events?agent_id=agent-3&action_type=tools%2Fcall&cursor=${encodeURIComponent(first.body.next_cursor)}`,
    )
    expect(body.events.length).toBeGreaterThan(0)
    for (const e of body.events) expect([e.agent_id, e.action_type]).toEqual(['agent-3', 'tools/call'])
  })

  test('events list with one index-leading filter, as its generic plan (genericPlans)', async () => {
    const first = await expectIndexed('/v1/events?agent_id=agent-3&action_type=tools%2Fcall', { generic: true })
    await expectIndexed(`/v1/events?agent_id=agent-3&action_type=tools%2Fcall&cursor=${encodeURIComponent(first.next_cursor)}`, {
      generic: true,
    })
    await expectIndexed('/v1/events?machine_id=' + loaded.big.machineId, { generic: true })
  })

  test('session timeline (the 500-event session), with its custom and its generic plans', async () => {
    const body = await expectIndexed(`/v1/sessions/${loaded.big.timeline.id}/timeline?limit=200`)
    expect(body.items).toHaveLength(125)
    await expectIndexed(`/v1/sessions/${loaded.big.timeline.id}/timeline?limit=200`, { generic: true })
  })

  test('events stats, last 24 h', async () => {
    const body = await expectIndexed('/v1/events/stats')
    expect(body.total).toBeGreaterThan(0)
  })

  test('causal chain of an event', async () => {
    const body = await expectIndexed(`/v1/events/${loaded.big.chainEventId}/chain`)
    expect(body.ancestors).toHaveLength(1)
    expect(body.effects).toHaveLength(2)
  })

  test('session events', async () => {
    const body = await expectIndexed(`/v1/sessions/${loaded.big.timeline.id}/events?limit=200`)
    expect(body.events).toHaveLength(200)
  })

  test('event detail, session detail and tree, alert detail', async () => {
    await expectIndexed(`/v1/events/${loaded.big.chainEventId}`)
    await expectIndexed(`/v1/sessions/${loaded.big.subSession.id}`)
    await expectIndexed(`/v1/sessions/${encodeURIComponent(loaded.big.subSession.rootKey)}/tree`)
    await expectIndexed(`/v1/alerts/${loaded.big.alertId}`)
  })
})
