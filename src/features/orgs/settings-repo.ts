/**
 * @module features/orgs/settings-repo
 * SQL of the org's own settings (`GET`/`PATCH /v1/org`). Runs inside `withOrg`: RLS shows the
 * caller's org and no other.
 */
import type { Tx } from '../../infra/db.ts'

export interface OrgRow {
  id: string
  name: string
  retention_days: number
  created_at: Date
  updated_at: Date
}

export async function getOrg(tx: Tx): Promise<OrgRow | null> {
  const [row] = await tx<OrgRow[]>`
    select id, name, retention_days, created_at, updated_at from organizations where id = app_current_org()`
  return row ?? null
}

/** Sets retention_days; returns the row after the change and the value before it. */
export async function setRetentionDays(tx: Tx, days: number): Promise<{ org: OrgRow; previous: number } | null> {
  // FOR UPDATE: two admins changing it at once each record the value they really replaced.
  const [before] = await tx<{ retention_days: number }[]>`
    select retention_days from organizations where id = app_current_org() for update`
  if (!before) return null
  const [org] = await tx<OrgRow[]>`
    update organizations set retention_days = ${days}, updated_at = now()
     where id = app_current_org()
     returning id, name, retention_days, created_at, updated_at`
  return { org: org!, previous: before.retention_days }
}
