/**
 * @module features/members/routes
 * The team (issue 10, docs/people.md): `GET /v1/team` for anyone who reads, `POST /v1/team`
 * (invite), `PUT /v1/team/{id}` (role) and `DELETE /v1/team/{id}` for whoever holds `members`
 * (owners, and the org's admin credentials: only they manage members, so nobody gives a role
 * above their own, SPEC §6.3); the last owner can be neither demoted nor removed (409 `last_owner`).
 * Removing a member, or changing their role, revokes their personal tokens at once. Every change is
 * in the audit log with the state before and after; so is an invitation claimed at sign-in.
 */
import type { RequestFacts } from '../../http/request-context.ts'
import type { CredentialResolver, Principal } from '../../auth/credentials.ts'
import { AppError, NotFoundError } from '../../errors.ts'
import { isUuid, withOrg, type Sql } from '../../infra/db.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { revokeTokens } from '../tokens/repo.ts'
import { lockMember, inviteMember, listMembers, lockOwners, removeMember, setRole, type MemberRow } from './repo.ts'
import { InviteBody, MemberIdParams, MemberList, MemberView, RoleBody } from './schema.ts'

export function mountTeam(routes: RouteRegistry, deps: { sql: Sql; resolver: CredentialResolver }): void {
  const { sql, resolver } = deps
  const tags = ['team']

  routes.add(
    {
      method: 'get',
      path: '/v1/team',
      operationId: 'listTeam',
      summary: 'The members of the organization and the pending invitations',
      tags,
      permission: 'read',
      responses: { 200: { description: 'Every member', schema: MemberList } },
    },
    async (c) => {
      const rows = await withOrg(sql, c.get('principal').orgId, listMembers)
      return c.json({ members: rows.map(view) })
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/v1/team',
      operationId: 'inviteMember',
      summary: 'Invite a person by email, with a role (pending until they first sign in)',
      tags,
      permission: 'members',
      body: InviteBody,
      idempotent: true,
      responses: {
        201: { description: 'Invited', schema: MemberView },
        409: { description: 'That email is already a member or invited' },
      },
    },
    async (c, { body }) => {
      const p = c.get('principal')
      const email = body.email.toLowerCase()
      const row = await withOrg(sql, p.orgId, async (tx) => {
        const created = await inviteMember(tx, email, body.role, p.tokenId)
        if (created) await audit(tx, c.get('request'), p, 'member.invite', created.id, null, created)
        return created
      })
      if (!row) throw new AppError(409, 'member_exists', 'That email is already a member or invited.')
      resolver.membersChanged(p.orgId)
      return c.json(view(row), 201)
    },
  )

  routes.add(
    {
      method: 'put',
      path: '/v1/team/:id',
      operationId: 'setMemberRole',
      summary: "Change a member's role",
      tags,
      permission: 'members',
      params: MemberIdParams,
      body: RoleBody,
      responses: {
        200: { description: 'The member with the new role', schema: MemberView },
        404: { description: 'No such member in this organization' },
        409: { description: 'It would leave the organization without an owner' },
      },
    },
    async (c, { params, body }) => {
      const p = c.get('principal')
      const id = memberId(params.id)
      const row = await withOrg(sql, p.orgId, async (tx) => {
        const owners = await lockOwners(tx)
        const before = await lockMember(tx, id)
        if (!before) throw memberNotFound()
        if (before.role === body.role) return { row: before, revoked: [] }
        if (body.role !== 'owner' && owners.length === 1 && owners[0] === id) throw lastOwner()
        const after = await setRole(tx, id, body.role, p.tokenId)
        if (!after) throw memberNotFound()
        // Personal tokens carry the scopes of the role they were made under: not past a change.
        const tokens = await revokeTokens(tx, { kind: 'personal', memberId: id })
        await audit(tx, c.get('request'), p, 'member.role', id, before, after, { revoked_tokens: tokens.length })
        return { row: after, revoked: tokens }
      })
      resolver.membersChanged(p.orgId)
      await resolver.revoked(row.revoked)
      return c.json(view(row.row))
    },
  )

  routes.add(
    {
      method: 'delete',
      path: '/v1/team/:id',
      operationId: 'removeMember',
      summary: 'Remove a member (or withdraw an invitation); their personal tokens are revoked',
      tags,
      permission: 'members',
      params: MemberIdParams,
      responses: {
        204: { description: 'Removed; refused from their next request' },
        404: { description: 'No such member in this organization' },
        409: { description: 'The last owner cannot be removed' },
      },
    },
    async (c, { params }) => {
      const p = c.get('principal')
      const id = memberId(params.id)
      const revoked = await withOrg(sql, p.orgId, async (tx) => {
        const owners = await lockOwners(tx)
        const before = await lockMember(tx, id)
        if (!before) throw memberNotFound()
        if (owners.length === 1 && owners[0] === id) throw lastOwner()
        if (!(await removeMember(tx, id))) throw memberNotFound()
        const tokens = await revokeTokens(tx, { kind: 'personal', memberId: id })
        await audit(tx, c.get('request'), p, 'member.remove', id, before, null, { revoked_tokens: tokens.length })
        return tokens
      })
      resolver.membersChanged(p.orgId)
      await resolver.revoked(revoked)
      return c.body(null, 204)
    },
  )
}

function view(r: MemberRow) {
  return {
    id: r.id,
    email: r.email,
    role: r.role,
    status: r.status,
    created_at: r.created_at.toISOString(),
    joined_at: r.joined_at?.toISOString() ?? null,
  }
}

function memberId(raw: string): string {
  const id = raw.toLowerCase()
  if (!isUuid(id)) throw memberNotFound()
  return id
}

async function audit(
  tx: Parameters<typeof recordAudit>[0],
  request: RequestFacts,
  p: Principal,
  action: string,
  targetId: string,
  before: MemberRow | null,
  after: MemberRow | null,
  extra: Record<string, unknown> = {},
) {
  await recordAudit(tx, {
    ...auditActor(p),
    action,
    targetType: 'member',
    targetId,
    request,
    details: { before: before && view(before), after: after && view(after), ...extra },
  })
}

const memberNotFound = () => new NotFoundError('No member with that id in this organization.')
const lastOwner = () => new AppError(409, 'last_owner', 'The organization would be left without an owner.')
