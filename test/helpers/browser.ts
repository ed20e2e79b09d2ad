/**
 * The console in a real browser (issue 12): Debian's Chromium driven by playwright-core, headless,
 * against a real `serve` process on a fresh test database. Nothing is mocked: what the page shows
 * came through the public API.
 *
 * Every page a test opens is watched for script errors and Content-Security-Policy violations
 * (`problems()`), checked with axe-core (`expectAccessible`: no serious or critical violation), and
 * photographed into `test-artifacts/console/` (`screenshot`).
 */
import { expect } from 'bun:test'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core'
import { databaseEnv, testDatabase, type TestDatabase } from './db.ts'
import { childEnv, createOrg, ROOT, scratchDataDir, startServer, type CreatedOrg, type RunningServer } from './process.ts'

export const ARTIFACTS = path.join(ROOT, 'test-artifacts', 'console')
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

export interface ConsoleServer {
  url: string
  org: CreatedOrg
  server: RunningServer
  db: TestDatabase
  env: Record<string, string>
  /** The API over HTTP as any client calls it: the status and the JSON answer. */
  call(token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, any> }>
}

/** A `serve` process on a fresh database, with one org made by the CLI. */
export async function startConsoleServer(extra: Record<string, string> = {}): Promise<ConsoleServer> {
  const db = await testDatabase()
  const env = childEnv({
    ...databaseEnv(db),
    QUINT_BOOTSTRAP_ORG: '',
    QUINT_DATA_DIR: scratchDataDir('quint-console-'),
    AUTH_MASTER_KEY: randomBytes(32).toString('hex'),
    LOG_LEVEL: 'warn',
    SHUTDOWN_TIMEOUT_MS: '5000',
    ...extra,
  })
  const server = await startServer(env)
  const org = await createOrg(env, 'console')
  const call: ConsoleServer['call'] = async (token, method, path, body) => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await res.text()
    return { status: res.status, body: (text ? JSON.parse(text) : null) as Record<string, any> }
  }
  return { url: server.url, org, server, db, env, call }
}

export async function launchBrowser(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium) or set CHROMIUM_PATH`,
    )
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As root in a container Chromium needs --no-sandbox; the rest keeps it off the network.
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
}

export interface ConsolePage {
  page: Page
  context: BrowserContext
  /** Script errors, failed requests the page did not expect, and CSP violations seen so far. */
  problems(): string[]
}

/** A new tab on the console, signed in with `key` (an API key pasted, as in local mode). */
export async function openConsole(browser: Browser, url: string, key?: string): Promise<ConsolePage> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } })
  const page = await context.newPage()
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`)
  })
  await page.goto(`${url}/`)
  if (key) await signIn(page, key)
  return { page, context, problems: () => [...problems] }
}

export async function signIn(page: Page, key: string): Promise<void> {
  await page.getByLabel(/API key/).fill(key)
  await page.getByRole('button', { name: 'Sign in', exact: true }).click()
  await page.getByRole('navigation', { name: 'Console' }).waitFor()
}

const axeSource = fs.readFileSync(path.join(ROOT, 'node_modules/axe-core/axe.min.js'), 'utf8')

interface AxeViolation {
  id: string
  impact: string | null
  help: string
  nodes: { target: string[] }[]
}

/** axe-core on what the page shows now: no serious or critical violation (WCAG 2.1 A and AA rules). */
export async function expectAccessible(page: Page, what: string): Promise<void> {
  // Evaluated through the DevTools protocol, so the page's CSP does not apply to the checker.
  if (!(await page.evaluate('typeof window.axe !== "undefined"'))) await page.evaluate(axeSource)
  const violations = (await page.evaluate(
    `axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] }, resultTypes: ['violations'] }).then(r => r.violations)`,
  )) as AxeViolation[]
  const bad = violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)
  expect(bad, `axe on ${what}`).toEqual([])
}

export async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(ARTIFACTS, { recursive: true })
  const file = path.join(ARTIFACTS, `${name}.png`)
  await page.screenshot({ path: file, fullPage: true })
  return file
}

/**
 * Waits until `locator` is visible (playwright-core has no web-first assertions) and returns its
 * text, so the test can `expect` on it.
 */
export async function visibleText(locator: Locator, timeout = 10_000): Promise<string> {
  await locator.first().waitFor({ state: 'visible', timeout })
  return locator.first().innerText()
}

/** Waits until `locator`'s text matches `pattern`; the last text seen is in the failure. */
export async function untilText(locator: Locator, pattern: RegExp, timeout = 10_000): Promise<string> {
  const deadline = Date.now() + timeout
  let last = ''
  while (Date.now() < deadline) {
    last = await locator
      .first()
      .innerText({ timeout: Math.max(1, deadline - Date.now()) })
      .catch(() => last)
    if (pattern.test(last)) return last
    await Bun.sleep(50)
  }
  throw new Error(`text never matched ${pattern}; last seen: ${JSON.stringify(last.slice(0, 500))}`)
}
