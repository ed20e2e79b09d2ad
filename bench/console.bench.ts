/**
 * console: the web console (issue 12) in headless Chromium (Debian's, driven by playwright-core)
 * against a real `serve` process over a database holding 1M stored events (bench/lib/query-data.ts:
 * 100 orgs, the one signed in to holding 200k), each figure beside a floor measured in the same run:
 *
 * - `console.first_load_js_kb`: the JavaScript the first visit transfers (compressed, as served),
 *   beside a bundle of nothing but the two libraries it is built on (Preact and uPlot), minified
 *   and brotli-compressed the same way: what any console on this stack pays.
 * - `console.overview_ready_ms`: from navigation start, in a fresh browser context (nothing
 *   cached), until the overview shows its figures (the page's `quint:overview-ready` mark), beside
 *   the same API requests the overview makes sent at once by a plain client.
 * - `console.live_event_ms`: from sending an event to `POST /v1/ingest` until it is in an open
 *   Events page's DOM (p99 of the rounds; the page watches itself with a MutationObserver), beside
 *   the ingest's own durable ack time.
 */
import fs from 'node:fs'
import path from 'node:path'
import { brotliCompressSync, constants as zlib } from 'node:zlib'
import { chromium, type Browser, type Page } from 'playwright-core'
import { createPool } from '../src/infra/db.ts'
import { createLogger } from '../src/infra/log.ts'
import { dsn, withThrowawayDatabase } from './lib/database.ts'
import { percentile, round } from './lib/measure.ts'
import { benchShape, loadReadSide } from './lib/query-data.ts'
import { startServe } from './lib/serve.ts'

export const name = 'console'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const LOADS = 7
const LIVE_ROUNDS = 20
const CREDENTIAL = 'quint.console.credential'

export async function run(_opts: { seconds: number }) {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`console bench: Chromium not found at ${CHROMIUM} (apt-get install chromium)`)
  const log = createLogger('warn', 'stderr')
  const floorKb = await librariesFloorKb()
  return withThrowawayDatabase(log, async (db) => {
    const owner = createPool(db.ownerTarget, { max: 1, applicationName: 'quint-bench-raw' })
    process.stderr.write('console: loading 1M actions over 100 orgs…\n')
    const loaded = await loadReadSide(db.app, owner, benchShape())
    await owner.end({ timeout: 1 })
    const server = await startServe({
      DATABASE_URL: dsn(db.ownerTarget),
      DATABASE_APP_URL: dsn(db.appTarget),
      QUINT_DATA_DIR: '',
      QUINT_BOOTSTRAP_ORG: '',
    })
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    })
    try {
      const org = loaded.big.org
      const jsKb = await firstLoadJsKb(browser, server.url, org.admin_key)
      const overview = await overviewReady(browser, server.url, org.admin_key)
      const live = await liveEvent(browser, server.url, org.admin_key, org.deploy_token)
      return {
        figures: {
          'console.first_load_js_kb': round(jsKb, 1),
          'console.first_load_js_floor_kb': round(floorKb, 1),
          'console.overview_ready_ms': round(overview.p50, 1),
          'console.overview_ready_max_ms': round(overview.max, 1),
          'console.overview_api_floor_ms': round(overview.floor, 1),
          'console.live_event_ms': round(live.p99, 1),
          'console.live_event_p50_ms': round(live.p50, 1),
          'console.live_ack_p99_ms': round(live.ackP99, 1),
        },
        rows: [
          ['figure', 'console', 'floor, same run', 'ratio · target'],
          [
            'first load JS (brotli, as served)',
            `${round(jsKb, 1)} KB`,
            `Preact + uPlot alone ${round(floorKb, 1)} KB`,
            `${round(jsKb / floorKb, 2)} · ≤ 300 KB`,
          ],
          [
            `overview ready, cold (p50, max of ${LOADS})`,
            `${round(overview.p50, 1)} ms, max ${round(overview.max, 1)} ms`,
            `its API requests alone ${round(overview.floor, 1)} ms`,
            `${round(overview.p50 / overview.floor, 2)} · ≤ 1000 ms`,
          ],
          [
            `live event on the Events page (p99, p50 of ${LIVE_ROUNDS})`,
            `${round(live.p99, 1)} ms, p50 ${round(live.p50, 1)} ms`,
            `ingest ack p99 ${round(live.ackP99, 1)} ms`,
            `${round(live.p99 / live.ackP99, 2)} · ≤ 1000 ms`,
          ],
        ],
      }
    } finally {
      await browser.close()
      server.proc.kill('SIGTERM')
      await server.proc.exited
    }
  })
}

/** Preact and uPlot, nothing else, built as the console is built: the stack's own weight. */
async function librariesFloorKb(): Promise<number> {
  const dir = fs.mkdtempSync(path.join(import.meta.dir, '.floor-'))
  try {
    const entry = path.join(dir, 'floor.ts')
    fs.writeFileSync(
      entry,
      "import { h, render } from 'preact'\nimport { useState } from 'preact/hooks'\nimport uPlot from 'uplot'\n" +
        'render(h(() => { const [n] = useState(0); return h("p", null, String(n)) }, null), document.body)\n' +
        'new uPlot({ width: 10, height: 10, series: [{}] }, [[]], document.body)\n',
    )
    const out = await Bun.build({ entrypoints: [entry], target: 'browser', minify: true })
    if (!out.success) throw new AggregateError(out.logs, 'floor bundle failed')
    const bytes = new Uint8Array(await out.outputs[0]!.arrayBuffer())
    return brotliCompressSync(bytes, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11 } }).length / 1024
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

