/**
 * The Policies page in a real browser (issue 12): a policy written in the editor, refused at the
 * right field (a hint before asking, and the API's own 422), previewed over events ingested for
 * real, saved, edited and deleted; after the save a registered daemon holding the fleet stream
 * hears the new policy hash, and the page shows the machine holding it. Threat signatures: a
 * proposed one (distilled from a real credential-read alert) approved, one created after its
 * preview, a refused value shown at its field, a retro-hunt run.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Browser, Page } from 'playwright-core'
import { HOOK_TIMEOUT_MS } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'
import { cleanUp } from '../helpers/process.ts'
import { SseReader } from '../helpers/sse.ts'
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
const streams: AbortController[] = []

const call = (token: string, method: string, path: string, body?: unknown) => s.call(token, method, path, body)
const admin = (method: string, route: string, body?: unknown) => call(s.org.admin_key, method, route, body)

async function ingest(over: Record<string, unknown>) {
  expect((await call(s.org.deploy_token, 'POST', '/v1/ingest', { events: [v2Event(over)] })).status).toBe(200)
}

/** Fills the first rule of the editor. */
async function rule(page: Page, tool: string, conditions = '') {
  await page.getByLabel('Tool').fill(tool)
  await page.getByLabel(/^Conditions/).fill(conditions)
}

/** Focus moves after the render that shows its target: wait for it to land there. */
const focusOn = (page: Page, what: 'id' | 'className' | 'textContent', want: string) =>
  eventually(
    () => page.evaluate(`document.activeElement?.${what} ?? ''`) as Promise<string>,
    (v) => v === want,
    3_000,
  )

beforeAll(async () => {
  ;[s, browser] = await Promise.all([startConsoleServer(), launchBrowser()])
  // What the previews replay: two terraform destroys and a harmless plan, stored.
  await ingest({ session_id: 'tf-1', agent_id: 'claude-code', arguments_json: '{"command":"terraform destroy -auto-approve"}' })
  await ingest({ session_id: 'tf-2', agent_id: 'claude-code', arguments_json: '{"command":"terraform destroy"}' })
  await ingest({ session_id: 'tf-3', agent_id: 'claude-code', arguments_json: '{"command":"terraform plan"}' })
  await eventually(
    async () => (await admin('GET', '/v1/events?limit=10')).body.events.length,
    (n) => n >= 3,
  )
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  for (const a of streams) a.abort()
  await browser?.close()
  await cleanUp()
  await s?.db.drop()
}, HOOK_TIMEOUT_MS)

