/**
 * @module console/ui/session
 * Who is signed in, for the pages: what they may do decides which buttons they get (the API
 * still checks every request: hiding a button is courtesy, not security).
 */
import { createContext } from 'preact'
import { useContext } from 'preact/hooks'
import type { Ok } from './api/client.ts'
import type { Route } from './router.ts'

export type Identity = Ok<'/v1/auth/whoami', 'get'>

export const IdentityContext = createContext<Identity | null>(null)

export const useIdentity = (): Identity => useContext(IdentityContext)!

export type Permission = 'read' | 'triage' | 'manage' | 'members'

const ROLE: Record<string, Permission[]> = {
  owner: ['read', 'triage', 'manage', 'members'],
  admin: ['read', 'triage', 'manage'],
  analyst: ['read', 'triage'],
  viewer: ['read'],
}

/** Mirrors docs/rbac.md; the API's answer (403) is the authority. */
export function can(i: Identity, p: Permission): boolean {
  if (i.kind === 'member') return ROLE[i.role]?.includes(p) ?? false
  if (i.kind === 'opaque') return i.scopes.some((s) => s === 'admin' || s === '*' || s === p)
  return false
}

const MANAGEMENT_SCOPES = new Set(['*', 'admin', 'tokens:write'])

/**
 * Who may decide an override (docs/auth.md "Overrides"): a management credential, as the API's
 * `isManagement` says (the admin key, or an app token with `*`, `admin` or `tokens:write`), or a
 * person whose role manages (admin, owner). Analysts and viewers only see the requests.
 */
export function canDecideOverrides(i: Identity): boolean {
  if (i.kind === 'member') return i.role === 'admin' || i.role === 'owner'
  if (i.kind === 'opaque') return i.scopes.some((s) => s === 'admin' || s === '*')
  if (i.kind === 'jwt') return i.type === 'app' && i.scopes.some((s) => MANAGEMENT_SCOPES.has(s))
  return false
}

export interface PageProps {
  route: Route
}
