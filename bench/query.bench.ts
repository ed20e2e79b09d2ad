/**
 * query: p99 latency of the read side's hot requests (issue 9) through the real app over HTTP
 * (composed as `serve` composes it, auth and RLS included; requests by a lean HTTP/1.1 client,
 * bench/lib/http-client.ts), each beside the same SQL run raw by
 * the table owner with an explicit `org_id = $1` (no HTTP, no RLS) in the same run, as a ratio.
 *
 * Data: 1M actions over 100 orgs, one holding 200k in 2,000+ sessions with sub-agents and OS
 * events linked to their tool calls (bench/lib/query-data.ts), on a throw-away embedded Postgres
 * dropped afterwards. Requests are sequential and app and raw alternate request by request, so
 * both see the same machine (this box's speed drifts within a minute).
 */
import { randomBytes } from 'node:crypto'
import { composeApp } from '../src/app.ts'
import { SecretBox } from '../src/auth/secret-box.ts'
import { LocalBus } from '../src/bus/bus.ts'
import { loadConfig } from '../src/config.ts'
import { encodeCursor } from '../src/http/pagination.ts'
import { createPool, withOrg, type Sql } from '../src/infra/db.ts'
import { createLogger } from '../src/infra/log.ts'
import { Lifecycle } from '../src/lifecycle.ts'
import { withThrowawayDatabase } from './lib/database.ts'
import { rawHttpClient, type RawHttpClient } from './lib/http-client.ts'
import { percentile, round } from './lib/measure.ts'
import { benchShape, loadReadSide, TIMELINE_EVENTS, type Loaded } from './lib/query-data.ts'
import { rawChain, rawEventsPage, rawStats, rawTimeline } from './lib/query-raw.ts'

export const name = 'query'

/** At least this many requests per figure and side: a p99 over fewer is just the maximum. */
const MIN_SAMPLES = 200
const WARMUP = 20

interface Case {
  label: string
  path: string
  raw: () => Promise<unknown>
}

interface Figure {
  key: string
  title: string
  targetMs: number
  targetRatio?: number
  cases: Case[]
}

