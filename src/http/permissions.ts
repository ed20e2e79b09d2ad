/**
 * @module http/permissions
 * The closed set of permissions a route can need (issue 10). Every route declares exactly one in
 * its spec (`permission`), and the route registry puts that permission's guard in front of it:
 * there is no other way to mount a route, so none can be left unguarded by forgetting a
 * middleware. docs/rbac.md has the matrix of who holds which.
 *
 * - `public`: no credential (the public signing keys).
 * - `authenticated`: any accepted credential; the route checks what the credential is itself
 *   (introspection, minting within the JWT hierarchy, revocation of one's own tokens, overrides,
 *   the tokens API).
 * - `enroll`: registering a machine (`POST /v1/machines/register`).
 * - `machine`: the daemon's other calls on its own machine (heartbeat, policies, events, process
 *   snapshot, graphs).
 * - `ingest`: events and sessions not tied to a machine route (`/v1/ingest`, `/v1/sessions/…`).
 * - `read`: the org's data (events, sessions, agents, machines, alerts, ingest stats).
 * - `triage`: changing an alert's status.
 * - `manage`: tokens, alert rules, webhooks, dead letters, machines, org settings, the audit log.
 * - `members`: the team (inviting, changing roles, removing) and admin keys.
 *
 * Credentials hold permissions through their scopes (`SCOPES`; `admin` and `*` hold every one);
 * people through their role (SPEC §6.3, issue 10): viewer reads; analyst also triages; admin also
 * manages; owner also manages the members. People never hold `enroll`, `machine` or `ingest`.
 * Two credentials hold less than their scopes say: an enrollment token only enrolls, and a
 * revoked deploy token (retired, SPEC §3.2) only makes the daemon's calls for the machines it
 * registered (src/features/machines/service.ts checks which).
 */
import { hasScope, type MemberRole, type Principal } from '../auth/credentials.ts'

export const PERMISSIONS = [
  'public',
  'authenticated',
  'enroll',
  'machine',
  'ingest',
  'read',
  'triage',
  'manage',
  'members',
] as const
export type Permission = (typeof PERMISSIONS)[number]

export const ROLES: readonly MemberRole[] = ['owner', 'admin', 'analyst', 'viewer']

const ROLE_PERMISSIONS: Record<MemberRole, ReadonlySet<Permission>> = {
  viewer: new Set(['public', 'authenticated', 'read']),
  analyst: new Set(['public', 'authenticated', 'read', 'triage']),
  admin: new Set(['public', 'authenticated', 'read', 'triage', 'manage']),
  owner: new Set(['public', 'authenticated', 'read', 'triage', 'manage', 'members']),
}

/**
 * The scopes a token can be given (docs/rbac.md): `ingest` (a machine's calls, events), and one
 * per permission of people's roles. A token's creator can give only what it holds itself
 * (src/features/api-tokens/service.ts). Admin keys carry `admin`, which holds everything; an
 * enrollment token carries `enroll`, set by the server.
 */
export const SCOPES = ['ingest', 'read', 'triage', 'manage', 'members'] as const
export type Scope = (typeof SCOPES)[number]

/** The scopes that grant each permission; `admin` and `*` grant all. */
const SCOPES_OF: Record<Exclude<Permission, 'public' | 'authenticated'>, readonly string[]> = {
  enroll: ['enroll', 'ingest'],
  machine: ['ingest'],
  ingest: ['ingest'],
  read: ['read'],
  triage: ['triage'],
  manage: ['manage'],
  members: ['members'],
}

export const roleAllows = (role: MemberRole, permission: Permission): boolean => ROLE_PERMISSIONS[role].has(permission)

export function allows(principal: Principal, permission: Permission): boolean {
  if (principal.kind === 'member') return roleAllows(principal.role, permission)
  if (permission === 'public') return true
  if ('retired' in principal && principal.retired) return permission === 'enroll' || permission === 'machine'
  if (permission === 'authenticated') return true
  return SCOPES_OF[permission].some((s) => hasScope(principal, s))
}
