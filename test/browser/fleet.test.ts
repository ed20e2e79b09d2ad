/**
 * The Fleet page in a real browser (issue 12): machines registered for real with the org's
 * deploy token, as the daemon does (register, heartbeat, process snapshot, agent graphs, events),
 * then listed, filtered, opened, disabled (the daemon is then refused: checked through the API)
 * and enabled again.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Browser } from 'playwright-core'
import { HOOK_TIMEOUT_MS } from '../helpers/db.ts'
import { cleanUp } from '../helpers/process.ts'
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
  ;[s, browser] = await Promise.all([startConsoleServer({ DAEMON_LATEST_VERSION: '0.11.0' }), launchBrowser()])
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  await browser?.close()
  await cleanUp()
  await s?.db.drop()
}, HOOK_TIMEOUT_MS)

const call = (token: string, method: string, path: string, body?: unknown) => s.call(token, method, path, body)

/** As the daemon: register with the deploy token, then heartbeat. Returns the cloud id. */
async function daemon(over: Record<string, unknown>): Promise<string> {
  const reg = await call(s.org.deploy_token, 'POST', '/v1/machines/register', over)
  expect(reg.status).toBe(201)
  const id = reg.body.machine_id as string
  expect((await heartbeat(id)).status).toBe(200)
  return id
}

const heartbeat = (id: string) =>
  call(s.org.deploy_token, 'POST', `/v1/machines/${id}/heartbeat`, { agent_version: undefined, uptime: 7200, active_agents: 1 })

let laptop = ''
let buildBox = ''