async function signedInPage(browser: Browser, url: string, key: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } })
  // What signing in leaves behind, before the first script runs: the measured load starts signed in.
  await context.addInitScript(
    ([name, value]) => sessionStorage.setItem(name!, value!),
    [CREDENTIAL, JSON.stringify({ kind: 'key', token: key })],
  )
  return context.newPage()
}

async function firstLoadJsKb(browser: Browser, url: string, key: string): Promise<number> {
  const page = await signedInPage(browser, url, key)
  const scripts: Promise<number>[] = []
  page.on('requestfinished', (req) => {
    if (req.resourceType() === 'script') scripts.push(req.sizes().then((s) => s.responseBodySize))
  })
  await page.goto(`${url}/`)
  await page.waitForSelector('[data-ready="true"]', { timeout: 30_000 })
  const bytes = (await Promise.all(scripts)).reduce((a, b) => a + b, 0)
  await page.context().close()
  if (bytes === 0) throw new Error('console bench: no script was loaded')
  return bytes / 1024
}

async function overviewReady(browser: Browser, url: string, key: string) {
  const times: number[] = []
  const floors: number[] = []
  for (let i = 0; i < LOADS; i++) {
    const page = await signedInPage(browser, url, key)
    await page.goto(`${url}/#/overview`)
    await page.waitForSelector('[data-ready="true"]', { timeout: 30_000 })
    times.push((await page.evaluate("performance.getEntriesByName('quint:overview-ready')[0].startTime")) as number)
    await page.context().close()
    floors.push(await overviewRequests(url, key))
  }
  times.sort((a, b) => a - b)
  floors.sort((a, b) => a - b)
  return { p50: percentile(times, 50), max: times.at(-1)!, floor: percentile(floors, 50) }
}

/** The requests the overview makes (src/console/ui/pages/overview.tsx), sent at once. */
async function overviewRequests(url: string, key: string): Promise<number> {
  const headers = { authorization: `Bearer ${key}` }
  const paths = [
    '/v1/auth/whoami',
    '/v1/events/stats',
    '/v1/machines?online=true&limit=200',
    '/v1/machines?limit=200',
    '/v1/ingest/stats?limit=1',
    ...['critical', 'high', 'medium', 'low'].map((s) => `/v1/alerts?status=open&severity=${s}&limit=200`),
  ]
  const t = performance.now()
  await Promise.all(
    paths.map(async (p) => {
      const res = await fetch(`${url}${p}`, { headers })
      if (res.status !== 200) throw new Error(`${p}: ${res.status}`)
      await res.arrayBuffer()
    }),
  )
  return performance.now() - t
}

async function liveEvent(browser: Browser, url: string, key: string, deploy: string) {
  const page = await signedInPage(browser, url, key)
  await page.goto(`${url}/#/events`)
  await page.waitForSelector('.live-live', { timeout: 30_000 })
  const live: number[] = []
  const acks: number[] = []
  for (let i = 0; i < LIVE_ROUNDS; i++) {
    const marker = `bench-${crypto.randomUUID().slice(0, 8)}`
    // Evaluated in the page: resolves with the page's clock (the same machine's) when the marker shows.
    // (Returns nothing: `evaluate` would wait for a returned promise, and nothing is sent yet.)
    await page.evaluate(`void (window.seen = new Promise((resolve) => {
      const observer = new MutationObserver(() => {
        if (document.body.textContent.includes(${JSON.stringify(marker)})) {
          observer.disconnect()
          resolve(Date.now())
        }
      })
      observer.observe(document.body, { childList: true, subtree: true, characterData: true })
    }))`)
    const sent = Date.now()
    const res = await fetch(`${url}/v1/ingest`, {
      method: 'POST',
      headers: { authorization: `Bearer ${deploy}`, 'content-type': 'application/json' },
      body: JSON.stringify({ events: [event(marker)] }),
    })
    if (res.status !== 200) throw new Error(`ingest: ${res.status} ${await res.text()}`)
    acks.push(Date.now() - sent)
    const seen = (await page.evaluate('window.seen')) as number
    live.push(seen - sent)
  }
  await page.context().close()
  live.sort((a, b) => a - b)
  acks.sort((a, b) => a - b)
  return { p50: percentile(live, 50), p99: percentile(live, 99), ackP99: percentile(acks, 99) }
}

const event = (marker: string) => ({
  schema_version: 2,
  event_id: crypto.randomUUID(),
  timestamp: new Date().toISOString(),
  source: 'claude-code',
  platform: 'claude-code',
  session_id: `bench-live-${marker}`,
  agent_id: 'claude-code',
  action_type: 'tools/call',
  tool_name: marker,
  arguments_json: JSON.stringify({ command: 'ls' }),
  decision: 'allow',
  risk_score: 5,
})
