/**
 * @module console/ui/auth
 * Signing in to the console (issue 12), two ways:
 *
 * - **The organization's identity provider**: OpenID Connect Authorization Code with PKCE (RFC
 *   7636, S256). The console is a public client: no secret; the code is exchanged in the browser
 *   with the verifier only this tab holds, and the API checks the provider's access token like any
 *   person's token (docs/people.md). A refresh token, when the provider gives one, renews it.
 * - **An API key pasted** (local mode, or break-glass): sent as is, like any client would.
 *
 * Credentials live in `sessionStorage`: they go when the tab closes, and no other site or tab reads
 * them. Nothing is ever put in a URL.
 */
import type { Credential, Problem } from './api/client.ts'

export interface OidcSettings {
  issuer: string
  client_id: string
  scopes: string
}

export interface ConsoleSettings {
  oidc: OidcSettings | null
  version: string
}

type Stored =
  | { kind: 'key'; token: string }
  | {
      kind: 'oidc'
      access_token: string
      refresh_token: string | null
      /** When it expires, and when to renew it: a minute before, or half way for short-lived tokens. */
      expires_at: number
      renew_at: number
      token_endpoint: string
      client_id: string
    }

const KEY = 'quint.console.credential'
const PENDING = 'quint.console.pkce'
/** The org a person who belongs to several works in (sent as `X-Quint-Org`: docs/people.md). */
const ORG = 'quint.console.org'
/** Renew this long before the provider's token expires (at most half its lifetime). */
const RENEW_MS = 60_000

export function settingsOf(doc: Document): ConsoleSettings {
  const raw = doc.querySelector('meta[name="quint-console"]')?.getAttribute('content')
  return raw ? (JSON.parse(raw) as ConsoleSettings) : { oidc: null, version: '' }
}

const read = (): Stored | null => {
  const raw = sessionStorage.getItem(KEY)
  return raw ? (JSON.parse(raw) as Stored) : null
}
const write = (s: Stored | null) => (s ? sessionStorage.setItem(KEY, JSON.stringify(s)) : sessionStorage.removeItem(KEY))

export const hasCredential = (): boolean => read() !== null

export function signInWithKey(token: string): void {
  write({ kind: 'key', token: token.trim() })
}

export function signOut(): void {
  write(null)
  sessionStorage.removeItem(ORG)
}

export const chosenOrg = (): string | null => sessionStorage.getItem(ORG)

export function chooseOrg(orgId: string): void {
  sessionStorage.setItem(ORG, orgId)
}

/** The credential the API client uses; `onRejected` hears a 401 (expired, revoked, removed). */
export function credential(onRejected: (problem: Problem) => void): Credential {
  let renewing: Promise<void> | null = null
  return {
    async authorization() {
      let s = read()
      if (s?.kind === 'oidc' && s.refresh_token && Date.now() > s.renew_at) {
        renewing ??= renew(s).finally(() => (renewing = null))
        await renewing
        s = read()
      }
      if (!s) return null
      return `Bearer ${s.kind === 'key' ? s.token : s.access_token}`
    },
    org: chosenOrg,
    rejected: onRejected,
  }
}

async function renew(s: Extract<Stored, { kind: 'oidc' }>): Promise<void> {
  const res = await fetch(s.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: s.refresh_token!, client_id: s.client_id }),
  }).catch(() => null)
  // A refused renewal leaves the old token: the API's 401 then asks the person to sign in again.
  if (!res?.ok) return
  const answer = (await res.json()) as TokenAnswer
  // Signed out (or in again) while the renewal was out: its answer must not sign this tab back in.
  const current = read()
  if (current?.kind !== 'oidc' || current.access_token !== s.access_token) return
  store(answer, s.token_endpoint, s.client_id, s.refresh_token)
}

interface Discovery {
  authorization_endpoint: string
  token_endpoint: string
}

interface TokenAnswer {
  access_token: string
  refresh_token?: string
  expires_in?: number
}

async function discover(issuer: string): Promise<Discovery> {
  const res = await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`)
  if (!res.ok) throw new Error(`The identity provider's discovery document answered ${res.status}.`)
  const d = (await res.json()) as Discovery
  if (!d.authorization_endpoint || !d.token_endpoint)
    throw new Error("The identity provider's discovery document names no endpoints.")
  return d
}

const redirectUri = () => `${location.origin}/`

function random(bytes: number): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)))
}

function base64url(bytes: Uint8Array): string {
  let s = ''
  for (const b of bytes) s += String.fromCharCode(b)
  return btoa(s).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '')
}

/** Leaves for the provider's sign-in page; comes back to `/` with a code (`completeSignIn`). */
export async function startSignIn(oidc: OidcSettings): Promise<never> {
  const d = await discover(oidc.issuer)
  const verifier = random(48)
  const state = random(24)
  const challenge = base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))))
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, token_endpoint: d.token_endpoint, back: location.hash }))
  const url = new URL(d.authorization_endpoint)
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: oidc.client_id,
    redirect_uri: redirectUri(),
    scope: oidc.scopes,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString()
  location.assign(url.toString())
  return new Promise<never>(() => {})
}

/**
 * On the way back from the provider (`/?code=…&state=…`, or `error=`): exchanges the code and
 * cleans the address bar. Resolves to null when the page was not such a return.
 */
export async function completeSignIn(oidc: OidcSettings | null): Promise<{ error: string } | { ok: true } | null> {
  const params = new URLSearchParams(location.search)
  if (!params.has('code') && !params.has('error')) return null
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? 'null') as {
    verifier: string
    state: string
    token_endpoint: string
    back: string
  } | null
  sessionStorage.removeItem(PENDING)
  history.replaceState(null, '', `/${pending?.back ?? ''}`)
  // Only a return to a sign-in this tab started is read at all: a crafted link's `error_description`
  // must not put words on the sign-in page.
  if (!oidc || !pending || params.get('state') !== pending.state) {
    return { error: 'This sign-in was not started here (its state does not match). Sign in again.' }
  }
  if (params.has('error')) {
    return { error: `The identity provider refused: ${params.get('error_description') ?? params.get('error')}` }
  }
  const res = await fetch(pending.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code')!,
      redirect_uri: redirectUri(),
      client_id: oidc.client_id,
      code_verifier: pending.verifier,
    }),
  }).catch(() => null)
  if (!res?.ok) return { error: `The identity provider did not exchange the code (${res ? res.status : 'unreachable'}).` }
  store((await res.json()) as TokenAnswer, pending.token_endpoint, oidc.client_id, null)
  return { ok: true }
}

function store(t: TokenAnswer, tokenEndpoint: string, clientId: string, previousRefresh: string | null): void {
  const lifetimeMs = (t.expires_in ?? 3600) * 1000
  const now = Date.now()
  write({
    kind: 'oidc',
    access_token: t.access_token,
    refresh_token: t.refresh_token ?? previousRefresh,
    expires_at: now + lifetimeMs,
    renew_at: now + lifetimeMs - Math.min(RENEW_MS, lifetimeMs / 2),
    token_endpoint: tokenEndpoint,
    client_id: clientId,
  })
}
