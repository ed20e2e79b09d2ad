/**
 * The Alerts page in a real browser (issue 12): alerts raised for real by the built-in rules and
 * a custom rule from events ingested with the org's deploy token and a registered machine's own
 * token; the queue's order and its filters in the address; triage (acknowledge, dismiss) checked
 * through the API; an alert opened with its story and the way into its session; "Create policy"
 * prefilling the editor, previewed and saved; "Block agent" confirmed over its simulation.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Browser, Page } from 'playwright-core'
import { HOOK_TIMEOUT_MS } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'
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
let machine: { id: string; token: string }

const call = (token: string, method: string, path: string, body?: unknown) => s.call(token, method, path, body)
const admin = (method: string, path: string, body?: unknown) => call(s.org.admin_key, method, path, body)

async function ingest(token: string, over: Record<string, unknown>) {
  const res = await call(token, 'POST', '/v1/ingest', { events: [v2Event(over)] })
  expect(res.status).toBe(200)
  expect(res.body.accepted).toBe(1)
}

/** The open alerts once the consumers have raised `n` of them (and stored their actions). */
const openAlerts = (n: number) =>
  eventually(
    async () => (await admin('GET', '/v1/alerts?status=open&limit=200')).body.alerts as Record<string, any>[],
    (a) => a.length >= n && a.every((x) => x.action_id !== null),
  )

/** The queue's rows as the table shows them, top to bottom. */
const queueRows = (page: Page) => page.locator('.vbody [role="row"]').allInnerTexts()

/** Focus moves after the render that shows its target: wait for it to land there. */
const focusOn = (page: Page, what: 'id' | 'className' | 'textContent', want: string) =>
  eventually(
    () => page.evaluate(`document.activeElement?.${what} ?? ''`) as Promise<string>,
    (v) => v === want,
    3_000,
  )

beforeAll(async () => {
  ;[s, browser] = await Promise.all([startConsoleServer(), launchBrowser()])
  const reg = await call(s.org.deploy_token, 'POST', '/v1/machines/register', {
    machine_id: 'c'.repeat(32),
    hostname: 'alice-mbp',
  })
  expect(reg.status).toBe(201)
  machine = { id: reg.body.machine_id, token: reg.body.service_token }
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  await browser?.close()
  await cleanUp()
  await s?.db.drop()
}, HOOK_TIMEOUT_MS)

describe('the triage queue', () => {
  test('with nothing raised, it says so and what to do', async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/alerts`)
    await visibleText(c.page.getByRole('heading', { name: 'Nothing to triage' }))
    await expectAccessible(c.page, 'the empty alert queue')
    await screenshot(c.page, 'alerts-empty')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('open alerts by severity, then newest first; filters live in the address', async () => {
    const rule = await admin('POST', '/v1/alert-rules', {
      name: 'Lint run',
      severity: 'low',
      condition: { field: 'tool_name', op: 'eq', value: 'Lint' },
    })
    expect(rule.status).toBe(201)
    // Oldest first: a low, a high (a credential read, no machine), then two criticals from the laptop.
    await ingest(s.org.deploy_token, {
      session_id: 'sess-low',
      agent_id: 'linter',
      tool_name: 'Lint',
      arguments_json: '{"path":"src"}',
    })
    await ingest(s.org.deploy_token, {
      session_id: 'sess-cred',
      agent_id: 'claude-code',
      tool_name: 'Read',
      arguments_json: '{"file_path":"/home/alice/.aws/credentials"}',
    })
    await openAlerts(2)
    await ingest(machine.token, { session_id: 'sess-rm', agent_id: 'claude-code', arguments_json: '{"command":"ls -la /"}' })
    await ingest(machine.token, { session_id: 'sess-rm', agent_id: 'claude-code', arguments_json: '{"command":"rm -rf /"}' })
    await openAlerts(3)
    await ingest(machine.token, {
      session_id: 'sess-rm2',
      agent_id: 'cursor-agent',
      arguments_json: '{"command":"sudo rm -rf ~"}',
    })
    const alerts = await openAlerts(4)
    expect(alerts.map((a) => a.severity).sort()).toEqual(['critical', 'critical', 'high', 'low'])

    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/alerts`)
    await untilText(c.page.locator('.page-header'), /4 unreviewed alerts/)
    const rows = await queueRows(c.page)
    expect(rows).toHaveLength(4)
    expect(rows[0]).toMatch(/critical[\s\S]*Destructive command[\s\S]*alice-mbp[\s\S]*cursor-agent/)
    expect(rows[1]).toMatch(/critical[\s\S]*Destructive command[\s\S]*alice-mbp[\s\S]*claude-code/)
    expect(rows[2]).toMatch(/high[\s\S]*[Cc]redential/)
    expect(rows[3]).toMatch(/low[\s\S]*Lint run/)
    await expectAccessible(c.page, 'the alert queue')
    await screenshot(c.page, 'alerts-queue')

    await c.page.getByLabel('Severity').selectOption('high')
    await untilText(c.page.locator('.page-header'), /1 unreviewed alert\b/)
    expect(c.page.url()).toContain('#/alerts?severity=high')
    expect(await queueRows(c.page)).toEqual([expect.stringMatching(/[Cc]redential/)])

    await c.page.goto(`${s.url}/#/alerts?machine=${machine.id}`)
    await untilText(c.page.locator('.page-header'), /2 unreviewed alerts/)
    expect(await c.page.getByLabel('Machine').inputValue()).toBe(machine.id)
    expect((await queueRows(c.page)).every((r) => r.includes('alice-mbp'))).toBe(true)

    await c.page.getByLabel('Agent').fill('cursor-agent')
    await c.page.getByLabel('Agent').press('Enter')
    await untilText(c.page.locator('.page-header'), /1 unreviewed alert\b/)
    expect(c.page.url()).toContain('agent=cursor-agent')
    expect(await queueRows(c.page)).toEqual([expect.stringMatching(/cursor-agent/)])

    await c.page.getByRole('link', { name: 'Back to the open queue' }).click()
    await untilText(c.page.locator('.page-header'), /4 unreviewed alerts/)
    expect(c.problems()).toEqual([])
    await c.context.close()
  })
})

