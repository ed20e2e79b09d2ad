/**
 * @module features/chain/routes
 * The causal chain, read (issue 9, docs/causal-chain.md): `GET /v1/events/{id}/chain` answers
 * "which tool call led to this?" and "what did it lead to?" in one request, and
 * `GET /v1/sessions/{id}/timeline` shows a session with OS events nested under the tool call and
 * process that caused them. Both need the `read` scope and run under the org's RLS. A malformed,
 * unknown or other org's id answers 404, as on every read (issue 9).
 */
import { NotFoundError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, encodeCursor } from '../../http/pagination.ts'
import { isUuid, withOrg, type Sql } from '../../infra/db.ts'
import { eventView } from '../events/view.ts'
import { findSession, sessionView } from '../sessions/view.ts'
import { getEvent } from '../events/repo.ts'
import { ancestorsOf, descendantsOf, nest, timelinePage } from './repo.ts'
import { EventChain, IdParams, NoQuery, SessionIdParams, SessionTimeline, TimelineQuery } from './schema.ts'

const eventNotFound = () => new NotFoundError('No event with that id in this organization.')
const sessionNotFound = () => new NotFoundError('No session with that id or key in this organization.')

export function mountChain(routes: RouteRegistry, deps: { sql: Sql }): void {
  const { sql } = deps

  routes.add(
    {
      method: 'get',
      path: '/v1/events/:id/chain',
      operationId: 'getEventChain',
      summary: 'The causal chain of an event: its session, what caused it (tool call → processes) and what it caused',
      tags: ['events'],
      permission: 'read',
      params: IdParams,
      query: NoQuery,
      responses: { 200: { description: 'The event with its ancestors and effects', schema: EventChain } },
    },
    async (c, { params }) => {
      const id = params.id.toLowerCase()
      if (!isUuid(id)) throw eventNotFound()
      const body = await withOrg(sql, c.get('principal').orgId, async (tx) => {
        const event = await getEvent(tx, id)
        if (!event) return null
        const ancestors = await ancestorsOf(tx, event)
        const { rows, truncated } = await descendantsOf(tx, [event])
        const session = event.session_key ? await findSession(tx, event.session_key) : null
        return {
          event: eventView(event),
          session: session ? sessionView(session) : null,
          ancestors: ancestors.map(eventView),
          effects: nest([event], rows)[0]!.children,
          truncated,
        }
      })
      if (!body) throw eventNotFound()
      return c.json(body)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/sessions/:id/timeline',
      operationId: 'getSessionTimeline',
      summary: 'A session in time order with OS events nested under the tool call and process that caused them',
      tags: ['sessions'],
      permission: 'read',
      params: SessionIdParams,
      query: TimelineQuery,
      responses: { 200: { description: 'A page of the timeline', schema: SessionTimeline } },
    },
    async (c, { params, query }) => {
      const limit = query.limit ?? 50
      const after = decodeCursor(query.cursor)
      const body = await withOrg(
        sql,
        c.get('principal').orgId,
        async (tx) => {
          const session = await findSession(tx, params.id)
          if (!session) return null
          const page = await timelinePage(tx, session.session_key, limit, after)
          return {
            session: sessionView(session),
            items: nest(page.roots, page.descendants),
            next_cursor: page.next ? encodeCursor(page.next) : null,
            truncated: page.truncated,
          }
          // Statements whose index is fixed by their shape: planned once, not every request.
        },
        { genericPlans: true },
      )
      if (!body) throw sessionNotFound()
      return c.json(body)
    },
  )
}
