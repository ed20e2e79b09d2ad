/**
 * @module http/permissions
 * The closed set of permissions a route can need (issue 10). Every route declares exactly one in
 * its spec (`permission`), and the route registry puts that permission's guard in front of it:
 * there is no other way to mount a route, so none can be left unguarded by forgetting a
 * middleware. docs/rbac.md has the matrix of who holds which.
 *
 * - `public`: no credential (the public signing keys).
 * - `authenticated`: any accepted credential; the route checks what the credential is itself
 *   (introspection, minting within the JWT hierarchy, revocation of one's own tokens, overrides).
 * - `ingest`: a machine's or an agent's calls (events, sessions, the daemon's machine routes).
 * - `read`: the org's data (events, sessions, agents, machines, alerts, ingest stats).
 * - `triage`: changing an alert's status.
 * - `manage`: tokens, alert rules, webhooks, dead letters, org settings, the audit log.
 * - `members`: the team (inviting, changing roles, removing).
 *
 * Credentials hold permissions through their scopes (`admin` and `*` hold every one); people
 * through their role (SPEC §6.3, issue 10): viewer reads; analyst also triages; admin also
 * manages; owner also manages the members. People never hold `ingest`.
 */
import { hasScope, type MemberRole, type Principal } from '../auth/credentials.ts'

export const PERMISSIONS = ['public', 'authenticated', 'ingest', 'read', 'triage', 'manage', 'members'] as const
export type Permission = (typeof PERMISSIONS)[number]

export const ROLES: readonly MemberRole[] = ['owner', 'admin', 'analyst', 'viewer']

const ROLE_PERMISSIONS: Record<MemberRole, ReadonlySet<Permission>> = {
  viewer: new Set(['public', 'authenticated', 'read']),
  analyst: new Set(['public', 'authenticated', 'read', 'triage']),
  admin: new Set(['public', 'authenticated', 'read', 'triage', 'manage']),
  owner: new Set(['public', 'authenticated', 'read', 'triage', 'manage', 'members']),
}

/** The scope a credential needs for each permission; `admin` and `*` satisfy all. */
const SCOPE_OF: Record<Exclude<Permission, 'public' | 'authenticated'>, string> = {
  ingest: 'ingest',
  read: 'read',
  triage: 'admin',
  manage: 'admin',
  members: 'admin',
}

export function allows(principal: Principal, permission: Permission): boolean {
  if (principal.kind === 'member') return ROLE_PERMISSIONS[principal.role].has(permission)
  if (permission === 'public' || permission === 'authenticated') return true
  return hasScope(principal, SCOPE_OF[permission])
}
