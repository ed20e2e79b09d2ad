/**
 * The causal chain (issue 9, docs/causal-chain.md) on real Postgres, from recorded sessions
 * (test/fixtures/sessions/*.json: Claude Code sessions with sub-agents, parallel tool calls whose
 * processes interleave, shells spawning children, a credential read sent out by curl, events
 * delivered out of order, split across batches and retried). Events go in through /v1/ingest and
 * the pipeline is drained after every request, so each request is its own transaction and late
 * parents must adopt their stored children. Every OS event's stored parent is checked against the
 * fixture's expected map; then the two reads: /v1/events/{id}/chain and /v1/sessions/{id}/timeline.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { linkLookups } from '../../src/features/chain/linker.ts'
import { normalizeIngestItem } from '../../src/features/ingest/events.ts'
import { storeEvents, type StoredAction } from '../../src/features/actions/store.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { withOrg } from '../../src/infra/db.ts'
import { applySessions } from '../../src/features/sessions/consumer.ts'
import { twoOrgApp, type testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'
import exfilFixture from '../fixtures/sessions/claude-code-subagent-exfil.json'
import buildFixture from '../fixtures/sessions/build-reverse-delivery.json'

type Event = Record<string, any>
interface Fixture {
  sessions: string[]
  batches: Event[][]
  expected: Record<string, { parent: string | null; link: string | null }>
}
interface Row {
  id: string
  event_id: string
  session_key: string
  parent_action_id: string | null
  parent_link: string | null
}

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg

beforeAll(async () => {
  ;({ db, t, a, b } = await twoOrgApp())
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

/**
 * The fixture as run `run` delivers it: ids and session keys prefixed (so runs never share a
 * session), timestamps moved to the last hours (ingest clamps older ones) keeping their spacing.
 * Pids and tool_use_ids stay as recorded: runs in one org reuse them, and must not link across.
 */
function rebase(fx: Fixture, run: string, batches: Event[][] = fx.batches): Event[][] {
  const times = fx.batches.flat().map((e) => Date.parse(e.timestamp))
  const shift = Date.now() - 2 * 3600_000 - Math.min(...times)
  return batches.map((batch) =>
    batch.map((e) => ({
      ...e,
      event_id: `${run}:${e.event_id}`,
      session_id: `${run}-${e.session_id}`,
      timestamp: new Date(Date.parse(e.timestamp) + shift).toISOString(),
    })),
  )
}

async function deliver(org: CreatedOrg, batches: Event[][]): Promise<void> {
  for (const events of batches) {
    const res = await t.call('POST', '/v1/ingest', { token: org.deploy_token, json: { events } })
    expect(res.status).toBe(200)
    // One transaction per request: a parent stored after its children must adopt them.
    await drainOnce(db.app, 'pipeline', storeEvents)
  }
  await drainOnce(db.app, 'sessions', applySessions)
}

async function stored(org: CreatedOrg, run: string): Promise<Map<string, Row>> {
  const rows = await db.owner<Row[]>`
    select id, event_id, session_key, parent_action_id, parent_link from actions
     where org_id = ${org.org_id} and event_id like ${run + ':%'}`
  return new Map(rows.map((r) => [r.event_id.slice(run.length + 1), r]))
}

/** Every event's stored parent, as fixture event ids: { parent, link }. */
function linksOf(rows: Map<string, Row>): Record<string, { parent: string | null; link: string | null }> {
  const byId = new Map([...rows].map(([eid, r]) => [r.id, eid]))
  return Object.fromEntries(
    [...rows].map(([eid, r]) => [
      eid,
      {
        parent: r.parent_action_id ? (byId.get(r.parent_action_id) ?? `foreign:${r.parent_action_id}`) : null,
        link: r.parent_link,
      },
    ]),
  )
}

const exfil = exfilFixture as unknown as Fixture & {
  exfil: { network_event_id: string; credential_read_event_id: string; tool_call_event_id: string }
  ambiguous: { event_id: string; candidates: string[]; chosen: string }
}
const build = buildFixture as unknown as Fixture

