/**
 * @module features/members/routes
 * The team (issue 10, docs/people.md): `GET /v1/team` for anyone who reads, `POST /v1/team`
 * (invite), `PUT /v1/team/{id}` (role) and `DELETE /v1/team/{id}` for whoever holds `members`
 * (owners, and the org's admin credentials: only they manage members, so nobody gives a role
 * above their own, SPEC §6.3); the last owner can be neither demoted nor removed (409 `last_owner`).
 * Removing a member, or changing their role, revokes their personal tokens at once. Every change is
 * in the audit log with the state before and after; so is an invitation claimed at sign-in.
 */
import type { CredentialResolver } from '../../auth/credentials.ts'
import { AppError, NotFoundError } from '../../errors.ts'
import { isUuid, withOrg, type Sql } from '../../infra/db.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { auditActor } from '../audit/repo.ts'
import { revokeTokens } from '../api-tokens/repo.ts'
import { auditMember, inviteMember, listMembers, lockMember, lockOwners, memberView, removeMember, setRole } from './repo.ts'
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
      return c.json({ members: rows.map(memberView) })
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
        if (created)
          await auditMember(tx, { ...auditActor(p), request: c.get('request') }, 'member.invite', created.id, null, created)
        return created
      })
      if (!row) throw new AppError(409, 'member_exists', 'That email is already a member or invited.')
      await resolver.membersChanged(p.orgId)
      return c.json(memberView(row), 201)
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
        await auditMember(tx, { ...auditActor(p), request: c.get('request') }, 'member.role', id, before, after, {
          revoked_tokens: tokens.length,
        })
        return { row: after, revoked: tokens }
      })
      await resolver.membersChanged(p.orgId)
      await resolver.revoked(row.revoked)
      return c.json(memberView(row.row))
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
        await auditMember(tx, { ...auditActor(p), request: c.get('request') }, 'member.remove', id, before, null, {
          revoked_tokens: tokens.length,
        })
        return tokens
      })
      await resolver.membersChanged(p.orgId)
      await resolver.revoked(revoked)
      return c.body(null, 204)
    },
  )
}

function memberId(raw: string): string {
  const id = raw.toLowerCase()
  if (!isUuid(id)) throw memberNotFound()
  return id
}

const memberNotFound = () => new NotFoundError('No member with that id in this organization.')
const lastOwner = () => new AppError(409, 'last_owner', 'The organization would be left without an owner.')
