/**
 * @module features/members/repo
 * The `members` table (sql/0022_members.sql): an identity's memberships before its org is known
 * (the `member_lookup` policy), and the team's rows inside one org.
 */
import type { MemberRole } from '../../auth/credentials.ts'
import type { IdpIdentity } from '../../auth/idp/verifier.ts'
import { withSettings, type Tx, type Sql } from '../../infra/db.ts'
import { recordAudit, type AuditEntry } from '../audit/repo.ts'

export interface MemberRow {
  org_id: string
  id: string
  email: string
  role: MemberRole
  status: 'pending' | 'active'
  created_at: Date
  joined_at: Date | null
  invited_by: string | null
}

/** A member as the team API shows it, and as the audit log records it before and after a change. */
export function memberView(r: MemberRow) {
  return {
    id: r.id,
    email: r.email,
    role: r.role,
    status: r.status,
    created_at: r.created_at.toISOString(),
    joined_at: r.joined_at?.toISOString() ?? null,
  }
}

/** One change to a member in the audit log, with the member before and after. */
export async function auditMember(
  tx: Tx,
  by: Pick<AuditEntry, 'actorType' | 'actorId' | 'request'>,
  action: string,
  targetId: string,
  before: MemberRow | null,
  after: MemberRow | null,
  extra: Record<string, unknown> = {},
): Promise<void> {
  await recordAudit(tx, {
    ...by,
    action,
    targetType: 'member',
    targetId,
    details: { before: before && memberView(before), after: after && memberView(after), ...extra },
  })
}

const COLUMNS = (tx: Tx) => tx`org_id, id, email, role, status, created_at, joined_at, invited_by`

/**
 * The identity's active memberships, and the invitations to its email when its provider verified
 * that email: nothing else is visible to this transaction (policy `member_lookup`).
 */
export function membershipsOf(sql: Sql, who: IdpIdentity): Promise<MemberRow[]> {
  return withSettings(
    sql,
    {
      'app.lookup_idp_issuer': who.issuer,
      'app.lookup_idp_subject': who.subject,
      'app.lookup_verified_email': who.emailVerified && who.email ? who.email : '',
    },
    (tx) => tx<MemberRow[]>`select ${COLUMNS(tx)} from members order by org_id, status`,
  )
}

/**
 * Binds a pending invitation to the identity that claimed it. Null when it is no longer pending
 * (claimed meanwhile, removed) or when this identity is already a member of that org under
 * another email (one membership per identity and org).
 */
export async function claimInvitation(tx: Tx, id: string, who: IdpIdentity): Promise<MemberRow | null> {
  const [already] = await tx<{ id: string }[]>`
    select id from members where idp_issuer = ${who.issuer} and idp_subject = ${who.subject}`
  if (already) return null
  const [row] = await tx<MemberRow[]>`
    update members set status = 'active', idp_issuer = ${who.issuer}, idp_subject = ${who.subject}, joined_at = now()
     where id = ${id} and status = 'pending'
    returning ${COLUMNS(tx)}`
  return row ?? null
}

export async function listMembers(tx: Tx): Promise<MemberRow[]> {
  return tx<MemberRow[]>`select ${COLUMNS(tx)} from members order by created_at, id`
}

/** The member, locked until the transaction ends: a change reads what it changes. */
export async function lockMember(tx: Tx, id: string): Promise<MemberRow | null> {
  const [row] = await tx<MemberRow[]>`select ${COLUMNS(tx)} from members where id = ${id} for update`
  return row ?? null
}

/**
 * The member, its role held until the transaction ends (FOR SHARE): a role change or removal
 * waits, then sees (and revokes) what this transaction made under the old role.
 */
export async function holdMember(tx: Tx, id: string): Promise<MemberRow | null> {
  const [row] = await tx<MemberRow[]>`select ${COLUMNS(tx)} from members where id = ${id} for share`
  return row ?? null
}

/** A new invitation; null when that email is already a member or invited. */
export async function inviteMember(tx: Tx, email: string, role: MemberRole, by: string): Promise<MemberRow | null> {
  const [row] = await tx<MemberRow[]>`
    insert into members (org_id, email, role, invited_by) values (app_current_org(), ${email}, ${role}, ${by})
    on conflict (org_id, email) do nothing
    returning ${COLUMNS(tx)}`
  return row ?? null
}

/**
 * The org's owners, locked until the transaction ends: every change that could leave the org
 * without an owner takes this lock first, so two at once cannot both remove "the other" owner.
 */
export async function lockOwners(tx: Tx): Promise<string[]> {
  // In id order: two changes at once lock the same rows in the same order, never a deadlock.
  const rows = await tx<{ id: string }[]>`
    select id from members where role = 'owner' and status = 'active' order by id for update`
  return rows.map((r) => r.id)
}

export async function setRole(tx: Tx, id: string, role: MemberRole, by: string): Promise<MemberRow | null> {
  const [row] = await tx<MemberRow[]>`
    update members set role = ${role}, invited_by = ${by} where id = ${id} returning ${COLUMNS(tx)}`
  return row ?? null
}

export async function removeMember(tx: Tx, id: string): Promise<MemberRow | null> {
  const [row] = await tx<MemberRow[]>`delete from members where id = ${id} returning ${COLUMNS(tx)}`
  return row ?? null
}