/** A deterministic shuffle (mulberry32), so a failure replays. */
function shuffled<T>(items: T[], seed: number): T[] {
  let s = seed
  const rand = () => {
    s = (s + 0x6d2b79f5) | 0
    let x = Math.imul(s ^ (s >>> 15), 1 | s)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

const chunks = <T>(items: T[], n: number) =>
  Array.from({ length: Math.ceil(items.length / n) }, (_, i) => items.slice(i * n, i * n + n))

describe('linking at write time', () => {
  test('the exfiltration session: every event gets exactly its expected parent', async () => {
    await deliver(a, rebase(exfil, 'x1'))
    const rows = await stored(a, 'x1')
    expect(rows.size).toBe(Object.keys(exfil.expected).length)
    expect(linksOf(rows)).toEqual(exfil.expected)
  })

  test('the build session, delivered newest first with retries: every event gets its expected parent', async () => {
    await deliver(a, rebase(build, 'b1'))
    const rows = await stored(a, 'b1')
    expect(rows.size).toBe(Object.keys(build.expected).length)
    expect(linksOf(rows)).toEqual(build.expected)
    // Delivered newest first, the parents were stored after their children: adoption did the work.
    expect([...rows.values()].filter((r) => r.parent_link === 'process').length).toBeGreaterThan(30)
  })

  test('links do not depend on arrival: one batch, and a shuffled delivery in batches of 7, give the same links', async () => {
    const all = exfil.batches.flat()
    const unique = [...new Map(all.map((e) => [e.event_id, e])).values()]
    await deliver(a, rebase(exfil, 'x2', [unique]))
    await deliver(a, rebase(exfil, 'x3', chunks(shuffled(unique, 9), 7)))
    expect(linksOf(await stored(a, 'x2'))).toEqual(exfil.expected)
    expect(linksOf(await stored(a, 'x3'))).toEqual(exfil.expected)
  })

  test('links do not depend on concurrency: three pipeline transactions of the org at once give the same links', async () => {
    // Issue 13: pipeline transactions of one org run side by side; only the chain's part is
    // serial. Every batch is published first, then three drains race over them one batch each.
    const all = exfil.batches.flat()
    const unique = [...new Map(all.map((e) => [e.event_id, e])).values()]
    for (const [run, batches] of [
      ['c1', rebase(exfil, 'c1', chunks(shuffled(unique, 21), 3))],
      ['c2', rebase(exfil, 'c2', chunks(shuffled(unique, 22), 5))],
      ['c3', rebase(build, 'c3')],
    ] as const) {
      for (const events of batches) {
        expect((await t.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events } })).status).toBe(200)
      }
      let rounds = 0
      for (let applied = 1; applied > 0; rounds++) {
        const done = await Promise.all([1, 2, 3].map(() => drainOnce(db.app, 'pipeline', storeEvents, { batches: 1 })))
        applied = done.reduce((x, y) => x + y, 0)
      }
      expect(rounds).toBeGreaterThan(2)
      expect(linksOf(await stored(a, run))).toEqual(run === 'c3' ? build.expected : exfil.expected)
    }
  })

  test('never across sessions: runs x1–x3 share pids, tool_use_ids and times, yet every parent is in the same session family', async () => {
    const rows = await db.owner<{ n: number }[]>`
      select count(*)::int as n from actions c join actions p on p.org_id = c.org_id and p.id = c.parent_action_id
       where c.org_id = ${a.org_id} and split_part(c.session_key, ':sub:', 1) <> split_part(p.session_key, ':sub:', 1)`
    expect(rows[0]!.n).toBe(0)
    const linked = await db.owner<{ n: number }[]>`
      select count(*)::int as n from actions where org_id = ${a.org_id} and parent_action_id is not null`
    expect(linked[0]!.n).toBeGreaterThan(200)
  })

  test('never across orgs: org B storing the same recorded session (same ids, keys, labels) links only to its own', async () => {
    await deliver(b, rebase(exfil, 'x1'))
    const rowsB = await stored(b, 'x1')
    expect(linksOf(rowsB)).toEqual(exfil.expected)
    const rowsA = await stored(a, 'x1')
    expect(linksOf(rowsA)).toEqual(exfil.expected)
    const idsA = new Set([...rowsA.values()].map((r) => r.id))
    for (const r of rowsB.values()) if (r.parent_action_id) expect(idsA.has(r.parent_action_id)).toBe(false)
  })

  test('ambiguity follows the documented rule: two tool calls in the window, the latest preceding one wins', async () => {
    const rows = await stored(a, 'x1')
    const chosen = rows.get(exfil.ambiguous.event_id)!
    expect(chosen.parent_link).toBe('time_window')
    expect(chosen.parent_action_id).toBe(rows.get(exfil.ambiguous.chosen)!.id)
    expect(exfil.ambiguous.candidates).toContain(exfil.ambiguous.chosen)
  })

  test('a retried event is stored and linked once; a tool call never gets a parent', async () => {
    const session = 'retry-1777000000000'
    const tool = v2Event({
      session_id: session,
      labels: { process_name: 'claude', process_pid: '4242', tool_use_id: 'toolu_retry' },
    })
    const exec = v2Event({
      session_id: session,
      source: 'endpoint-security',
      action_type: 'PROCESS_EXEC',
      tool_name: 'curl',
      arguments_json: undefined,
      arguments: ['/usr/bin/curl', 'https://example.org'],
      labels: { pid: '4300', ppid: '4242', tool_use_id: 'toolu_retry' },
    })
    await deliver(a, [[exec], [tool], [exec, tool]])
    const rows = await db.owner<Row[]>`
      select id, event_id, session_key, parent_action_id, parent_link from actions
       where org_id = ${a.org_id} and session_key = ${session} order by action_type`
    expect(rows.map((r) => [r.event_id, r.parent_link])).toEqual([
      [exec.event_id, 'tool_use_id'],
      [tool.event_id, null],
    ])
    expect(rows[0]!.parent_action_id).toBe(rows[1]!.id)
  })
})

