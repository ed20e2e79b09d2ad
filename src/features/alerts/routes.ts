/**
 * @module features/alerts/routes
 * `/v1/alert-rules` (CRUD of per-org custom rules, admin scope) and `/v1/alerts` (list with
 * filters and the detail with its event, session and the events that led up to it: `read` scope,
 * on the read pool; status changes: admin scope). Rule changes are audited. A malformed id
 * answers 404 like an unknown one: ids from other orgs are invisible under RLS, and the API does
 * not distinguish "not yours" from "does not exist" (issue 9: the same on every route).
 */
import { NotFoundError, ValidationError } from '../../errors.ts'
import { isUuid, withOrg, type Sql } from '../../infra/db.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, paginate, PageQuery } from '../../http/pagination.ts'
import { requireName } from '../../lib/names.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { compileCondition } from './condition.ts'
import { eventView } from '../events/view.ts'
import { recordLive, type LiveRing } from '../live/repo.ts'
import { alertView } from './view.ts'
import { sessionView } from '../sessions/view.ts'
import {
  deleteRule,
  getAction,
  getAlert,
  getRule,
  insertRule,
  listAlerts,
  listRules,
  precedingEvents,
  sessionByKey,
  setAlertStatus,
  updateRule,
  type RuleRow,
} from './repo.ts'
import {
  AlertDetail,
  AlertDetailQuery,
  AlertList,
  AlertListQuery,
  AlertRuleList,
  AlertRuleView,
  AlertView,
  CreateAlertRuleBody,
  IdParams,
  RULE_BODY_LIMIT,
  UpdateAlertBody,
  UpdateAlertRuleBody,
} from './schema.ts'

