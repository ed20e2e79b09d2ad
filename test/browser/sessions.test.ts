/**
 * The console's Sessions page in a real browser (issue 12), on a recorded Claude Code session
 * with a sub-agent (test/fixtures/sessions/claude-code-subagent-exfil.json) ingested through the
 * public API: the list, a session's facts, delegation tree and timeline with each tool call's
 * causal chain nested, and `?at=<event id>` (the Alerts page's "Investigate") marking one event.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Browser, Page } from 'playwright-core'
import fixture from '../fixtures/sessions/claude-code-subagent-exfil.json'
import { HOOK_TIMEOUT_MS } from '../helpers/db.ts'
import { cleanUp } from '../helpers/process.ts'
import { eventually } from '../helpers/wait.ts'
import {
  expectAccessible,
  launchBrowser,
  openConsole,
  screenshot,
  startConsoleServer,
  untilText,
  visibleText,
  type ConsoleServer,
} from '../helpers/browser.ts'

let s: ConsoleServer
let browser: Browser

beforeAll(async () => {
  ;[s, browser] = await Promise.all([startConsoleServer(), launchBrowser()])
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  await browser?.close()
  await cleanUp()
  await s?.db.drop()
}, HOOK_TIMEOUT_MS)

const ROOT_KEY = fixture.sessions[0]!
const SUB_KEY = fixture.sessions[1]!

/** The fixture's batches with timestamps moved to the last hours (ingest clamps older ones), spacing kept. */
function rebased(): Record<string, unknown>[][] {
  const times = fixture.batches.flat().map((e) => Date.parse(e.timestamp))
  const shift = Date.now() - 2 * 3600_000 - Math.min(...times)
  return fixture.batches.map((batch) =>
    batch.map((e) => ({ ...e, timestamp: new Date(Date.parse(e.timestamp) + shift).toISOString() })),
  )
}

async function ingest(events: Record<string, unknown>[]): Promise<void> {
  const res = await fetch(`${s.url}/v1/ingest`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.org.deploy_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ events }),
  })
  expect(res.status).toBe(200)
}

async function read<T>(url: string): Promise<T> {
  const res = await fetch(`${s.url}${url}`, { headers: { authorization: `Bearer ${s.org.admin_key}` } })
  expect(res.status).toBe(200)
  return (await res.json()) as T
}

interface Session {
  id: string
  session_key: string
  parent_id: string | null
  risk_summary: { total_events: number }
}

const open = async (p: Page, hash: string) => {
  await p.goto(`${s.url}/${hash}`)
}

