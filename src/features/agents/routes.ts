/**
 * @module features/agents/routes
 * The agents read API (issue 9, docs/sessions.md): `GET /v1/agents` (most recently seen first,
 * filters platform, machine_id, since) and `GET /v1/agents/{id}`. The agent id is the agent KEY
 * that events carry, grouped across machines; the UUID of one stored agent row names its key too.
 * An unknown or malformed id, or another org's, answers 404 (issue 9).
 */
import { NotFoundError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, encodeCursor } from '../../http/pagination.ts'
import { withOrg, type Sql } from '../../infra/db.ts'
import { agentsByKey, pageAgents, resolveAgentKey, type AgentRow } from './repo.ts'
import { AgentIdParams, AgentList, AgentListQuery, AgentView } from './schema.ts'
import type { Static } from '@sinclair/typebox'

const tags = ['agents']

export function mountAgents(routes: RouteRegistry, deps: { sql: Sql }): void {
  const { sql } = deps

  routes.add(
    {
      method: 'get',
      path: '/v1/agents',
      operationId: 'listAgents',
      summary: 'List agents (grouped by agent key across machines), most recently seen first',
      tags,
      permission: 'read',
      query: AgentListQuery,
      responses: { 200: { description: 'A page of agents', schema: AgentList } },
    },
    async (c, { query }) => {
      const { limit = 50, cursor, ...filters } = query
      const after = decodeCursor(cursor)
      const { keys, agents } = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const keys = await pageAgents(tx, filters, limit + 1, after)
        const page = keys.slice(0, limit).map((k) => k.agent_key)
        return { keys, agents: page.length ? await agentsByKey(tx, page) : [] }
      })
      const page = keys.slice(0, limit)
      const last = page.at(-1)
      // pageAgents explains the cursor: (latest last_seen_at, id of the row seen then).
      const next = keys.length > limit && last ? encodeCursor({ at: last.last_seen_key, id: last.cursor_id }) : null
      const byKey = new Map(agents.map((r) => [r.agent_key, r]))
      // In page order; a key whose rows were purged between the two reads is left out.
      const views = page.flatMap((k) => {
        const row = byKey.get(k.agent_key)
        return row ? [agentView(row)] : []
      })
      return c.json({ agents: views, next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/agents/:id',
      operationId: 'getAgent',
      summary: 'One agent by its key (URL-encoded) or a stored agent UUID: machines, platforms, counts, risk',
      tags,
      permission: 'read',
      params: AgentIdParams,
      responses: { 200: { description: 'The agent', schema: AgentView } },
    },
    async (c, { params }) => {
      const row = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const key = await resolveAgentKey(tx, params.id)
        if (key === null) return null
        const [r] = await agentsByKey(tx, [key])
        return r ?? null
      })
      if (!row) throw new NotFoundError('No agent with that key or id in this organization.')
      return c.json(agentView(row))
    },
  )
}

function agentView(r: AgentRow): Static<typeof AgentView> {
  const riskCount = Number(r.risk_count ?? 0)
  return {
    id: r.agent_key,
    name: r.name,
    platforms: [...r.platforms].sort(),
    machines: [...r.machines].sort(
      (a, b) => (a.hostname ?? '').localeCompare(b.hostname ?? '') || a.machine_id.localeCompare(b.machine_id),
    ),
    first_seen_at: r.first_seen_at.toISOString(),
    last_seen_at: r.last_seen_at.toISOString(),
    event_count: Number(r.event_count),
    session_count: Number(r.session_count),
    risk: {
      max_risk: r.risk_max,
      avg_risk: riskCount > 0 ? Math.round((Number(r.risk_sum) / riskCount) * 100) / 100 : null,
      blocked_count: Number(r.blocked_count ?? 0),
    },
  }
}