describe('the fleet', () => {
  test('with no machine, it says how to install the daemon, with this console as the API URL', async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/fleet`)
    await visibleText(c.page.getByRole('heading', { name: 'No machine has registered yet' }))
    const command = await visibleText(c.page.locator('pre'))
    expect(command).toContain(`export QUINT_API_URL=${s.url}`)
    expect(command).toContain('curl -fsSL https://install.quintai.dev | sh -s -- --token')
    expect(await c.page.getByRole('link', { name: 'Settings → Tokens' }).getAttribute('href')).toBe('#/settings?tab=tokens')
    await expectAccessible(c.page, 'the empty fleet')
    await screenshot(c.page, 'fleet-empty')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('registered machines are listed with OS, daemon version (behind the latest flagged), reporting and status; filters are in the address', async () => {
    laptop = await daemon({
      machine_id: 'a'.repeat(32),
      hostname: 'dev-laptop-01',
      os: 'darwin',
      arch: 'arm64',
      agent_version: '0.11.0',
    })
    buildBox = await daemon({
      machine_id: 'b'.repeat(32),
      hostname: 'build-box',
      os: 'linux',
      arch: 'amd64',
      agent_version: '0.9.2',
    })
    // What the daemon reports about the laptop: its agent processes, an agent graph, an event.
    const procs = [
      {
        platform: 'claude-code',
        pid: 4242,
        binary_path: '/usr/local/bin/claude',
        state: 'running',
        cpu_percent: 3.5,
        memory_mb: 310,
      },
      { platform: 'cursor', pid: 777, binary_path: '/Applications/Cursor.app', state: 'idle', cpu_percent: 0.1, memory_mb: 820 },
    ]
    expect((await call(s.org.deploy_token, 'POST', `/v1/machines/${laptop}/agents`, { agents: procs })).status).toBe(200)
    const graph = {
      id: 'g-1',
      root_agent_id: 'ra-1',
      root_agent_name: 'claude-root',
      status: 'running',
      total_nodes: 3,
      nodes: { nodes: [{ id: 'n1' }] },
    }
    expect((await call(s.org.deploy_token, 'POST', `/v1/machines/${laptop}/graphs`, { graphs: [graph] })).status).toBe(201)
    const event = {
      event_id: `tool-${Date.now()}`,
      action: 'tool:Bash',
      agent: 'claude',
      timestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      risk_score: 40,
      blocked: false,
      metadata: { args: '{"command":"ls"}', process_name: 'claude', platform: 'claude-code' },
    }
    expect((await call(s.org.deploy_token, 'POST', `/v1/machines/${laptop}/events`, { events: [event] })).status).toBe(200)

    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/fleet`)
    const table = c.page.getByRole('table', { name: 'Machines' })
    await untilText(table, /build-box/)
    const laptopRow = await visibleText(table.getByRole('row').filter({ hasText: 'dev-laptop-01' }))
    expect(laptopRow).toMatch(/darwin \/ arm64/)
    expect(laptopRow).toContain('0.11.0')
    expect(laptopRow).not.toContain('behind')
    expect(laptopRow).toMatch(/online/)
    expect(laptopRow).toMatch(/active/)
    const boxRow = await visibleText(table.getByRole('row').filter({ hasText: 'build-box' }))
    expect(boxRow).toMatch(/linux \/ amd64/)
    expect(boxRow).toMatch(/0\.9\.2\s*behind 0\.11\.0/)
    expect(await visibleText(c.page.locator('.fleet-summary'))).toMatch(
      /2 machines · 2 online · 1 behind the latest daemon \(0\.11\.0\)/,
    )
    await expectAccessible(c.page, 'the fleet list')
    await screenshot(c.page, 'fleet-list')

    await c.page.getByLabel('Hostname contains').fill('laptop')
    await c.page.getByRole('button', { name: 'Apply' }).click()
    await c.page.waitForURL(/#\/fleet\?hostname=laptop/)
    await untilText(table, /^(?![\s\S]*build-box)[\s\S]*dev-laptop-01/)
    await c.page.getByLabel('Status').selectOption('disabled')
    await c.page.waitForURL(/status=disabled/)
    await visibleText(c.page.getByRole('heading', { name: 'No machine matches these filters' }))
    await c.page.getByRole('link', { name: 'Clear the filters' }).click()
    await untilText(table, /build-box/)
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test("a machine's page shows its facts, activity, agents, process snapshot and graphs, and links to its events", async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/fleet`)
    await c.page.getByRole('link', { name: 'dev-laptop-01' }).click()
    await visibleText(c.page.getByRole('heading', { name: 'dev-laptop-01', level: 1 }))
    expect(c.page.url()).toContain(`#/fleet/${laptop}`)
    const facts = await visibleText(c.page.locator('dl.facts').first())
    expect(facts).toMatch(/darwin \/ arm64/)
    expect(facts).toContain('0.11.0')
    expect(facts).toContain('a'.repeat(32))
    expect(facts).toMatch(/deploy token/)
    expect(await visibleText(c.page.getByRole('table', { name: 'Agent processes in the latest snapshot' }))).toContain(
      '/usr/local/bin/claude',
    )
    expect(await visibleText(c.page.locator('table', { hasText: 'Root agent' }))).toContain('claude-root')
    await untilText(c.page.locator('table', { hasText: 'Decision' }), /Bash|tool:Bash/)
    expect(await visibleText(c.page.getByRole('heading', { name: /^Agents/ }))).toBeTruthy()
    expect(await c.page.getByRole('link', { name: 'All events of this machine →' }).getAttribute('href')).toBe(
      `#/events?machine_id=${laptop}`,
    )
    expect(await c.page.getByRole('link', { name: 'Events of this machine', exact: true }).getAttribute('href')).toBe(
      `#/events?machine_id=${laptop}`,
    )
    await c.page.getByLabel('Tags (comma-separated)').fill('engineering, laptops')
    await c.page.getByRole('button', { name: 'Save tags' }).click()
    await visibleText(c.page.getByRole('status').filter({ hasText: 'Tags saved: engineering, laptops.' }))
    expect((await call(s.org.admin_key, 'GET', `/v1/machines/${laptop}`)).body.tags).toEqual(['engineering', 'laptops'])
    await untilText(c.page.getByRole('list', { name: 'Tags' }), /engineering\s+laptops/)
    await expectAccessible(c.page, "a machine's page")
    await screenshot(c.page, 'fleet-machine')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('Disable asks first and then the daemon is refused (403 machine_disabled); Enable lets it back', async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/fleet/${buildBox}`)
    await visibleText(c.page.getByRole('heading', { name: 'build-box', level: 1 }))

    // Cancel changes nothing.
    await c.page.getByRole('button', { name: 'Disable machine' }).click()
    const dialog = c.page.getByRole('dialog', { name: 'Disable build-box?' })
    expect(await visibleText(dialog)).toMatch(/refused \(403 machine_disabled\) on\s+every route/)
    await expectAccessible(c.page, 'the disable confirmation')
    await screenshot(c.page, 'fleet-disable-confirm')
    await dialog.getByRole('button', { name: 'Cancel' }).click()
    expect((await heartbeat(buildBox)).status).toBe(200)

    await c.page.getByRole('button', { name: 'Disable machine' }).click()
    await dialog.getByRole('button', { name: 'Disable machine' }).click()
    expect(await visibleText(c.page.getByRole('status').filter({ hasText: 'is disabled' }))).toContain(
      'build-box is disabled: its daemon is refused from its next call.',
    )
    await untilText(c.page.locator('.fleet-status'), /This machine is disabled: its daemon is refused on every call/)
    const refused = await heartbeat(buildBox)
    expect(refused.status).toBe(403)
    expect(refused.body.code).toBe('machine_disabled')
    expect((await call(s.org.admin_key, 'GET', `/v1/machines/${buildBox}`)).body.status).toBe('disabled')
    await expectAccessible(c.page, 'a disabled machine')
    await screenshot(c.page, 'fleet-machine-disabled')

    await c.page.getByRole('button', { name: 'Enable machine' }).click()
    await c.page.getByRole('dialog', { name: 'Enable build-box?' }).getByRole('button', { name: 'Enable machine' }).click()
    await visibleText(c.page.getByRole('status').filter({ hasText: 'is enabled' }))
    expect((await heartbeat(buildBox)).status).toBe(200)
    expect((await call(s.org.admin_key, 'GET', `/v1/machines/${buildBox}`)).body.status).toBe('active')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('a policy change shows machines "policy behind" until their daemon fetches it; the live stream moves the list', async () => {
    const policy = await call(s.org.admin_key, 'POST', '/v1/policies', {
      name: 'no curl | sh',
      rules: [{ tool: 'Bash', action: 'block', conditions: ['curl * | sh'] }],
      scope: { all: true },
    })
    expect(policy.status).toBe(201)
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await c.page.goto(`${s.url}/#/fleet`)
    const row = c.page.getByRole('table', { name: 'Machines' }).getByRole('row').filter({ hasText: 'dev-laptop-01' })
    await untilText(row, /policy behind/)
    await screenshot(c.page, 'fleet-policy-behind')
    await untilText(c.page.locator('.live'), /Live/)
    // The daemon's next heartbeat is handed the new hash: the page hears it, no reload.
    expect((await heartbeat(laptop)).status).toBe(200)
    await untilText(row, /policy current/)
    await c.page.getByRole('link', { name: 'dev-laptop-01' }).click()
    expect(await visibleText(c.page.locator('.card', { hasText: 'Policy sync' }))).toMatch(/policy current[\s\S]*via heartbeat/)
    expect(c.problems()).toEqual([])
    await c.context.close()
  })
})