describe('GET /v1/events/{id}/chain', () => {
  test('"which tool call led to curl sending ~/.aws/credentials to a new domain?" is one request', async () => {
    const rows = await stored(a, 'x1')
    const net = rows.get(exfil.exfil.network_event_id)!
    const res = await t.call('GET', `/v1/events/${net.id}/chain`, { token: a.admin_key })
    expect(res.status).toBe(200)
    const { event, session, ancestors, effects, truncated } = res.body
    expect(event.id).toBe(net.id)
    expect(event.action_type).toBe('NETWORK_CONNECT')
    expect(event.arguments).toEqual(['new-domain.example:443'])
    // session → tool call (in the sub-agent's session) → shell → curl → this connection
    expect(ancestors.map((e: Event) => [e.action_type, e.tool_name])).toEqual([
      ['tools/call', 'Bash'],
      ['PROCESS_EXEC', 'zsh'],
      ['PROCESS_EXEC', 'curl'],
    ])
    expect(ancestors[0].id).toBe(rows.get(exfil.exfil.tool_call_event_id)!.id)
    expect(ancestors[0].session_id).toBe('x1-59247-1777085379101:sub:1')
    expect(JSON.parse(JSON.stringify(ancestors[0].arguments)).command).toContain('~/.aws/credentials')
    expect(event.parent_id).toBe(ancestors[2].id)
    expect(session.session_key).toBe('x1-59247-1777085379101')
    expect(effects).toEqual([])
    expect(truncated).toBe(false)
  })

  test("the tool call's effects are the tree: shell → cat → credential read, shell → curl → connection", async () => {
    const rows = await stored(a, 'x1')
    const tool = rows.get(exfil.exfil.tool_call_event_id)!
    const res = await t.call('GET', `/v1/events/${tool.id}/chain`, { token: a.admin_key })
    expect(res.status).toBe(200)
    expect(res.body.ancestors).toEqual([])
    expect(res.body.session.session_key).toBe('x1-59247-1777085379101:sub:1')
    const shape = (n: Event): unknown => [n.tool_name, n.action_type, n.children.map(shape)]
    expect(res.body.effects.map(shape)).toEqual([
      [
        'zsh',
        'PROCESS_EXEC',
        [
          ['cat', 'PROCESS_EXEC', [['cat', 'FILE_READ', []]]],
          ['curl', 'PROCESS_EXEC', [['curl', 'NETWORK_CONNECT', []]]],
        ],
      ],
    ])
    const read = res.body.effects[0].children[0].children[0]
    expect(read.id).toBe(rows.get(exfil.exfil.credential_read_event_id)!.id)
    expect(read.arguments).toEqual(['/Users/dev/.aws/credentials'])
  })

  test('an event with no links has no ancestors and no effects', async () => {
    const rows = await stored(a, 'x1')
    const lone = [...rows.entries()].find(([eid, r]) => exfil.expected[eid]!.parent === null && r.event_id.includes('exec'))!
    const res = await t.call('GET', `/v1/events/${lone[1].id}/chain`, { token: a.admin_key })
    expect(res.status).toBe(200)
    expect(res.body.ancestors).toEqual([])
    expect(res.body.event.parent_id).toBeNull()
  })

  test('malformed, unknown and other-org ids answer 404; query parameters 400; a machine credential 403', async () => {
    const rows = await stored(a, 'x1')
    const net = rows.get(exfil.exfil.network_event_id)!
    for (const id of ['not-a-uuid', crypto.randomUUID(), '%27%20or%201=1', net.id.toUpperCase().replace(/.$/, 'Z')]) {
      const res = await t.call('GET', `/v1/events/${id}/chain`, { token: a.admin_key })
      expect(res.status).toBe(404)
      expect(res.headers.get('content-type')).toContain('application/problem+json')
    }
    expect((await t.call('GET', `/v1/events/${net.id.toUpperCase()}/chain`, { token: a.admin_key })).status).toBe(200)
    expect((await t.call('GET', `/v1/events/${net.id}/chain`, { token: b.admin_key })).status).toBe(404)
    const extra = await t.call('GET', `/v1/events/${net.id}/chain?depth=3`, { token: a.admin_key })
    expect(extra.status).toBe(400)
    expect(JSON.stringify(extra.body)).toContain('depth')
    expect((await t.call('GET', `/v1/events/${net.id}/chain`, { token: a.deploy_token })).status).toBe(403)
    expect((await t.call('GET', `/v1/events/${net.id}/chain`)).status).toBe(401)
  })
})