export async function run(opts: { seconds: number }) {
  const log = createLogger('warn', 'stderr')
  return withThrowawayDatabase(log, async (db) => {
    const owner = createPool(db.ownerTarget, { max: 1, applicationName: 'quint-bench-raw' })
    const lifecycle = new Lifecycle(log)
    const composed = composeApp({
      config: loadConfig({ QUINT_BOOTSTRAP_ORG: '' }),
      sql: db.app,
      log,
      lifecycle,
      bus: new LocalBus(),
      secrets: new SecretBox(randomBytes(32)),
    })
    let server: ReturnType<typeof Bun.serve> | null = null
    let client: RawHttpClient | null = null
    try {
      // Progress on stderr: loading takes a minute or more, and the figures print only at the end.
      process.stderr.write('query: loading 1M actions over 100 orgs…\n')
      const loaded = await loadReadSide(db.app, owner, benchShape())
      process.stderr.write(`query: loaded in ${round(loaded.seconds, 1)} s; measuring\n`)
      await composed.start()
      lifecycle.markReady()
      server = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: composed.app.fetch })
      // A lean keep-alive client (bench/lib/http-client.ts): `fetch`'s own thread hop is the
      // client's cost, not the service's.
      client = await rawHttpClient('127.0.0.1', server.port!)
      const http = client
      const headers = { authorization: `Bearer ${loaded.big.org.admin_key}` }
      const get = async (path: string) => {
        const t = performance.now()
        const res = await http.get(path, headers)
        const ms = performance.now() - t
        if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${res.body.slice(0, 300)}`)
        return { ms, body: res.body }
      }
      const figures = await figuresFor(owner, loaded)
      await checkAgreement(get, owner, loaded)
      const result = await measure(figures, get, opts.seconds, loaded)
      result.rows.push(...(await floors(get, db.app, loaded.big.org.org_id, result.figures)))
      return result
    } finally {
      client?.close()
      server?.stop(true)
      await composed.stop()
      await owner.end({ timeout: 1 })
    }
  })
}

const EVENTS_FILTERS = {
  agent_key: 'agent-3',
  action_type: 'tools/call',
  since: new Date(Date.now() - 29 * 86_400_000).toISOString(),
}
const eventsQuery = `agent_id=${EVENTS_FILTERS.agent_key}&action_type=${encodeURIComponent(EVENTS_FILTERS.action_type)}&since=${encodeURIComponent(EVENTS_FILTERS.since)}`

async function figuresFor(owner: Sql, loaded: Loaded): Promise<Figure[]> {
  const { org, timeline, chainEventId } = loaded.big
  const orgId = org.org_id
  // With a filter no index leads, the API windows the list (30 days at most; docs/events.md):
  // `since` names that window, so the deep page is within it and both sides read the same rows.
  const filters = EVENTS_FILTERS
  // A cursor 1,500 rows into the filtered listing (page 31, about ten days back): exactly the
  // cursor the API hands out at that row.
  const [deep] = await owner<{ at: string; id: string }[]>`
    select occurred_at::text as at, id from actions
     where org_id = ${orgId} and agent_key = ${filters.agent_key} and action_type = ${filters.action_type}
     order by occurred_at desc, id desc offset 1500 limit 1`
  if (!deep) throw new Error('query bench: no row for the deep cursor')
  const qs = eventsQuery
  return [
    {
      key: 'events_page',
      title: 'GET /v1/events, 2 filters, first + deep page',
      targetMs: 10,
      targetRatio: 1.5,
      cases: [
        {
          label: 'first page (agent_id + action_type)',
          path: `/v1/events?${qs}`,
          raw: () => rawEventsPage(owner, orgId, filters, 50, null),
        },
        {
          label: 'deep cursor page (row 1,500)',
          path: `/v1/events?${qs}&cursor=${encodeCursor(deep)}`,
          raw: () => rawEventsPage(owner, orgId, filters, 50, deep),
        },
      ],
    },
    {
      key: 'session_timeline',
      title: `GET /v1/sessions/{id}/timeline, a ${TIMELINE_EVENTS}-event session`,
      targetMs: 20,
      cases: [
        {
          // 125 tool calls with their 375 OS events nested: the whole session in one page.
          label: 'whole session, limit=200',
          path: `/v1/sessions/${timeline.id}/timeline?limit=200`,
          raw: () => rawTimeline(owner, orgId, timeline.id, 200),
        },
      ],
    },
    {
      key: 'stats_24h',
      title: 'GET /v1/events/stats, last 24 h of the 200k-event org',
      targetMs: 100,
      cases: [
        {
          label: 'default window (24 h, ~50k events)',
          path: '/v1/events/stats',
          raw: () => rawStats(owner, orgId, new Date(Date.now() - 86_400_000).toISOString(), new Date().toISOString()),
        },
      ],
    },
    {
      key: 'chain',
      title: 'GET /v1/events/{id}/chain, a process exec',
      targetMs: 10,
      cases: [
        {
          label: 'tool call → exec → 2 effects',
          path: `/v1/events/${chainEventId}/chain`,
          raw: () => rawChain(owner, orgId, chainEventId),
        },
      ],
    },
  ]
}

/** The baselines must do the endpoints' work: same rows, or the ratio means nothing. */
async function checkAgreement(get: (path: string) => Promise<{ body: string }>, owner: Sql, loaded: Loaded) {
  const { org, timeline, chainEventId } = loaded.big
  const page = JSON.parse((await get(`/v1/events?${eventsQuery}`)).body) as { events: { id: string }[] }
  const raw = await rawEventsPage(owner, org.org_id, EVENTS_FILTERS, 50, null)
  const same =
    page.events.map((e) => e.id).join() ===
    raw
      .slice(0, 50)
      .map((r) => r.id as string)
      .join()
  if (!same || page.events.length !== 50) throw new Error('query bench: the events page and its baseline disagree')
  // The deep page too: a window that left it empty once measured nothing against a full page.
  const [deep] = await owner<{ at: string; id: string }[]>`
    select occurred_at::text as at, id from actions
     where org_id = ${org.org_id} and agent_key = ${EVENTS_FILTERS.agent_key} and action_type = ${EVENTS_FILTERS.action_type}
     order by occurred_at desc, id desc offset 1500 limit 1`
  const deepPage = JSON.parse((await get(`/v1/events?${eventsQuery}&cursor=${encodeCursor(deep!)}`)).body) as {
    events: { id: string }[]
  }
  const deepRaw = await rawEventsPage(owner, org.org_id, EVENTS_FILTERS, 50, deep!)
  if (
    deepPage.events.length !== 50 ||
    deepPage.events.map((e) => e.id).join() !==
      deepRaw
        .slice(0, 50)
        .map((r) => r.id)
        .join()
  ) {
    throw new Error('query bench: the deep events page and its baseline disagree')
  }
  const tl = JSON.parse((await get(`/v1/sessions/${timeline.id}/timeline?limit=200`)).body) as { items: unknown[] }
  const count = (items: unknown[]): number =>
    items.reduce<number>((n, i) => n + 1 + count((i as { children?: unknown[] }).children ?? []), 0)
  if (count(tl.items) !== TIMELINE_EVENTS || (await rawTimeline(owner, org.org_id, timeline.id, 200)) !== TIMELINE_EVENTS)
    throw new Error(`query bench: the timeline holds ${count(tl.items)} events, not ${TIMELINE_EVENTS}`)
  const chain = JSON.parse((await get(`/v1/events/${chainEventId}/chain`)).body) as { ancestors: unknown[]; effects: unknown[] }
  const since = new Date(Date.now() - 86_400_000).toISOString()
  const until = new Date().toISOString()
  const stats = JSON.parse((await get(`/v1/events/stats?since=${since}&until=${until}`)).body) as { total: number }
  const rawRows = (await rawStats(owner, org.org_id, since, until)) as unknown as { kind: string; n: number }[]
  const rawTotal = rawRows.filter((r) => r.kind === 'hour').reduce((n, r) => n + r.n, 0)
  if (stats.total !== rawTotal || rawTotal === 0)
    throw new Error(`query bench: stats count ${stats.total}, its baseline ${rawTotal}`)
  if (chain.ancestors.length !== 1 || chain.effects.length !== 2 || (await rawChain(owner, org.org_id, chainEventId)) !== 4)
    throw new Error('query bench: the chain is not tool call → exec → 2 effects')
}

async function measure(figures: Figure[], get: (path: string) => Promise<{ ms: number }>, seconds: number, loaded: Loaded) {
  const out: Record<string, number> = {}
  const rows: string[][] = [['figure', 'app p99', 'raw p99 (owner SQL)', 'ratio', 'target']]
  for (const f of figures) {
    for (const c of f.cases) {
      for (let i = 0; i < WARMUP; i++) {
        await get(c.path)
        await c.raw()
      }
    }
    const app = new Map<Case, number[]>(f.cases.map((c) => [c, []]))
    const raw = new Map<Case, number[]>(f.cases.map((c) => [c, []]))
    const end = performance.now() + seconds * 2000
    let n = 0
    // Round robin over the cases, app then raw for each: the same machine conditions for both.
    while (n < MIN_SAMPLES || performance.now() < end) {
      for (const c of f.cases) {
        app.get(c)!.push((await get(c.path)).ms)
        const t = performance.now()
        await c.raw()
        raw.get(c)!.push(performance.now() - t)
        n++
      }
    }
    const all = (m: Map<Case, number[]>) => [...m.values()].flat().sort((a, b) => a - b)
    const p99 = percentile(all(app), 99)
    const rawP99 = percentile(all(raw), 99)
    const ratio = p99 / rawP99
    out[`query.${f.key}_p99_ms`] = round(p99, 3)
    out[`query.${f.key}_raw_p99_ms`] = round(rawP99, 3)
    out[`query.${f.key}_ratio`] = round(ratio, 2)
    const met = p99 <= f.targetMs && (f.targetRatio === undefined || ratio <= f.targetRatio)
    const target = `≤ ${f.targetMs} ms${f.targetRatio ? `, ratio ≤ ${f.targetRatio}` : ''}: ${met ? 'met' : 'MISSED'}`
    rows.push([`query.${f.key}_p99_ms`, `${round(p99, 2)} ms`, `${round(rawP99, 2)} ms`, `${round(ratio, 2)}`, target])
    rows.push([`  ${f.title}`, '', '', '', `${all(app).length} requests each side`])
    for (const c of f.cases) {
      const a = app.get(c)!.sort((x, y) => x - y)
      const r = raw.get(c)!.sort((x, y) => x - y)
      rows.push([
        `    ${c.label}`,
        `p50 ${round(percentile(a, 50), 2)} / p99 ${round(percentile(a, 99), 2)}`,
        `p50 ${round(percentile(r, 50), 2)} / p99 ${round(percentile(r, 99), 2)}`,
        '',
      ])
    }
  }
  const actions = loaded.orgs.reduce((s, o) => s + o.events, 0)
  out['query.load_seconds'] = round(loaded.seconds, 1)
  rows.push([
    'data set',
    `${actions} actions, ${loaded.orgs.length} orgs`,
    `largest org ${loaded.big.org.events}`,
    `loaded in ${round(loaded.seconds, 1)} s`,
  ])
  return { figures: out, rows }
}

/**
 * Where the ratios come from: the same loop over an authenticated request that reads nothing
 * (`GET /v1/auth/whoami`: HTTP, request context, credential check) and over an empty tenant
 * transaction (`withOrg`: reserve, BEGIN, set_config, COMMIT), both on this database.
 */
async function floors(get: (path: string) => Promise<{ ms: number }>, app: Sql, orgId: string, out: Record<string, number>) {
  const loop = async (fn: () => Promise<number>) => {
    for (let i = 0; i < WARMUP; i++) await fn()
    const xs: number[] = []
    for (let i = 0; i < MIN_SAMPLES * 2; i++) xs.push(await fn())
    return xs.sort((a, b) => a - b)
  }
  const http = await loop(async () => (await get('/v1/auth/whoami')).ms)
  const tx = await loop(async () => {
    const t = performance.now()
    await withOrg(app, orgId, (tx) => tx`select 1`)
    return performance.now() - t
  })
  out['query.floor_http_auth_p99_ms'] = round(percentile(http, 99), 3)
  out['query.floor_tenant_tx_p99_ms'] = round(percentile(tx, 99), 3)
  const row = (label: string, xs: number[]) => [
    label,
    `p50 ${round(percentile(xs, 50), 2)} / p99 ${round(percentile(xs, 99), 2)}`,
    '',
    '',
  ]
  return [row('floor: GET /v1/auth/whoami (HTTP + auth, no read)', http), row('floor: empty withOrg transaction (quint_app)', tx)]
}
