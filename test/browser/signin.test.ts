/**
 * The console's front door in a real browser (issue 12): served at `/` with its CSP, signing in
 * with a pasted API key, refusing a bad one with the API's reason, and signing out.
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
  visibleText,
  startConsoleServer,
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

describe('signing in to the console', () => {
  test('the sign-in page is accessible, and a bad key is refused with the reason', async () => {
    const c = await openConsole(browser, s.url)
    await expectAccessible(c.page, 'the sign-in page')
    await screenshot(c.page, 'signin')
    await c.page.getByLabel(/API key/).fill(`qk_${'0'.repeat(64)}`)
    await c.page.getByRole('button', { name: 'Sign in', exact: true }).click()
    expect(await visibleText(c.page.getByRole('alert'))).toMatch(/credential|token|key/i)
    expect(await c.page.evaluate('sessionStorage.length')).toBe(0)
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('an admin key signs in to the overview, which says what to do first; signing out forgets the key', async () => {
    const c = await openConsole(browser, s.url, s.org.admin_key)
    await visibleText(c.page.getByRole('heading', { name: 'Nothing has arrived yet' }))
    expect(await visibleText(c.page.getByRole('navigation', { name: 'Console' }))).toContain('Admin API key')
    await expectAccessible(c.page, 'the empty overview')
    await screenshot(c.page, 'overview-empty')
    await c.page.getByRole('button', { name: 'Sign out' }).click()
    await c.page.getByLabel(/API key/).waitFor()
    expect(await c.page.evaluate('sessionStorage.length')).toBe(0)
    expect(c.problems()).toEqual([])
    await c.context.close()
  })
})