describe('GET /v1/sessions/{id}/timeline', () => {
  const walk = (n: Event, out: Event[] = []): Event[] => {
    out.push(n)
    for (const c of n.children) walk(c, out)
    return out
  }

  test("nests OS events under the tool call and process that caused them; every one of the session's events appears once", async () => {
    const key = 'x1-59247-1777085379101'
    const res = await t.call('GET', `/v1/sessions/${key}/timeline?limit=200`, { token: a.admin_key })
    expect(res.status).toBe(200)
    expect(res.body.session.session_key).toBe(key)
    expect(res.body.next_cursor).toBeNull()
    expect(res.body.truncated).toBe(false)
    const items: Event[] = res.body.items
    // Top level: no parent in this session (tool calls, unlinked events, effects of the sub-agent's calls).
    const rows = await stored(a, 'x1')
    const byId = new Map([...rows.values()].map((r) => [r.id, r]))
    for (const item of items) {
      expect(item.session_id).toBe(key)
      if (item.parent_id) expect(byId.get(item.parent_id)!.session_key).not.toBe(key)
    }
    const times = items.map((i) => i.timestamp)
    expect([...times].sort()).toEqual(times)
    // Each event of the session appears exactly once in the tree.
    const mine = [...rows.values()].filter((r) => r.session_key === key).map((r) => r.id)
    const seen = items
      .flatMap((i) => walk(i))
      .filter((n) => n.session_id === key)
      .map((n) => n.id)
    expect(seen.length).toBe(new Set(seen).size)
    expect(new Set(seen)).toEqual(new Set(mine))
    // The Bash `ls -la src` call: zsh → ls → four reads.
    const ls = items.find((i) => i.action_type === 'tools/call' && JSON.stringify(i.arguments).includes('ls -la src'))!
    expect(ls.children.map((c: Event) => c.tool_name)).toEqual(['zsh'])
    expect(ls.children[0].children.map((c: Event) => c.tool_name)).toEqual(['ls'])
    expect(ls.children[0].children[0].children.map((c: Event) => c.action_type)).toEqual(Array(4).fill('FILE_READ'))
    // Two parallel calls, processes interleaved in time, each nested under its own call.
    const npm = items.find((i) => JSON.stringify(i.arguments).includes('npm test'))!
    const git = items.find((i) => JSON.stringify(i.arguments).includes('git status'))!
    const flat = (n: Event) => walk(n).slice(1)
    expect(flat(npm).some((n) => n.tool_name === 'git')).toBe(false)
    expect(flat(git).some((n) => n.tool_name === 'node')).toBe(false)
    expect(flat(npm).filter((n) => n.action_type === 'FILE_WRITE').length).toBe(6)
    expect(flat(git).filter((n) => n.action_type === 'FILE_READ').length).toBe(5)
  })

  test('pages by cursor with no gap or duplicate; the session is found by UUID too', async () => {
    const key = 'x1-59247-1777085379101:sub:1'
    const full = await t.call('GET', `/v1/sessions/${encodeURIComponent(key)}/timeline?limit=200`, { token: a.admin_key })
    expect(full.status).toBe(200)
    const all = full.body.items.map((i: Event) => i.id)
    expect(all.length).toBe(3) // Glob, Bash, Grep: their effects are nested
    const pages: string[] = []
    let cursor: string | null = null
    do {
      const q: string = cursor ? `&cursor=${cursor}` : ''
      const res = await t.call('GET', `/v1/sessions/${full.body.session.id}/timeline?limit=2${q}`, { token: a.admin_key })
      expect(res.status).toBe(200)
      pages.push(...res.body.items.map((i: Event) => i.id))
      cursor = res.body.next_cursor
    } while (cursor)
    expect(pages).toEqual(all)
    // The sub-agent's Grep: rg and its 25 reads nested under it.
    const grep = full.body.items.find((i: Event) => i.tool_name === 'Grep')
    expect(grep.children[0].tool_name).toBe('rg')
    expect(grep.children[0].children.length).toBe(25)
  })

  test('unknown, other-org and bad input: 404 and 400, never a 500', async () => {
    const key = 'x1-59247-1777085379101'
    expect((await t.call('GET', `/v1/sessions/no-such-session/timeline`, { token: a.admin_key })).status).toBe(404)
    expect((await t.call('GET', `/v1/sessions/${crypto.randomUUID()}/timeline`, { token: a.admin_key })).status).toBe(404)
    const mine = await t.call('GET', `/v1/sessions/${key}/timeline`, { token: a.admin_key })
    expect((await t.call('GET', `/v1/sessions/${mine.body.session.id}/timeline`, { token: b.admin_key })).status).toBe(404)
    for (const q of ['limit=0', 'limit=201', 'limit=abc', 'cursor=%7B%7D', 'since=2026-01-01T00:00:00Z']) {
      const res = await t.call('GET', `/v1/sessions/${key}/timeline?${q}`, { token: a.admin_key })
      expect(res.status).toBe(400)
      expect(res.headers.get('content-type')).toContain('application/problem+json')
    }
    expect((await t.call('GET', `/v1/sessions/${key}/timeline`, { token: a.deploy_token })).status).toBe(403)
  })
})

