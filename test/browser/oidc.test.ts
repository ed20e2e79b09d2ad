/**
 * Signing in to the console with the organization's identity provider (issue 12): Authorization
 * Code with PKCE against a real OIDC provider stand-in (test/helpers/idp.ts: keys generated per
 * run, a code only for the matching S256 verifier). The invited person lands in the console with
 * their role; the address bar keeps no code; a return that this tab did not start is refused.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Browser } from 'playwright-core'
import { HOOK_TIMEOUT_MS } from '../helpers/db.ts'
import { startIdp, testKey, type TestIdp } from '../helpers/idp.ts'
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

const AUDIENCE = 'quint-api'
const CLIENT = 'quint-console'
let idp: TestIdp
let s: ConsoleServer
let browser: Browser

beforeAll(async () => {
  idp = startIdp([testKey('ES256')])
  ;[s, browser] = await Promise.all([
    startConsoleServer({ OIDC_ISSUER: idp.issuer, OIDC_AUDIENCE: AUDIENCE, CONSOLE_OIDC_CLIENT_ID: CLIENT }),
    launchBrowser(),
  ])
  const invited = await fetch(`${s.url}/v1/team`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.org.admin_key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'vera@acme.test', role: 'analyst' }),
  })
  expect(invited.status).toBe(201)
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  await browser?.close()
  idp?.stop()
  await cleanUp()
  await s?.db.drop()
}, HOOK_TIMEOUT_MS)

describe('signing in with the identity provider', () => {
  test('Authorization Code + PKCE: the invited analyst is signed in, and the code leaves the address bar', async () => {
    idp.signIn({ clientId: CLIENT, audience: AUDIENCE, claims: { sub: 'vera', email: 'vera@acme.test', email_verified: true } })
    const c = await openConsole(browser, s.url)
    await expectAccessible(c.page, 'the sign-in page with a provider')
    await screenshot(c.page, 'signin-oidc')
    await c.page.getByRole('button', { name: 'Sign in with your identity provider' }).click()
    const who = await untilText(c.page.getByRole('navigation', { name: 'Console' }), /vera@acme\.test \(analyst\)/)
    expect(who).toContain('vera@acme.test (analyst)')
    expect(new URL(c.page.url()).search).toBe('')
    // The exchange carried the verifier whose S256 hash the provider was given (it refuses otherwise).
    const [exchange] = idp.tokenRequests().filter((r) => r.get('grant_type') === 'authorization_code')
    expect(exchange?.get('client_id')).toBe(CLIENT)
    expect(exchange?.get('redirect_uri')).toBe(`${s.url}/`)
    expect(exchange?.get('code_verifier')?.length).toBeGreaterThanOrEqual(43)
    // The API took the provider's token as the person's: their membership was claimed.
    const team = await fetch(`${s.url}/v1/team`, { headers: { authorization: `Bearer ${s.org.admin_key}` } })
    const members = ((await team.json()) as { members: { email: string; status: string }[] }).members
    expect(members.find((m) => m.email === 'vera@acme.test')?.status).toBe('active')
    expect(c.problems()).toEqual([])
    await c.context.close()
  })

  test('a return this tab did not start (a forged or replayed code) is refused with the reason', async () => {
    const c = await openConsole(browser, s.url)
    await c.page.goto(`${s.url}/?code=stolen&state=forged`)
    expect(await visibleText(c.page.getByRole('alert'))).toMatch(/not started here/)
    expect(new URL(c.page.url()).search).toBe('')
    expect(idp.tokenRequests().some((r) => r.get('code') === 'stolen')).toBe(false)
    await c.context.close()
  })
})
