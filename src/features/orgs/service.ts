/**
 * @module features/orgs/service
 * Onboarding: an org is created together with its first admin API key (qk_…, scope admin) and
 * its first deploy token (qt_deploy_…, scope ingest only: a laptop never reads the org's data,
 * issue 9), in one transaction, with its first owner invited when an email is given (issue 10).
 * The raw values are returned once and never stored.
 */
import { FORMATS } from '../../auth/opaque/format.ts'
import { AppError } from '../../errors.ts'
import { withOrg, withSettings, type Sql, type Tx } from '../../infra/db.ts'
import { normalEmail } from '../../lib/email.ts'
import { recordAudit } from '../audit/repo.ts'
import { auditMember, inviteMember } from '../members/repo.ts'
import { issueToken } from '../api-tokens/repo.ts'

export interface CreatedOrg {
  org_id: string
  name: string
  admin_key: string
  deploy_token: string
  created_at: string
  /** The first owner's email, invited with the org (pending until they sign in). */
  owner_invited?: string
}

export const ADMIN_SCOPES = ['admin']
/** Installed on every laptop: ingest and registration only, never the org's data (issue 9). */
export const DEPLOY_SCOPES = ['ingest']

/** `org create` was given a name another org has (compared case-insensitively), without saying it means to. */
export class DuplicateOrgNameError extends AppError {
  override name = 'DuplicateOrgNameError'
  constructor(existing: string[]) {
    super(409, 'org_name_taken', `An org with this name exists (${existing.join(', ')}).`, { extensions: { orgs: existing } })
  }
}

/**
 * Creates an org with its first credentials, and invites its first owner when `ownerEmail` is
 * given (lib/email's rule). `name` must already be checked (lib/names). With `uniqueName`, a name
 * another org has (case-insensitive) is refused: two orgs both called "Acme" are a mistake more
 * often than a wish, and the operator says so explicitly (`--allow-duplicate-name`).
 */
export function createOrg(
  sql: Sql,
  name: string,
  actor: 'cli' | 'system',
  ownerEmail?: string,
  options: { uniqueName?: boolean } = {},
): Promise<CreatedOrg> {
  const orgId = crypto.randomUUID()
  return withOrg(sql, orgId, async (tx) => {
    if (options.uniqueName) await refuseTakenName(tx, name)
    await markFirstOrg(tx, orgId)
    return insertOrg(tx, orgId, name, actor, ownerEmail)
  })
}

async function refuseTakenName(tx: Tx, name: string): Promise<void> {
  // Serialises creations of one name, so that two at once cannot both find it free.
  await tx`select pg_advisory_xact_lock(hashtext('org-name:' || lower(${name})))`
  await tx`select set_config('app.org_directory', 'on', true)`
  const taken = await tx<{ id: string }[]>`select id from organizations where lower(name) = lower(${name}) order by created_at`
  await tx`select set_config('app.org_directory', '', true)`
  if (taken.length > 0) throw new DuplicateOrgNameError(taken.map((r) => r.id))
}

export interface OrgListing {
  id: string
  name: string
  created_at: Date
}

/** Whether the org exists (the operator's commands name one by id). */
export async function orgExists(sql: Sql, id: string): Promise<boolean> {
  const rows = await withSettings(sql, { 'app.org_directory': 'on' }, (tx) => tx`select 1 from organizations where id = ${id}`)
  return rows.length === 1
}

/** Every org, oldest first (the operator's `org list`). */
export function listOrgs(sql: Sql): Promise<OrgListing[]> {
  return withSettings(
    sql,
    { 'app.org_directory': 'on' },
    (tx) => tx<OrgListing[]>`select id, name, created_at from organizations order by created_at, id`,
  )
}

/**
 * First start: creates `name` only if no org was ever created on this database. Safe when several
 * instances start at once: the `first_org` marker is inserted by exactly one of them, in the same
 * transaction as the org it names.
 */
export function bootstrapFirstOrg(sql: Sql, name: string, ownerEmail?: string): Promise<CreatedOrg | null> {
  const orgId = crypto.randomUUID()
  return withOrg(sql, orgId, async (tx) => {
    if (!(await markFirstOrg(tx, orgId))) return null
    return insertOrg(tx, orgId, name, 'system', ownerEmail)
  })
}

async function markFirstOrg(tx: Tx, orgId: string): Promise<boolean> {
  const rows = await tx`
    insert into quint_system (key, value) values ('first_org', ${tx.json({ org_id: orgId })})
    on conflict (key) do nothing returning key`
  return rows.length === 1
}

async function insertOrg(tx: Tx, orgId: string, name: string, actor: 'cli' | 'system', ownerEmail?: string): Promise<CreatedOrg> {
  const [org] = await tx<{ created_at: Date }[]>`
    insert into organizations (id, name) values (${orgId}, ${name}) returning created_at`
  const admin = await issueToken(tx, { format: FORMATS.adminKey, name: 'admin key', scopes: ADMIN_SCOPES })
  const deploy = await issueToken(tx, { format: FORMATS.deployToken, name: 'default deploy token', scopes: DEPLOY_SCOPES })
  await recordAudit(tx, {
    actorType: actor,
    action: 'org.create',
    targetType: 'organization',
    targetId: orgId,
    details: { name, admin_key_id: admin.id, deploy_token_id: deploy.id },
  })
  const email = ownerEmail === undefined ? null : normalEmail(ownerEmail)
  if (ownerEmail !== undefined && email === null) throw new TypeError('createOrg: not an email address')
  const owner = email ? await inviteMember(tx, email, 'owner', actor) : null
  if (owner) await auditMember(tx, { actorType: actor }, 'member.invite', owner.id, null, owner)
  return {
    ...(owner ? { owner_invited: owner.email } : {}),
    org_id: orgId,
    name,
    admin_key: admin.token,
    deploy_token: deploy.token,
    created_at: org!.created_at.toISOString(),
  }
}