describe('cost on the ingest hot path', () => {
  test('the link lookups are index probes under RLS as the app role (EXPLAIN), never row-by-row label filters', async () => {
    const c = await createOrg(db.app, 'org C', 'cli')
    await db.owner`
      insert into actions (org_id, id, created_at, event_key, event_id, occurred_at, session_key, action_type, labels)
      select ${c.org_id}::uuid, gen_random_uuid(), now() - (g % 600) * interval '1 minute', 'e:' || g, 'e' || g,
             now() - (g % 600) * interval '1 minute', 's' || (g % 300) || case when g % 7 = 0 then ':sub:1' else '' end,
             (array['tools/call', 'PROCESS_EXEC', 'FILE_READ', 'FILE_WRITE', 'NETWORK_CONNECT'])[1 + g % 5],
             jsonb_build_object('pid', (1000 + g % 300)::text, 'ppid', (1000 + (g + 1) % 300)::text, 'tool_use_id', 'toolu_' || (g / 5))
        from generate_series(1, 30000) g`
    await db.owner`analyze actions`
    const now = Date.now()
    const batch: StoredAction[] = rebase(exfil, 'explain')
      .flat()
      .map((raw) => {
        const r = normalizeIngestItem(raw, '', now)
        if (!r.ok) throw new Error(r.reason)
        const event = { ...r.event, occurredAt: r.event.occurredAt.toISOString() }
        return { event, id: crypto.randomUUID(), createdAt: new Date(now).toISOString(), machineId: null }
      })
    const plans = await withOrg(db.app, c.org_id, async (tx) => {
      const { candidates, orphans } = linkLookups(tx, batch)
      const text = async (q: unknown) =>
        (await tx<Record<string, string>[]>`explain (costs off) ${q as ReturnType<typeof tx>}`)
          .map((r) => r['QUERY PLAN'])
          .join('\n')
      return { candidates: await text(candidates), orphans: await text(orphans) }
    })
    const conds = (plan: string) => plan.split('\n').filter((l) => l.includes('Index Cond:'))
    const has = (plan: string, ...parts: string[]) => conds(plan).some((l) => parts.every((p) => l.includes(p)))
    // Each rule's lookup leads with the tenant, the session family and the linking key.
    expect(has(plans.candidates, 'org_id =', 'chain_root = u.root', 'chain_pid = CASE')).toBe(true)
    expect(has(plans.candidates, 'chain_root = u.root', 'chain_tool_use_id = u.tuid')).toBe(true)
    expect(has(plans.candidates, 'chain_root = u.root', 'chain_pid = u.ppid', 'occurred_at >= u.w_lo')).toBe(true)
    expect(has(plans.orphans, 'chain_root = n.root', 'chain_pid = n.key', 'occurred_at >= n.lo')).toBe(true)
    expect(has(plans.orphans, 'chain_root = n.root', 'chain_ppid = n.key', 'occurred_at >= n.lo')).toBe(true)
    expect(has(plans.orphans, 'chain_root = n.root', 'chain_tool_use_id = n.key')).toBe(true)
    for (const plan of [plans.candidates, plans.orphans]) expect(plan).not.toContain('labels ->>')
  })
})