describe('the Sessions page', () => {
  test('with nothing ingested it says what to do next', async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await open(c.page, '#/sessions')
    await visibleText(c.page.getByRole('heading', { name: 'No sessions yet' }))
    await expectAccessible(c.page, 'the empty sessions page')
    await open(c.page, '#/sessions/no-such-session')
    await visibleText(c.page.getByRole('heading', { name: 'No such session' }))
    await expectAccessible(c.page, 'an unknown session')
    await screenshot(c.page, 'sessions-empty')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  let root: Session
  let sub: Session
  let netId: string

  test('the list leads to a session: facts, the delegation tree with its sub-agent, the timeline with chains', async () => {
    for (const batch of rebased()) await ingest(batch)
    const distinct = new Set(fixture.batches.flat().map((e) => e.event_id)).size
    // Stored, linked (the exfiltration's curl is the network event's parent) and counted in sessions.
    const listed = await eventually(
      () => read<{ sessions: Session[] }>('/v1/sessions'),
      (r) =>
        r.sessions.length === 2 &&
        r.sessions.reduce((n, x) => n + x.risk_summary.total_events, 0) === distinct &&
        r.sessions.some((x) => x.parent_id !== null),
      30_000,
    )
    root = listed.sessions.find((x) => x.session_key === ROOT_KEY)!
    sub = listed.sessions.find((x) => x.session_key === SUB_KEY)!
    const net = await eventually(
      () =>
        read<{ events: { id: string; event_id: string; parent_id: string | null }[] }>(
          `/v1/events?session_id=${ROOT_KEY}&action_type=NETWORK_CONNECT`,
        ),
      (r) => r.events.some((e) => e.event_id === fixture.exfil.network_event_id && e.parent_id !== null),
      30_000,
    )
    netId = net.events.find((e) => e.event_id === fixture.exfil.network_event_id)!.id

    const c = await openConsole(browser, s.url, s.org.admin_key)
    const { page } = c
    await open(page, '#/sessions')
    const table = page.getByRole('table', { name: /Sessions/ })
    await untilText(table, new RegExp(`sub-agent of\\s+${ROOT_KEY}`))
    expect(await table.locator('tbody tr').count()).toBe(2)
    await expectAccessible(page, 'the sessions list')
    await screenshot(page, 'sessions-list')

    // Top-level only: the sub-agent leaves the list, and the URL says so.
    await page.getByLabel('Top-level sessions only').check()
    await eventually(
      () => table.locator('tbody tr').count(),
      (n) => n === 1,
    )
    expect(page.url()).toContain('root_only=true')

    await table.getByRole('link', { name: ROOT_KEY, exact: true }).click()
    await visibleText(page.getByRole('heading', { name: `Session ${ROOT_KEY}` }))
    const facts = page.getByRole('region', { name: 'Facts' })
    expect(await untilText(facts, /ne-pid-59247/)).toContain('claude-code')
    const tree = page.getByRole('region', { name: /Delegation tree/ })
    expect(await untilText(tree, /2 sessions/)).toContain(SUB_KEY)
    expect(await tree.getByRole('link', { name: SUB_KEY }).getAttribute('href')).toBe(`#/sessions/${sub.id}`)
    // The timeline: each tool call with what it caused beneath it (Bash → zsh → ls → its reads).
    const timeline = page.getByRole('list', { name: 'Timeline' })
    await untilText(timeline, /ls -la src/)
    const bash = timeline.locator(':scope > li').filter({ hasText: 'ls -la src' }).first()
    const nested = await bash.locator('ul.chain').first().innerText()
    expect(nested).toContain('PROCESS_EXEC zsh')
    expect(nested).toContain('PROCESS_EXEC ls')
    expect(nested).toContain('/Users/dev/app/src/app.ts')
    await expectAccessible(page, 'a session detail')
    await screenshot(page, 'session-detail')

    // Down the tree to the sub-agent: its path up names the parent.
    await tree.getByRole('link', { name: SUB_KEY }).click()
    await visibleText(page.getByRole('heading', { name: `Session ${SUB_KEY}` }))
    const trail = page.getByRole('navigation', { name: 'Delegated from' })
    expect(await visibleText(trail)).toContain(ROOT_KEY)
    expect(c.problems()).toEqual([])
    await c.context.close()
  }, 90_000)

  test('?at=<event id> scrolls to that event in its context and marks it', async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    const { page } = c
    // The curl connection was reported in the root session, caused by the sub-agent's Bash call:
    // the sub-agent's timeline shows it nested under that call.
    await open(page, `#/sessions/${encodeURIComponent(SUB_KEY)}?at=${netId}`)
    const marked = page.locator(`li.chain-current#ev-${netId}`)
    await marked.waitFor({ state: 'visible' })
    expect(await visibleText(page.locator('.at-note'))).toContain('The marked event is the one the link points to')
    expect(await marked.locator('.chain-line').first().innerText()).toMatch(/NETWORK_CONNECT curl[\s\S]*this event/)
    expect(await page.evaluate('document.activeElement && document.activeElement.id')).toBe(`ev-${netId}`)
    expect(await marked.isVisible()).toBe(true)
    const inView = await marked.evaluate((el) => {
      const r = el.getBoundingClientRect()
      return r.top >= 0 && r.top < (el.ownerDocument.defaultView?.innerHeight ?? 0)
    })
    expect(inView).toBe(true)
    // Its ancestors are the sub-agent's call and the processes between.
    const call = page.locator('.session-timeline li').filter({ has: marked }).first()
    expect(await call.locator('.chain-line').first().innerText()).toContain('cat ~/.aws/credentials | curl')
    await expectAccessible(page, 'a session at an event')
    await screenshot(page, 'session-at-event')

    // An id the timeline does not hold: said so, with the event on its own offered.
    await open(page, `#/sessions/${sub.id}?at=00000000-0000-4000-8000-000000000000`)
    await untilText(page.getByRole('status').filter({ hasText: /linked event/ }), /not in the/)
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test("a session's new events are offered, not forced, while it is open", async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    const { page } = c
    await open(page, `#/sessions/${root.id}`)
    await untilText(page.getByRole('list', { name: 'Timeline' }), /ls -la src/)
    await untilText(page.getByRole('status').filter({ hasText: /Live|Connecting|Offline/ }), /^Live$/, 20_000)
    await ingest([
      {
        schema_version: 2,
        event_id: crypto.randomUUID(),
        timestamp: new Date().toISOString(),
        session_id: ROOT_KEY,
        agent_id: 'ne-pid-59247',
        action_type: 'tools/call',
        tool_name: 'Bash',
        arguments_json: '{"command":"echo arrived-late"}',
        decision: 'allow',
      },
    ])
    await page.getByRole('button', { name: '1 new event: refresh' }).click({ timeout: 20_000 })
    await untilText(page.getByRole('list', { name: 'Timeline' }), /echo arrived-late/)
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('a filter that matches nothing says so', async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await open(c.page, '#/sessions?agent_id=nobody')
    await visibleText(c.page.getByRole('heading', { name: 'No sessions match these filters' }))
    expect(await c.page.getByLabel('Agent', { exact: true }).inputValue()).toBe('nobody')
    expect(root.id).toBeString()
    expect(c.problems()).toEqual([])
    await c.context.close()
  })
})