describe('policies', () => {
  test('with none, the list says what a policy is and how to start', async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/policies`)
    await visibleText(c.page.getByRole('heading', { name: 'No policies yet' }))
    await expectAccessible(c.page, 'the empty policy list')
    await screenshot(c.page, 'policies-empty')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('refused drafts are explained at their fields: a hint before asking, then the API’s 422', async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    const simulated: string[] = []
    c.page.on('request', (r) => r.url().endsWith('/v1/policies/simulate') && simulated.push(r.url()))
    await c.page.goto(`${s.url}/#/policies/new`)
    await rule(c.page, 'Ba*sh')
    await c.page.getByRole('button', { name: 'Preview impact' }).click()
    // The first field in error takes the focus: the name, then the tool's own explanation.
    await untilText(c.page.locator('#policy-name-error'), /required/)
    await focusOn(c.page, 'id', 'policy-name')
    expect(await visibleText(c.page.locator('#rule-0-tool-error'))).toContain('a * only at the start or end')
    expect(await c.page.getByLabel('Tool').getAttribute('aria-invalid')).toBe('true')
    expect(simulated).toEqual([])

    // A zero-width space: invisible here, refused by the API, and said at the tool.
    await c.page.getByLabel('Name').fill('No terraform destroy')
    await rule(c.page, 'Bash\u200b')
    await c.page.getByRole('button', { name: 'Preview impact' }).click()
    await untilText(c.page.locator('#rule-0-tool-error'), /./)
    expect(simulated).toHaveLength(1)
    expect(await c.page.getByLabel('Tool').getAttribute('aria-invalid')).toBe('true')
    await focusOn(c.page, 'id', 'rule-0-tool')
    await expectAccessible(c.page, 'the policy editor with errors')
    await screenshot(c.page, 'policies-errors')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('previewed, saved, delivered: the daemon on the fleet stream hears the new hash; the page counts who holds it, live', async () => {
    const register = async (hostname: string, fingerprint: string) => {
      const reg = await call(s.org.deploy_token, 'POST', '/v1/machines/register', { machine_id: fingerprint, hostname })
      expect(reg.status).toBe(201)
      return { id: reg.body.machine_id as string, token: reg.body.service_token as string }
    }
    const heartbeat = (m: { id: string; token: string }) => call(m.token, 'POST', `/v1/machines/${m.id}/heartbeat`, { uptime: 1 })
    // One daemon holds the fleet stream; the other only polls, and has not since the save.
    const streaming = await register('dev-box', 'd'.repeat(32))
    const polling = await register('build-box', 'e'.repeat(32))
    expect((await heartbeat(polling)).status).toBe(200)
    const abort = new AbortController()
    streams.push(abort)
    const res = await fetch(`${s.url}/v1/machines/${streaming.id}/stream`, {
      headers: { authorization: `Bearer ${streaming.token}`, accept: 'text/event-stream' },
      signal: abort.signal,
    })
    expect(res.status).toBe(200)
    const stream = new SseReader(res)
    const first = await stream.next((e) => e.event === 'policy')

    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/policies`)
    await c.page.getByRole('link', { name: 'New policy' }).click()
    await c.page.getByLabel('Name').fill('No terraform destroy')
    await rule(c.page, 'Bash', 'terraform destroy')
    await c.page.getByRole('button', { name: 'Preview impact' }).click()
    await untilText(c.page.locator('.sim-summary'), /it would have blocked 2, flagged 0 and sent 0 for approval/)
    const byTool = await c.page.locator('.simulation table').filter({ hasText: 'By tool' }).innerText()
    expect(byTool).toMatch(/Bash\s+2/)
    expect(await c.page.locator('.samples tbody tr').count()).toBe(2)
    // A change to the draft makes the preview stale: saving waits for a new one.
    await c.page.getByLabel('Priority').fill('10')
    await visibleText(c.page.getByText('The draft changed since this preview'))
    expect(await c.page.getByRole('button', { name: 'Save policy' }).isDisabled()).toBe(true)
    await c.page.getByRole('button', { name: 'Preview impact' }).click()
    await c.page.getByRole('button', { name: 'Save policy' }).click()
    await untilText(c.page.getByRole('status').filter({ hasText: 'Policy created' }), /version 1/)
    await focusOn(c.page, 'className', 'notice')
    const id = /#\/policies\/([0-9a-f-]{36})\?saved=created/.exec(c.page.url())![1]!
    expect((await admin('GET', `/v1/policies/${id}`)).body).toMatchObject({
      name: 'No terraform destroy',
      priority: 10,
      rules: [{ tool: 'Bash', agent: '*', action: 'block', conditions: ['terraform destroy'] }],
      scope: { all: true },
    })

    // The daemon holding the stream is told at once; a heartbeat answers the same hash.
    const pushed = await stream.next((e) => e.event === 'policy' && e.data.policy_hash !== first.data.policy_hash)
    expect(pushed.data.changes).toContainEqual(expect.objectContaining({ type: 'policy', id }))
    const delivery = c.page.locator('.delivery')
    await untilText(delivery.locator('.delivery-count'), /^1 of 2 machines holds it$/, 20_000)
    expect(await delivery.locator('table').innerText()).toContain('build-box')
    await untilText(delivery, /Live/)
    await expectAccessible(c.page, 'a saved policy and its delivery')
    await screenshot(c.page, 'policies-saved')
    // The polling daemon's next heartbeat hands it the new hash: the page hears the delivery live.
    expect((await heartbeat(polling)).body.policy_hash).toBe(pushed.data.policy_hash)
    await untilText(delivery.locator('.delivery-count'), /^2 of 2 machines hold it$/, 4_000)
    expect(await delivery.innerText()).toContain('Every machine in scope holds its current policy document.')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('edited (a new version after a new preview) and deleted after confirming', async () => {
    const list = (await admin('GET', '/v1/policies')).body.policies as { id: string; name: string }[]
    const p = list.find((x) => x.name === 'No terraform destroy')!
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/policies`)
    await c.page.getByRole('link', { name: 'No terraform destroy' }).click()
    await c.page.getByRole('link', { name: 'Edit' }).click()
    await c.page.getByLabel('Action').selectOption('flag')
    await c.page.getByRole('button', { name: 'Preview impact' }).click()
    await untilText(c.page.locator('.sim-summary'), /blocked 0, flagged 2/)
    await c.page.getByRole('button', { name: 'Save changes' }).click()
    await untilText(c.page.getByRole('status').filter({ hasText: 'Policy updated' }), /version 2/)
    expect((await admin('GET', `/v1/policies/${p.id}`)).body.rules[0].action).toBe('flag')

    await c.page.getByRole('button', { name: 'Delete', exact: true }).click()
    const dialog = c.page.getByRole('dialog', { name: 'Delete this policy?' })
    await dialog.waitFor()
    await focusOn(c.page, 'textContent', 'Cancel')
    await dialog.getByRole('button', { name: 'Cancel' }).click()
    expect((await admin('GET', `/v1/policies/${p.id}`)).status).toBe(200)
    await c.page.getByRole('button', { name: 'Delete', exact: true }).click()
    await dialog.getByRole('button', { name: 'Delete policy' }).click()
    await visibleText(c.page.getByRole('heading', { name: 'No policies yet' }))
    expect((await admin('GET', `/v1/policies/${p.id}`)).status).toBe(404)
    expect(c.problems()).toEqual([])
    await c.context.close()
  })
})