describe('one alert', () => {
  test('opened: what matched, where, the story; Investigate opens its session at its event', async () => {
    const alerts = await openAlerts(4)
    const rm = alerts.find((a) => a.agent_key === 'claude-code' && a.rule_key === 'builtin:destructive_command')!
    const detail = (await admin('GET', `/v1/alerts/${rm.id}`)).body
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/alerts`)
    await c.page.locator('.vbody').getByRole('link', { name: rm.title }).nth(1).click()
    const card = c.page.getByRole('article')
    await untilText(card, /rm -rf \//)
    expect(c.page.url()).toContain(`#/alerts/${rm.id}`)
    const text = await card.innerText()
    expect(text).toContain('builtin:destructive_command')
    expect(text).toContain('alice-mbp')
    // The story: the earlier `ls` of the session, then the trigger, marked.
    const story = await c.page.locator('.story li').allInnerTexts()
    expect(story).toHaveLength(2)
    expect(story[0]).toContain('ls -la /')
    expect(story[1]).toMatch(/rm -rf \/[\s\S]*this alert/)
    const investigate = await card.getByRole('link', { name: 'Investigate' }).getAttribute('href')
    expect(investigate).toBe(`#/sessions/${detail.session.id}?at=${rm.action_id}`)
    await expectAccessible(c.page, 'an alert opened beside the queue')
    await screenshot(c.page, 'alerts-detail')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('acknowledge and dismiss change its status, and the API agrees', async () => {
    const alerts = await openAlerts(4)
    const low = alerts.find((a) => a.severity === 'low')!
    const high = alerts.find((a) => a.severity === 'high')!
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/alerts/${low.id}`)
    await c.page.getByRole('button', { name: 'Acknowledge' }).click()
    const notice = c.page.getByRole('article').getByRole('status')
    expect(await untilText(notice, /Alert acknowledged/)).toMatch(/Next in the queue/)
    // Focus lands on what happened, so a keyboard user hears it and can go on.
    await focusOn(c.page, 'className', 'notice')
    expect((await admin('GET', `/v1/alerts/${low.id}`)).body.status).toBe('acknowledged')
    // It left the open queue (three remain), and the card offers the way back.
    await untilText(c.page.locator('.page-header'), /3 unreviewed alerts/)
    await visibleText(c.page.getByRole('button', { name: 'Reopen' }))

    await c.page.goto(`${s.url}/#/alerts/${high.id}`)
    await c.page.getByRole('button', { name: 'Dismiss' }).click()
    await untilText(c.page.getByRole('article').getByRole('status'), /Alert dismissed/)
    expect((await admin('GET', `/v1/alerts/${high.id}`)).body.status).toBe('dismissed')
    await untilText(c.page.locator('.page-header'), /2 unreviewed alerts/)

    await c.page.getByLabel('Status').selectOption('dismissed')
    await untilText(c.page.locator('.page-header'), /1 dismissed alert\b/)
    expect(c.page.url()).toContain('status=dismissed')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('Create policy: the editor is filled from the alert; previewed, then saved', async () => {
    const alerts = await openAlerts(2)
    const rm = alerts.find((a) => a.agent_key === 'claude-code' && a.rule_key === 'builtin:destructive_command')!
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/alerts/${rm.id}`)
    await c.page.getByRole('link', { name: 'Create policy' }).click()
    await c.page.getByLabel('Tool').waitFor()
    expect(c.page.url()).toContain(`#/policies/new?from_alert=${rm.id}`)
    expect(await c.page.getByLabel('Tool').inputValue()).toBe('Bash')
    expect(await c.page.getByLabel('Agent').inputValue()).toBe('claude-code')
    expect(await c.page.getByLabel(/^Conditions/).inputValue()).toBe('rm -rf /')
    expect(await c.page.getByLabel('Action').inputValue()).toBe('block')
    expect(await c.page.getByLabel('Name').inputValue()).toContain('Destructive command')
    expect(await c.page.getByRole('checkbox', { name: /alice-mbp/ }).isChecked()).toBe(true)
    // Saving waits for the preview of this very draft.
    expect(await c.page.getByRole('button', { name: 'Save policy' }).isDisabled()).toBe(true)
    await c.page.getByRole('button', { name: 'Preview impact' }).click()
    const summary = await untilText(c.page.locator('.sim-summary'), /would have blocked/)
    expect(summary).toMatch(/it would have blocked 1, flagged 0 and sent 0 for approval/)
    expect(await c.page.locator('.simulation').innerText()).toContain('alice-mbp')
    await expectAccessible(c.page, 'the policy editor filled from an alert, with its preview')
    await screenshot(c.page, 'alerts-create-policy')
    await c.page.getByRole('button', { name: 'Save policy' }).click()
    await untilText(c.page.getByRole('status').filter({ hasText: 'Policy created' }), /version 1/)
    const id = /#\/policies\/([0-9a-f-]{36})/.exec(c.page.url())![1]!
    const saved = (await admin('GET', `/v1/policies/${id}`)).body
    expect(saved.rules).toEqual([{ tool: 'Bash', agent: 'claude-code', action: 'block', conditions: ['rm -rf /'] }])
    expect(saved.scope).toEqual({ all: false, machine_ids: [machine.id], tags: [] })
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('Block agent: confirmed over its simulation, it creates the blocking policy', async () => {
    const alerts = await openAlerts(1)
    const cursor = alerts.find((a) => a.agent_key === 'cursor-agent')!
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/alerts/${cursor.id}`)
    await c.page.getByRole('button', { name: 'Block agent' }).click()
    const dialog = c.page.getByRole('dialog', { name: 'Block agent cursor-agent?' })
    await untilText(dialog.locator('.sim-summary'), /it would have blocked 1,/)
    // Focus starts on the safe answer.
    await focusOn(c.page, 'textContent', 'Cancel')
    await expectAccessible(c.page, 'the block-agent confirmation')
    await screenshot(c.page, 'alerts-block-agent')
    await dialog.getByRole('button', { name: 'Block cursor-agent on every machine' }).click()
    await untilText(c.page.getByRole('status').filter({ hasText: 'Policy created' }), /version 1/)
    const id = /#\/policies\/([0-9a-f-]{36})/.exec(c.page.url())![1]!
    const saved = (await admin('GET', `/v1/policies/${id}`)).body
    expect(saved).toMatchObject({
      name: 'Block agent cursor-agent',
      priority: 1_000_000,
      enabled: true,
      rules: [{ tool: '*', agent: 'cursor-agent', action: 'block' }],
      scope: { all: true },
    })
    expect(c.problems()).toEqual([])
    await c.context.close()
  })
})

describe('live, offline, and who may act', () => {
  test('a new alert and another responder’s triage arrive without a reload', async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/alerts`)
    await untilText(c.page.locator('.page-header'), /Live/)
    await untilText(c.page.locator('.page-header'), /unreviewed alert/)
    await ingest(s.org.deploy_token, {
      session_id: 'sess-live',
      agent_id: 'night-agent',
      arguments_json: '{"command":"rm -rf /usr"}',
    })
    await untilText(c.page.locator('.vbody'), /night-agent/)
    const [fresh] = (await openAlerts(1)).filter((a) => a.agent_key === 'night-agent')
    // Someone else resolves it: it leaves this open queue.
    expect((await admin('PATCH', `/v1/alerts/${fresh!.id}`, { status: 'resolved' })).status).toBe(200)
    await eventually(
      () => c.page.locator('.vbody').innerText(),
      (t) => !t.includes('night-agent'),
      10_000,
    )
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('without the live stream the queue still works, and says it is offline', async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.context.route(
      (url) => url.pathname === '/v1/live',
      (route) => route.abort(),
    )
    await c.page.goto(`${s.url}/#/alerts`)
    await untilText(c.page.locator('.page-header'), /Offline: reconnecting/)
    await untilText(c.page.locator('.page-header'), /\d+ unreviewed alerts?/)
    expect(await queueRows(c.page)).not.toEqual([])
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('a read-only credential sees the alert and the way to its session, not the buttons it may not use', async () => {
    const minted = await admin('POST', '/tokens/app', { name: 'wallboard', scopes: ['read'] })
    expect(minted.status).toBe(201)
    const [one] = await openAlerts(1)
    const c = await openConsole(browser, s.url, minted.body.token)
    await c.page.goto(`${s.url}/#/alerts/${one!.id}`)
    const card = c.page.getByRole('article')
    await untilText(card, new RegExp(one!.rule_key))
    await visibleText(card.getByRole('link', { name: 'Investigate' }))
    for (const name of ['Acknowledge', 'Dismiss', 'Resolve', 'Block agent']) {
      expect(await card.getByRole('button', { name }).count()).toBe(0)
    }
    expect(await card.getByRole('link', { name: 'Create policy' }).count()).toBe(0)
    await c.page.goto(`${s.url}/#/overrides`)
    await visibleText(c.page.getByRole('heading', { name: 'Deciding overrides needs an admin' }))
    expect(c.problems()).toEqual([])
    await c.context.close()
  })
})
