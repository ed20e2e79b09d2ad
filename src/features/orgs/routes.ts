/**
 * @module features/orgs/routes
 * `GET /v1/org` and `PATCH /v1/org`: the caller's own org and its settings (admin scope):
 * `retention_days` (issue 9; docs/retention.md), how long the org's events, sessions and alerts
 * are kept before the purge job deletes them, and `proxy_domains` (issue 11), the hosts its
 * daemons route through their proxy (the heartbeat's `domains`). Changes are audited.
 */
import { Type } from '@sinclair/typebox'
import { NotFoundError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { withOrg, type Sql } from '../../infra/db.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { recordFleetEvent, type FleetRing } from '../fleet/repo.ts'
import { getOrg, updateSettings, type OrgRow } from './settings-repo.ts'

/** Bounds of retention_days, as the database checks them (sql/0019_retention.sql). */
export const RETENTION_DAYS = { min: 1, max: 3650, default: 90 } as const

const RetentionDays = Type.Integer({
  minimum: RETENTION_DAYS.min,
  maximum: RETENTION_DAYS.max,
  description: `Days the org's events, sessions and alerts are kept, counted from when the server received them (${RETENTION_DAYS.min}–${RETENTION_DAYS.max}, default ${RETENTION_DAYS.default}). Older data is deleted by the purge job (docs/retention.md).`,
})

/** A host name, or `*.` and one: what a PAC file can route. */
const Domain = Type.String({
  minLength: 1,
  maxLength: 253,
  pattern: '^(\\*\\.)?([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\\.)+([a-zA-Z]{2,63}|xn--[a-zA-Z0-9-]{1,59})$',
  description:
    'A host name with a dot (`api.example.com`, punycode allowed), or `*.` and one for its subdomains; compared lower-cased. Not an IP address.',
})
const ProxyDomains = Type.Array(Domain, {
  maxItems: 500,
  description:
    "Hosts the org's daemons route through their proxy (merged with the daemon's built-in list): the heartbeat's `domains` (SPEC §7.1).",
})

export const OrgView = Type.Object({
  id: Type.String({ format: 'uuid', description: 'The org id.' }),
  name: Type.String({ description: 'The org name.' }),
  retention_days: RetentionDays,
  proxy_domains: ProxyDomains,
  created_at: Type.String({ format: 'date-time', description: 'When the org was created.' }),
  updated_at: Type.String({ format: 'date-time', description: 'When the org or one of its settings last changed.' }),
})

export const UpdateOrgBody = Type.Object(
  { retention_days: Type.Optional(RetentionDays), proxy_domains: Type.Optional(ProxyDomains) },
  { additionalProperties: false, minProperties: 1, description: 'The settings to change; the others stay as they are.' },
)

export function mountOrgSettings(routes: RouteRegistry, deps: { sql: Sql; fleet: FleetRing }): void {
  const { sql, fleet } = deps
  const tags = ['org']

  routes.add(
    {
      method: 'get',
      path: '/v1/org',
      operationId: 'getOrg',
      summary: "The caller's org and its settings (retention_days)",
      tags,
      permission: 'manage',
      responses: { 200: { description: 'The org', schema: OrgView } },
    },
    async (c) => {
      const row = await withOrg(sql, c.get('principal').orgId, getOrg)
      if (!row) throw new NotFoundError('No such org.')
      return c.json(orgView(row))
    },
  )

  routes.add(
    {
      method: 'patch',
      path: '/v1/org',
      operationId: 'updateOrg',
      summary:
        "Change the org's settings: retention_days (shortening it lets the next purge delete more), proxy_domains; audited",
      tags,
      permission: 'manage',
      body: UpdateOrgBody,
      responses: { 200: { description: 'The org after the change', schema: OrgView } },
    },
    async (c, { body }) => {
      const p = c.get('principal')
      const row = await withOrg(sql, p.orgId, async (tx) => {
        const domains = body.proxy_domains && [...new Set(body.proxy_domains.map((d) => d.toLowerCase()))].sort()
        const changed = await updateSettings(tx, { retention_days: body.retention_days, proxy_domains: domains })
        if (!changed) return null
        const { before, after } = changed
        const details: Record<string, unknown> = {}
        if (before.retention_days !== after.retention_days) {
          details.retention_days = { from: before.retention_days, to: after.retention_days }
        }
        if (before.proxy_domains.join('\n') !== after.proxy_domains.join('\n')) {
          details.proxy_domains = { from: before.proxy_domains, to: after.proxy_domains }
          await recordFleetEvent(tx, { kind: 'domains', data: { type: 'domains' } })
        }
        if (Object.keys(details).length > 0) {
          await recordAudit(tx, {
            ...auditActor(p),
            action: 'org.update',
            targetType: 'organization',
            targetId: after.id,
            request: c.get('request'),
            details,
          })
        }
        return after
      })
      if (!row) throw new NotFoundError('No such org.')
      fleet.ring([p.orgId])
      return c.json(orgView(row))
    },
  )
}

function orgView(r: OrgRow) {
  return {
    id: r.id,
    name: r.name,
    retention_days: r.retention_days,
    proxy_domains: r.proxy_domains,
    created_at: r.created_at.toISOString(),
    updated_at: r.updated_at.toISOString(),
  }
}