describe('threat signatures', () => {
  test('a proposed signature, distilled from a credential read, is approved in the list', async () => {
    await ingest({ session_id: 'cred-1', tool_name: 'Read', arguments_json: '{"file_path":"/home/bob/.aws/credentials"}' })
    const proposed = await eventually(
      async () => (await admin('GET', '/v1/threat-signatures?status=proposed')).body.threat_signatures as Record<string, any>[],
      (l) => l.length === 1,
    )
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/policies`)
    await c.page.getByRole('link', { name: 'Threat signatures' }).click()
    await c.page.getByLabel('Status').selectOption('proposed')
    expect(c.page.url()).toContain('#/policies/signatures?status=proposed')
    const row = c.page.locator('tbody tr').filter({ hasText: proposed[0]!.value })
    await row.waitFor()
    expect(await row.innerText()).toMatch(/file path[\s\S]*proposed[\s\S]*distilled/)
    await expectAccessible(c.page, 'the proposed signatures')
    await screenshot(c.page, 'signatures-proposed')
    await row.getByRole('button', { name: `Approve ${proposed[0]!.name}` }).click()
    await visibleText(c.page.getByRole('heading', { name: 'No proposed signatures' }))
    expect((await admin('GET', `/v1/threat-signatures/${proposed[0]!.id}`)).body).toMatchObject({
      status: 'active',
      enforced: true,
    })
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('created after its preview; a value the daemon could not match is refused at its field; a retro-hunt runs', async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/policies/signatures`)
    await c.page.getByRole('link', { name: 'New signature' }).click()
    await c.page.getByLabel('Name').fill('Terraform destroy')
    await c.page.getByLabel('Kind').selectOption('command')
    await c.page.getByLabel('Value').fill('terraform *destroy')
    await c.page.getByRole('button', { name: 'Preview impact' }).click()
    await untilText(c.page.locator('#sig-value-error'), /./)
    expect(await c.page.getByLabel('Value').getAttribute('aria-invalid')).toBe('true')

    await c.page.getByLabel('Value').fill('terraform destroy')
    await c.page.getByRole('button', { name: 'Preview impact' }).click()
    await untilText(c.page.locator('.sim-summary'), /it would have blocked 2,/)
    await expectAccessible(c.page, 'the signature editor with its preview')
    await screenshot(c.page, 'signatures-new')
    await c.page.getByRole('button', { name: 'Create signature' }).click()
    await untilText(c.page.locator('p.notice'), /Signature created\. It is in force/)
    const id = /#\/policies\/signatures\/([0-9a-f-]{36})/.exec(c.page.url())![1]!
    expect((await admin('GET', `/v1/threat-signatures/${id}`)).body).toMatchObject({
      kind: 'command',
      value: 'terraform destroy',
      action: 'block',
      status: 'active',
    })

    // Changed in place: a new severity, previewed again, saved.
    await c.page.getByLabel('Severity').selectOption('critical')
    await c.page.getByRole('button', { name: 'Preview impact' }).click()
    // In force already: its matches are decided first by the signature policy that holds it.
    expect(await untilText(c.page.locator('.simulation'), /it would have blocked 0,/)).toMatch(/2 more match its rules/)
    await c.page.getByRole('button', { name: 'Save changes' }).click()
    await untilText(c.page.locator('p.notice'), /Signature updated\./)
    expect((await admin('GET', `/v1/threat-signatures/${id}`)).body.severity).toBe('critical')
    await expectAccessible(c.page, 'a signature, with its editor')
    await screenshot(c.page, 'signatures-detail')

    await c.page.getByRole('button', { name: 'Raise alerts over history' }).click()
    await untilText(c.page.locator('p.notice'), /Retro-hunt over 7 days: \d+ actions read, 2 matched, 2 new alerts raised\./)
    await c.page.getByRole('button', { name: 'Withdraw' }).click()
    await untilText(c.page.locator('p.notice'), /Status set to expired/)
    expect((await admin('GET', `/v1/threat-signatures/${id}`)).body.status).toBe('expired')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })
})
