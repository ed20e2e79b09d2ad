/**
 * @module features/sessions/routes
 * The sessions read API (issue 9, SPEC §7.4, docs/sessions.md): `GET /v1/sessions` with filters,
 * one session with its direct children, its events in time order, its children page by page,
 * and its whole delegation tree. A session is named by its UUID or by the edge session key; an
 * unknown or malformed id, or another org's, answers 404 (issue 9: one answer everywhere).
 * `GET /v1/sessions/{id}/timeline` belongs to the causal chain (features/chain).
 */
import { NotFoundError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, paginate, PageQuery } from '../../http/pagination.ts'
import { withOrg, type Sql, type Tx } from '../../infra/db.ts'
import { eventView } from '../events/view.ts'
import { ancestorsOf, childrenOf, countChildren, listSessions, sessionEvents, treeOf, type TreeRow } from './repo.ts'
import {
  DETAIL_CHILDREN,
  MAX_ANCESTORS,
  SessionChildList,
  SessionDetail,
  SessionEventList,
  SessionIdParams,
  SessionList,
  SessionListQuery,
  SessionTree,
  SessionTreeQuery,
  TREE_MAX_NODES,
} from './schema.ts'
import { findSession, sessionView, type SessionRow, type SessionView } from './view.ts'

const tags = ['sessions']
const byStarted = (r: SessionRow) => r.started_key

export function mountSessions(routes: RouteRegistry, deps: { sql: Sql }): void {
  const { sql } = deps

  routes.add(
    {
      method: 'get',
      path: '/v1/sessions',
      operationId: 'listSessions',
      summary: 'List sessions, newest first, with filters (state, platform, root_only, since, machine_id, agent_id)',
      tags,
      permission: 'read',
      query: SessionListQuery,
      responses: { 200: { description: 'A page of sessions', schema: SessionList } },
    },
    async (c, { query }) => {
      const { limit = 50, cursor, ...filters } = query
      const after = decodeCursor(cursor)
      const rows = await withOrg(sql, c.get('principal').orgId, (tx) => listSessions(tx, filters, limit + 1, after))
      const { page, next } = paginate(rows, limit, byStarted)
      return c.json({ sessions: page.map(sessionView), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/sessions/:id',
      operationId: 'getSession',
      summary: 'One session (by UUID or session key) with its risk summary and direct children',
      tags,
      permission: 'read',
      params: SessionIdParams,
      responses: { 200: { description: 'The session', schema: SessionDetail } },
    },
    async (c, { params }) => {
      const body = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const s = await sessionOr404(tx, params.id)
        const children = await childrenOf(tx, s.id, DETAIL_CHILDREN, null)
        // Counted only when the page is full: the common case (a few sub-agents) costs no query.
        const count = children.length < DETAIL_CHILDREN ? children.length : await countChildren(tx, s.id)
        return {
          ...sessionView(s),
          children: children.map(sessionView),
          children_count: count,
          children_truncated: count > children.length,
        }
      })
      return c.json(body)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/sessions/:id/events',
      operationId: 'listSessionEvents',
      summary: "A session's events in timestamp order (oldest first)",
      tags,
      permission: 'read',
      params: SessionIdParams,
      query: PageQuery,
      responses: { 200: { description: 'A page of the session\u2019s events', schema: SessionEventList } },
    },
    async (c, { params, query }) => {
      const limit = query.limit ?? 50
      const after = decodeCursor(query.cursor)
      const rows = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const s = await sessionOr404(tx, params.id)
        return sessionEvents(tx, s.session_key, limit + 1, after)
      })
      const { page, next } = paginate(rows, limit, (r) => r.occurred_key)
      return c.json({ events: page.map(eventView), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/sessions/:id/children',
      operationId: 'listSessionChildren',
      summary: "A session's direct children (sub-agents, delegated tasks), oldest first",
      tags,
      permission: 'read',
      params: SessionIdParams,
      query: PageQuery,
      responses: { 200: { description: 'A page of child sessions', schema: SessionChildList } },
    },
    async (c, { params, query }) => {
      const limit = query.limit ?? 50
      const after = decodeCursor(query.cursor)
      const rows = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const s = await sessionOr404(tx, params.id)
        return childrenOf(tx, s.id, limit + 1, after)
      })
      const { page, next } = paginate(rows, limit, byStarted)
      return c.json({ children: page.map(sessionView), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/sessions/:id/tree',
      operationId: 'getSessionTree',
      summary: 'The delegation tree below a session, to any depth, with the ancestors above it (bounded)',
      tags,
      permission: 'read',
      params: SessionIdParams,
      query: SessionTreeQuery,
      responses: { 200: { description: 'The tree rooted at the requested session', schema: SessionTree } },
    },
    async (c, { params, query }) => {
      const maxNodes = query.max_nodes ?? TREE_MAX_NODES
      const body = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const s = await sessionOr404(tx, params.id)
        const nodes = await treeOf(tx, s.id, maxNodes)
        const above = await ancestorsOf(tx, s.id, MAX_ANCESTORS)
        const kept = nodes.slice(0, maxNodes)
        return {
          root: buildTree(s.id, kept),
          ancestors: above.slice(0, MAX_ANCESTORS).reverse().map(sessionView),
          node_count: kept.length,
          truncated: nodes.length > maxNodes || above.length > MAX_ANCESTORS,
        }
      })
      return c.json(body)
    },
  )
}

async function sessionOr404(tx: Tx, id: string): Promise<SessionRow> {
  const s = await findSession(tx, id)
  if (!s) throw new NotFoundError('No session with that id or session key in this organization.')
  return s
}

type TreeNode = SessionView & { depth: number; children: TreeNode[] }

/**
 * Nests the walked rows (level by level, siblings oldest first: ./repo.ts treeOf) under their
 * parents; a cut tree keeps its `max` shallowest sessions, so it loses its deepest, never a
 * middle level.
 */
function buildTree(rootId: string, rows: TreeRow[]): TreeNode {
  const nodes = new Map<string, TreeNode>()
  for (const row of rows) {
    const node = { ...sessionView(row), depth: row.depth, children: [] }
    nodes.set(row.id, node)
    if (row.id !== rootId && row.parent_id !== null) nodes.get(row.parent_id)?.children.push(node)
  }
  return nodes.get(rootId)!
}
