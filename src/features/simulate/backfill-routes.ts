/**
 * @module features/simulate/backfill-routes
 * Retro-hunt routes (issue 11; docs/simulate.md "Retro-hunt"):
 *
 *   POST /v1/alert-rules/{id}/backfill       {"days"}  the rule over history
 *   POST /v1/threat-signatures/{id}/backfill {"days"}  the signature over history
 *
 * Bounded and idempotent (./backfill.ts). Any status: a proposed or withdrawn signature, a disabled
 * rule can be hunted with before it is trusted. Each run is in the audit log with its counts.
 */
import { NotFoundError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { uuidOr, type Sql } from '../../infra/db.ts'
import { getRule } from '../alerts/repo.ts'
import { IdParams } from '../alerts/schema.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import type { Severity } from '../alerts/builtin.ts'
import { shapeOf } from '../signatures/flow-match.ts'
import { getSignature } from '../signatures/repo.ts'
import { SignatureIdParams } from '../signatures/schema.ts'
import { backfillRule, backfillSignature } from './backfill.ts'
import { withSimulation } from './bounds.ts'
import { BackfillBody, BackfillResult } from './schema.ts'

export function mountBackfill(routes: RouteRegistry, deps: { sql: Sql }): void {
  const responses = {
    200: { description: 'What the run matched and raised', schema: BackfillResult },
    422: { description: '`days` out of range, or the window holds too many actions (`simulation_too_large`)' },
  }

  routes.add(
    {
      method: 'post',
      path: '/v1/alert-rules/:id/backfill',
      operationId: 'backfillAlertRule',
      summary: 'Run an alert rule over the stored actions of the last days: an alert once per rule and event',
      tags: ['alert rules'],
      permission: 'manage',
      params: IdParams,
      body: BackfillBody,
      responses,
    },
    async (c, { params, body }) => {
      const p = c.get('principal')
      const notFound = () => new NotFoundError('No alert rule with that id in this organization.')
      const id = uuidOr(params.id, notFound)
      const out = await withSimulation(deps.sql, p.orgId, async (tx) => {
        const rule = await getRule(tx, id)
        if (!rule) throw notFound()
        const result = await backfillRule(tx, rule, body.days ?? 7)
        await recordAudit(tx, {
          ...auditActor(p),
          action: 'alert_rule.backfill',
          targetType: 'alert_rule',
          targetId: id,
          request: c.get('request'),
          details: { ...result },
        })
        return result
      })
      return c.json(out)
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/v1/threat-signatures/:id/backfill',
      operationId: 'backfillThreatSignature',
      summary: 'Run a threat signature over the stored actions of the last days (retro-hunt): an alert once per event or session',
      tags: ['threat signatures'],
      permission: 'manage',
      params: SignatureIdParams,
      body: BackfillBody,
      responses,
    },
    async (c, { params, body }) => {
      const p = c.get('principal')
      const notFound = () => new NotFoundError('No threat signature with that id in this organization.')
      const id = uuidOr(params.id, notFound)
      const out = await withSimulation(deps.sql, p.orgId, async (tx) => {
        const s = await getSignature(tx, id)
        if (!s) throw notFound()
        const severity = s.severity as Severity
        const result = await backfillSignature(
          tx,
          {
            id: s.id,
            name: s.name,
            severity,
            kind: s.kind,
            value: s.value,
            action: s.action,
            scope: { machine_ids: s.scope_machine_ids, tags: s.scope_tags },
            shape:
              s.kind === 'flow_shape' && s.shape && s.max_jsd !== null
                ? shapeOf({ ...s, shape: s.shape, max_jsd: s.max_jsd })
                : null,
          },
          body.days ?? 7,
        )
        await recordAudit(tx, {
          ...auditActor(p),
          action: 'threat_signature.backfill',
          targetType: 'threat_signature',
          targetId: id,
          request: c.get('request'),
          details: { ...result },
        })
        return result
      })
      return c.json(out)
    },
  )
}