/** `live`: the console's live stream, rung after a triage commits (issue 12). */
export function mountAlerts(routes: RouteRegistry, deps: { sql: Sql; readSql: Sql; live: LiveRing }): void {
  const { sql, readSql } = deps
  const ruleTags = ['alert rules']
  const alertTags = ['alerts']

  routes.add(
    {
      method: 'post',
      path: '/v1/alert-rules',
      operationId: 'createAlertRule',
      summary: 'Create a custom alert rule (evaluated on every new event of the org)',
      tags: ruleTags,
      permission: 'manage',
      body: CreateAlertRuleBody,
      bodyLimit: RULE_BODY_LIMIT,
      idempotent: true,
      responses: { 201: { description: 'Created', schema: AlertRuleView } },
    },
    async (c, { body }) => {
      const name = requireName(body.name)
      validCondition(body.condition)
      const p = c.get('principal')
      const row = await withOrg(sql, p.orgId, async (tx) => {
        const r = await insertRule(tx, {
          name,
          description: body.description ?? null,
          enabled: body.enabled ?? true,
          severity: body.severity,
          condition: body.condition,
        })
        await recordAudit(tx, {
          ...auditActor(p),
          action: 'alert_rule.create',
          targetType: 'alert_rule',
          targetId: r.id,
          request: c.get('request'),
          details: { before: null, after: ruleView(r) },
        })
        return r
      })
      return c.json(ruleView(row), 201)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/alert-rules',
      operationId: 'listAlertRules',
      summary: 'List custom alert rules (newest first)',
      tags: ruleTags,
      permission: 'manage',
      query: PageQuery,
      responses: { 200: { description: 'A page of alert rules', schema: AlertRuleList } },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const rows = await withOrg(sql, c.get('principal').orgId, (tx) => listRules(tx, limit + 1, decodeCursor(query.cursor)))
      const { page, next } = paginate(rows, limit)
      return c.json({ alert_rules: page.map(ruleView), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/alert-rules/:id',
      operationId: 'getAlertRule',
      summary: 'Get one custom alert rule',
      tags: ruleTags,
      permission: 'manage',
      params: IdParams,
      responses: { 200: { description: 'The rule', schema: AlertRuleView } },
    },
    async (c, { params }) => {
      const id = ruleId(params.id)
      const row = await withOrg(sql, c.get('principal').orgId, (tx) => getRule(tx, id))
      if (!row) throw ruleNotFound()
      return c.json(ruleView(row))
    },
  )

  routes.add(
    {
      method: 'patch',
      path: '/v1/alert-rules/:id',
      operationId: 'updateAlertRule',
      summary: 'Change a rule: name, description, enabled, severity, condition (fields given only)',
      tags: ruleTags,
      permission: 'manage',
      params: IdParams,
      body: UpdateAlertRuleBody,
      bodyLimit: RULE_BODY_LIMIT,
      responses: { 200: { description: 'The updated rule', schema: AlertRuleView } },
    },
    async (c, { params, body }) => {
      const id = ruleId(params.id)
      const name = body.name === undefined ? undefined : requireName(body.name)
      if (body.condition !== undefined) validCondition(body.condition)
      const p = c.get('principal')
      const row = await withOrg(sql, p.orgId, async (tx) => {
        const before = await getRule(tx, id, true)
        const r = before && (await updateRule(tx, id, { ...body, name }))
        if (before && r) {
          await recordAudit(tx, {
            ...auditActor(p),
            action: 'alert_rule.update',
            targetType: 'alert_rule',
            targetId: r.id,
            request: c.get('request'),
            details: { fields: Object.keys(body).sort(), before: ruleView(before), after: ruleView(r) },
          })
        }
        return r
      })
      if (!row) throw ruleNotFound()
      return c.json(ruleView(row))
    },
  )

  routes.add(
    {
      method: 'delete',
      path: '/v1/alert-rules/:id',
      operationId: 'deleteAlertRule',
      summary: 'Delete a rule; its past alerts stay (their rule_id becomes null, rule_key remains)',
      tags: ruleTags,
      permission: 'manage',
      params: IdParams,
      responses: { 204: { description: 'Deleted' } },
    },
    async (c, { params }) => {
      const id = ruleId(params.id)
      const p = c.get('principal')
      const deleted = await withOrg(sql, p.orgId, async (tx) => {
        const r = await deleteRule(tx, id)
        if (r) {
          await recordAudit(tx, {
            ...auditActor(p),
            action: 'alert_rule.delete',
            targetType: 'alert_rule',
            targetId: id,
            request: c.get('request'),
            details: { before: ruleView(r), after: null },
          })
        }
        return r
      })
      if (!deleted) throw ruleNotFound()
      return c.body(null, 204)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/alerts',
      operationId: 'listAlerts',
      summary: 'List alerts, newest first, with filters (status, severity, session_key, rule_key, since, machine_id, agent_id)',
      tags: alertTags,
      permission: 'read',
      query: AlertListQuery,
      responses: { 200: { description: 'A page of alerts', schema: AlertList } },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const { limit: _l, cursor, ...filters } = query
      const rows = await withOrg(readSql, c.get('principal').orgId, (tx) =>
        listAlerts(tx, filters, limit + 1, decodeCursor(cursor)),
      )
      const { page, next } = paginate(rows, limit)
      return c.json({ alerts: page.map(alertView), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/alerts/:id',
      operationId: 'getAlert',
      summary: 'One alert with its triggering event, its session and the events of the session that led up to it',
      tags: alertTags,
      permission: 'read',
      params: IdParams,
      query: AlertDetailQuery,
      responses: { 200: { description: 'The alert', schema: AlertDetail } },
    },
    async (c, { params, query }) => {
      const id = params.id.toLowerCase()
      if (!isUuid(id)) throw alertNotFound()
      const preceding = query.preceding ?? 20
      // One transaction: the alert, its event and its session are one consistent snapshot.
      const found = await withOrg(readSql, c.get('principal').orgId, async (tx) => {
        const alert = await getAlert(tx, id)
        if (!alert) return null
        const event = alert.action_id ? await getAction(tx, alert.action_id) : null
        const session = alert.session_key ? await sessionByKey(tx, alert.session_key) : null
        // Not stored yet: the events up to when the client says it happened (else when it alerted).
        const instant = typeof alert.context.occurred_at === 'string' ? alert.context.occurred_at : alert.created_key
        const until = event ? { at: event.occurred_key, id: event.id } : { instant }
        const before = alert.session_key && preceding > 0 ? await precedingEvents(tx, alert.session_key, until, preceding) : []
        return { alert, event, session, before }
      })
      if (!found) throw alertNotFound()
      return c.json({
        ...alertView(found.alert),
        event: found.event ? eventView(found.event) : null,
        session: found.session ? sessionView(found.session) : null,
        preceding_events: found.before.map(eventView),
      })
    },
  )

  routes.add(
    {
      method: 'patch',
      path: '/v1/alerts/:id',
      operationId: 'updateAlert',
      summary: 'Triage an alert: set its status (open, acknowledged, resolved, dismissed)',
      tags: alertTags,
      permission: 'triage',
      params: IdParams,
      body: UpdateAlertBody,
      responses: { 200: { description: 'The updated alert', schema: AlertView } },
    },
    async (c, { params, body }) => {
      const id = params.id.toLowerCase()
      if (!isUuid(id)) throw alertNotFound()
      const p = c.get('principal')
      const row = await withOrg(sql, p.orgId, async (tx) => {
        const r = await setAlertStatus(tx, id, body.status)
        if (r && r.previous !== body.status) {
          await recordAudit(tx, {
            ...auditActor(p),
            action: 'alert.update',
            targetType: 'alert',
            targetId: id,
            request: c.get('request'),
            details: { from: r.previous, to: body.status },
          })
          // Last: the console's live stream hears of it at commit (issue 12).
          await recordLive(tx, 'alert', [id])
        }
        return r
      })
      if (!row) throw alertNotFound()
      if (row.previous !== body.status) deps.live.ring([p.orgId])
      return c.json(alertView(row))
    },
  )
}

const ruleNotFound = () => new NotFoundError('No alert rule with that id in this organization.')
const alertNotFound = () => new NotFoundError('No alert with that id in this organization.')

function ruleId(raw: string): string {
  const id = raw.toLowerCase()
  if (!isUuid(id)) throw ruleNotFound()
  return id
}

/** The semantic checks TypeBox cannot express (op/field/value agreement, depth, size). */
function validCondition(condition: unknown): void {
  const compiled = compileCondition(condition)
  if (!compiled.ok) throw new ValidationError(compiled.errors, 'The rule condition is invalid.')
}

function ruleView(r: RuleRow) {
  return {
    id: r.id,
    rule_key: `rule:${r.id}`,
    name: r.name,
    description: r.description,
    enabled: r.enabled,
    severity: r.severity,
    condition: r.condition,
    created_at: r.created_at.toISOString(),
    updated_at: r.updated_at.toISOString(),
  }
}
