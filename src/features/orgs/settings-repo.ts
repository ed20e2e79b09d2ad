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
  proxy_domains: string[]
  created_at: Date
  updated_at: Date
}

export async function getOrg(tx: Tx): Promise<OrgRow | null> {
  const [row] = await tx<OrgRow[]>`
    select ${COLUMNS(tx)} from organizations where id = app_current_org()`
  return row ?? null
}

const COLUMNS = (tx: Tx) => tx`id, name, retention_days, proxy_domains, created_at, updated_at`

export interface OrgSettings {
  retention_days?: number
  proxy_domains?: string[]
}

/** Sets the settings given; returns the row before and after the change. */
export async function updateSettings(tx: Tx, s: OrgSettings): Promise<{ before: OrgRow; after: OrgRow } | null> {
  // FOR UPDATE: two admins changing it at once each record the value they really replaced.
  const [before] = await tx<OrgRow[]>`select ${COLUMNS(tx)} from organizations where id = app_current_org() for update`
  if (!before) return null
  const [after] = await tx<OrgRow[]>`
    update organizations set
      retention_days = ${s.retention_days ?? before.retention_days},
      proxy_domains = ${s.proxy_domains ?? before.proxy_domains}::text[],
      updated_at = now()
     where id = app_current_org()
     returning ${COLUMNS(tx)}`
  return { before, after: after! }
}
