/**
 * The Settings page in a real browser (issue 12), tab by tab, against a real server: members
 * invited, given another role and removed; a deploy token shown once that then works for ingest,
 * and revoked; other tokens created, rotated and revoked; a webhook whose test ping reaches a
 * local receiver (signed with the secret shown once) and is redelivered; retention saved; and the
 * audit log listing all of it. A read-only credential gets no write controls, and the API's 403.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createHmac } from 'node:crypto'
import type { Browser, Page } from 'playwright-core'
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
const received: { headers: Headers; body: string }[] = []
const receiver = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  async fetch(req) {
    received.push({ headers: req.headers, body: await req.text() })
    return new Response(null, { status: 204 })
  },
})
const hookUrl = `http://127.0.0.1:${receiver.port}/hook`

beforeAll(async () => {
  ;[s, browser] = await Promise.all([
    // A webhook to this test's own receiver: plain HTTP on loopback, polled often.
    startConsoleServer({ WEBHOOK_ALLOW_INSECURE: 'true', WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOK_POLL_MS: '100' }),
    launchBrowser(),
  ])
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  await browser?.close()
  receiver.stop(true)
  await cleanUp()
  await s?.db.drop()
}, HOOK_TIMEOUT_MS)

const call = (token: string, method: string, path: string, body?: unknown) => s.call(token, method, path, body)

const ingest = (token: string) =>
  call(token, 'POST', '/v1/ingest', {
    events: [
      {
        schema_version: 2,
        event_id: crypto.randomUUID(),
        timestamp: new Date().toISOString(),
        source: 'claude-code',
        platform: 'claude-code',
        session_id: 'console-settings',
        agent_id: 'claude-code',
        action_type: 'tools/call',
        tool_name: 'Read',
        arguments_json: '{"path":"README.md"}',
        decision: 'allow',
        risk_score: 5,
      },
    ],
  })

async function settings(tab: string, key = s.org.admin_key) {
  const c = await openConsole(browser, s.url, key)
  await c.page.goto(`${s.url}/#/settings?tab=${tab}`)
  return c
}

/** The outcome note of the last action (role=status), once it says `text`. */
const outcome = (page: Page, text: string | RegExp) => visibleText(page.getByRole('status').filter({ hasText: text }))

/** Standard Webhooks: HMAC-SHA256 of `id.timestamp.body` with the secret's base64 key. */
function signedBy(secret: string, r: { headers: Headers; body: string }): boolean {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64')
  const mac = createHmac('sha256', key)
    .update(`${r.headers.get('webhook-id')}.${r.headers.get('webhook-timestamp')}.${r.body}`)
    .digest('base64')
  return (r.headers.get('webhook-signature') ?? '').split(' ').includes(`v1,${mac}`)
}

