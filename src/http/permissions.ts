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
 * - `manage`: tokens, alert rules, webhooks, dead letters, org settings.
 */
export const PERMISSIONS = ['public', 'authenticated', 'ingest', 'read', 'triage', 'manage'] as const
export type Permission = (typeof PERMISSIONS)[number]