describe('settings', () => {
  test('members: invite with a role, change the role, refuse a second invitation with the reason, withdraw', async () => {
    const c = await settings('members')
    await visibleText(c.page.getByRole('heading', { name: 'Nobody is a member yet' }))
    expect(await c.page.getByRole('link', { name: 'Members' }).getAttribute('aria-current')).toBe('page')
    await expectAccessible(c.page, 'the members tab, empty')

    await c.page.getByLabel('Email address').fill('vera@acme.com')
    await c.page.getByRole('form', { name: 'Invite a member' }).getByLabel('Role').selectOption('analyst')
    await c.page.getByRole('button', { name: 'Invite' }).click()
    await outcome(c.page, 'Invited vera@acme.com as analyst')
    const row = c.page.getByRole('row').filter({ hasText: 'vera@acme.com' })
    expect(await visibleText(row)).toContain('pending')

    await c.page.getByLabel('Role of vera@acme.com').selectOption('admin')
    await c.page.getByRole('button', { name: 'Change role of vera@acme.com' }).click()
    const dialog = c.page.getByRole('dialog', { name: 'Make vera@acme.com admin?' })
    expect(await visibleText(dialog)).toContain('personal tokens are revoked')
    await dialog.getByRole('button', { name: 'Make admin' }).click()
    await outcome(c.page, 'vera@acme.com is now admin.')
    const team = await call(s.org.admin_key, 'GET', '/v1/team')
    expect(team.body.members.map((m: any) => [m.email, m.role])).toEqual([['vera@acme.com', 'admin']])

    await c.page.getByLabel('Email address').fill('vera@acme.com')
    await c.page.getByRole('button', { name: 'Invite' }).click()
    const refused = await visibleText(c.page.getByRole('alert'))
    expect(refused).toContain('409')
    expect(await visibleText(c.page.locator('.settings-problem .hint'))).toMatch(/already a member or has a pending invitation/)
    await expectAccessible(c.page, 'the members tab')
    await screenshot(c.page, 'settings-members')

    await c.page.getByRole('button', { name: 'Withdraw the invitation of vera@acme.com' }).click()
    await c.page.getByRole('dialog').getByRole('button', { name: 'Withdraw invitation' }).click()
    await outcome(c.page, 'The invitation of vera@acme.com is withdrawn.')
    await visibleText(c.page.getByRole('heading', { name: 'Nobody is a member yet' }))
    expect((await call(s.org.admin_key, 'GET', '/v1/team')).body.members).toEqual([])
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('deploy tokens: created and shown once, it ingests; revoked, it is refused', async () => {
    const c = await settings('tokens')
    await c.page.getByRole('table', { name: 'Deploy tokens, newest first' }).waitFor()
    await c.page.getByLabel('Name').first().fill('dev-laptops')
    await c.page.getByRole('button', { name: 'Create deploy token' }).click()
    const field = c.page.getByLabel('Deploy token "dev-laptops"')
    await field.waitFor()
    const raw = await field.inputValue()
    expect(raw).toMatch(/^qt_deploy_[0-9a-f]{32}$/)
    // Focused, so a keyboard user is on it at once (and it is selected, ready to copy).
    expect(await c.page.evaluate('document.activeElement && document.activeElement.value')).toBe(raw)
    expect(await visibleText(c.page.locator('.settings-secret'))).toMatch(/shown only this once/)
    expect(await visibleText(c.page.locator('.settings-secret pre'))).toContain(`--token ${raw}`)
    await expectAccessible(c.page, 'a new deploy token')
    await screenshot(c.page, 'settings-tokens-new-deploy-token')

    const ok = await ingest(raw)
    expect(ok.status).toBe(200)
    expect(ok.body.accepted).toBe(1)

    await c.page.getByRole('button', { name: 'I have saved it' }).click()
    expect(await c.page.content()).not.toContain(raw)
    await c.page.reload()
    const row = c.page.getByRole('row').filter({ hasText: 'dev-laptops' })
    expect(await visibleText(row)).toContain(`${raw.slice(0, 12)}`)
    expect(await c.page.content()).not.toContain(raw)

    await c.page.getByRole('button', { name: 'Revoke deploy token dev-laptops' }).click()
    const dialog = c.page.getByRole('dialog', { name: 'Revoke deploy token "dev-laptops"?' })
    expect(await visibleText(dialog)).toMatch(/Machines it already\s+registered keep reporting/)
    await dialog.getByRole('button', { name: 'Revoke token' }).click()
    await outcome(c.page, 'Deploy token "dev-laptops" is revoked')
    await untilText(row, /revoked/)
    expect((await ingest(raw)).status).toBe(401)
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('other tokens: a service token created with its scopes, rotated (the old value stops), revoked', async () => {
    const c = await settings('tokens')
    const form = c.page.getByRole('form', { name: 'Create a token' })
    await form.getByLabel('Kind').selectOption('service')
    await form.getByLabel('Name').fill('ci')
    await form.getByRole('button', { name: 'Create token' }).click()
    const first = await c.page.getByLabel('service (qt_sk_) "ci"').inputValue()
    expect(first).toMatch(/^qt_sk_/)
    expect((await call(first, 'GET', '/v1/machines')).status).toBe(200)
    await c.page.getByRole('button', { name: 'I have saved it' }).click()

    await c.page.getByRole('button', { name: 'Rotate ci' }).click()
    const dialog = c.page.getByRole('dialog', { name: 'Rotate "ci"?' })
    await dialog.getByLabel('Overlap').selectOption('0')
    await dialog.getByRole('button', { name: 'Rotate token' }).click()
    const second = await c.page.getByLabel('New value of "ci"').inputValue()
    expect(second).toMatch(/^qt_sk_/)
    expect(second).not.toBe(first)
    expect(await visibleText(c.page.locator('.settings-secret'))).toContain('The old value is revoked.')
    expect((await call(first, 'GET', '/v1/machines')).status).toBe(401)
    expect((await call(second, 'GET', '/v1/machines')).status).toBe(200)
    await expectAccessible(c.page, 'the tokens tab')
    await screenshot(c.page, 'settings-tokens')

    await c.page.getByRole('button', { name: 'I have saved it' }).click()
    // The rotated-away value is no longer active; the new one is the row with a Revoke button.
    await c.page.getByRole('button', { name: 'Revoke ci' }).click()
    await c.page.getByRole('dialog', { name: 'Revoke "ci"?' }).getByRole('button', { name: 'Revoke token' }).click()
    await outcome(c.page, '"ci" is revoked')
    expect((await call(second, 'GET', '/v1/machines')).status).toBe(401)
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('webhooks: created with its secret shown once; a test ping is delivered, signed, logged and redelivered; edited, rotated, deleted', async () => {
    const c = await settings('webhooks')
    await visibleText(c.page.getByRole('heading', { name: 'No webhook yet' }))
    await expectAccessible(c.page, 'the webhooks tab, empty')
    await c.page.getByLabel('Endpoint URL (HTTPS)').fill(hookUrl)
    await c.page.getByRole('button', { name: 'Add webhook' }).click()
    const secret = await c.page.getByLabel(`Signing secret of ${hookUrl}`).inputValue()
    expect(secret).toMatch(/^whsec_/)
    await c.page.getByRole('button', { name: 'I have saved it' }).click()

    await c.page.getByRole('button', { name: `Send test to ${hookUrl}` }).click()
    await outcome(c.page, 'Test ping queued')
    const log = c.page.getByRole('table', { name: `Deliveries to ${hookUrl}, newest first` })
    await untilText(log, /webhook\.test\s+succeeded/, 20_000)
    expect(received).toHaveLength(1)
    expect(JSON.parse(received[0]!.body).type).toBe('webhook.test')
    expect(signedBy(secret, received[0]!)).toBe(true)
    expect(await visibleText(log)).toContain('HTTP 204')
    await expectAccessible(c.page, 'a webhook with its delivery log')
    await screenshot(c.page, 'settings-webhooks')

    await log.getByRole('button', { name: /^Redeliver webhook\.test/ }).click()
    await outcome(c.page, 'is being sent again')
    const deadline = Date.now() + 20_000
    while (received.length < 2 && Date.now() < deadline) await Bun.sleep(50)
    expect(received).toHaveLength(2)
    expect(received[1]!.headers.get('webhook-id')).toBe(received[0]!.headers.get('webhook-id'))
    await untilText(log, /webhook\.test\s+succeeded/, 20_000)

    await c.page.getByRole('button', { name: `Edit ${hookUrl}` }).click()
    const edit = c.page.getByRole('form', { name: `Edit ${hookUrl}` })
    await edit.getByLabel('Description (optional)').fill('pager relay')
    await edit.getByLabel(/^audit\.\*/).check()
    await edit.getByRole('button', { name: 'Save webhook' }).click()
    await outcome(c.page, `Saved ${hookUrl}.`)
    await untilText(c.page.getByRole('article', { name: `Webhook ${hookUrl}` }), /pager relay · Events: audit\.\*/)

    await c.page.getByRole('button', { name: `Rotate secret of ${hookUrl}` }).click()
    await c.page.getByRole('dialog').getByRole('button', { name: 'Rotate secret' }).click()
    const rotated = await c.page.getByLabel(`New signing secret of ${hookUrl}`).inputValue()
    expect(rotated).toMatch(/^whsec_/)
    expect(rotated).not.toBe(secret)
    await c.page.getByRole('button', { name: 'I have saved it' }).click()
    await untilText(c.page.getByRole('article'), /the previous secret also signs until/)

    await c.page.getByRole('button', { name: `Delete ${hookUrl}` }).click()
    await c.page.getByRole('dialog').getByRole('button', { name: 'Delete webhook' }).click()
    await outcome(c.page, `Deleted the webhook to ${hookUrl}`)
    await visibleText(c.page.getByRole('heading', { name: 'No webhook yet' }))
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('retention: shortening asks first and is saved; a bad value is refused with the field named', async () => {
    const c = await settings('retention')
    const days = c.page.getByLabel('Keep data for (days, 1–3650)')
    expect(await days.inputValue()).toBe('90')
    await days.fill('30')
    await c.page.getByRole('button', { name: 'Save settings' }).click()
    const dialog = c.page.getByRole('dialog', { name: 'Keep data only 30 days?' })
    expect(await visibleText(dialog)).toMatch(/deleted for good/)
    await dialog.getByRole('button', { name: 'Shorten to 30 days' }).click()
    await outcome(c.page, 'Saved: data is kept 30 days; older data goes at the next purge run.')
    expect((await call(s.org.admin_key, 'GET', '/v1/org')).body.retention_days).toBe(30)

    await days.fill('0')
    await c.page.getByRole('button', { name: 'Save settings' }).click()
    await c.page.getByRole('dialog').getByRole('button', { name: 'Shorten to 0 days' }).click()
    expect(await visibleText(c.page.getByRole('alert'))).toMatch(/422[\s\S]*\/retention_days/)
    expect((await call(s.org.admin_key, 'GET', '/v1/org')).body.retention_days).toBe(30)
    await expectAccessible(c.page, 'the retention tab with a refusal')
    await screenshot(c.page, 'settings-retention')

    await c.page.reload()
    await untilText(c.page.locator('#retention-now'), /Now 30 days/)
    expect(await c.page.getByLabel('Keep data for (days, 1–3650)').inputValue()).toBe('30')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('the audit log lists those changes, filters by action in the address, and pages with the cursor', async () => {
    const c = await settings('audit')
    const table = c.page.getByRole('table', { name: 'Audit log, newest first' })
    const all = await untilText(table, /org\.update/)
    for (const action of [
      'member.invite',
      'member.role',
      'member.remove',
      'deploy_token.create',
      'deploy_token.revoke',
      'service_token.create',
      'service_token.rotate',
      'service_token.revoke',
      'webhook.create',
      'webhook.update',
      'webhook.rotate_secret',
      'webhook.delete',
      'org.update',
    ]) {
      expect(all).toContain(action)
    }
    await expectAccessible(c.page, 'the audit log')
    await screenshot(c.page, 'settings-audit')

    await c.page.getByLabel('Action (member.* for a kind)').fill('member.*')
    await c.page.getByRole('button', { name: 'Apply' }).click()
    await c.page.waitForURL(/tab=audit&action=member\.\*/)
    const members = await untilText(table, /^(?![\s\S]*webhook\.)[\s\S]*member\.invite/)
    expect(members.match(/member\.\w+/g)?.sort()).toEqual(['member.invite', 'member.remove', 'member.role'])

    // More than a page (100): the rest comes with the cursor.
    for (let i = 0; i < 101; i++) {
      expect((await call(s.org.admin_key, 'PATCH', '/v1/org', { retention_days: 31 + (i % 2) })).status).toBe(200)
    }
    await c.page.goto(`${s.url}/#/settings?tab=audit&action=org.update`)
    await untilText(table, /org\.update/)
    expect(await table.locator('tbody tr').count()).toBe(100)
    await c.page.getByRole('button', { name: 'Load more entries' }).click()
    await untilText(c.page.locator('.settings-audit caption'), /Audit log/)
    const deadline = Date.now() + 10_000
    while ((await table.locator('tbody tr').count()) < 102 && Date.now() < deadline) await Bun.sleep(50)
    expect(await table.locator('tbody tr').count()).toBe(102)
    expect(await c.page.getByRole('button', { name: 'Load more entries' }).count()).toBe(0)
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('a read-only credential sees no write controls, and the API refuses the audit log with 403, explained', async () => {
    const created = await call(s.org.admin_key, 'POST', '/v1/tokens', { kind: 'service', name: 'reader', scopes: ['read'] })
    expect(created.status).toBe(201)
    const c = await settings('members', created.body.token as string)
    await visibleText(c.page.getByText("Only owners (and the organization's admin key) invite"))
    expect(await c.page.getByRole('button', { name: 'Invite' }).count()).toBe(0)
    await c.page.goto(`${s.url}/#/settings?tab=tokens`)
    await visibleText(c.page.getByText('Deploy tokens, which daemons install with, are made by admins and owners.'))
    expect(await c.page.getByRole('button', { name: 'Create deploy token' }).count()).toBe(0)
    await c.page.goto(`${s.url}/#/settings?tab=audit`)
    expect(await visibleText(c.page.getByRole('alert'))).toContain('403')
    expect(await visibleText(c.page.locator('.settings-problem .hint'))).toMatch(/The server refused/)
    await expectAccessible(c.page, 'the audit log refused')
    await screenshot(c.page, 'settings-audit-forbidden')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })
})
