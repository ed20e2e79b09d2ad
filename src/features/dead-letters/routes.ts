/**
 * @module features/dead-letters/routes
 * `GET /v1/dead-letters`, `GET /v1/dead-letters/{id}`, `POST /v1/dead-letters/{id}/redrive` and
 * `POST /v1/dead-letters/redrive`: an org admin sees the bus messages its consumers set aside
 * (issue 14: one poison message used to stall the org's derived state forever) and hands them
 * back once the cause is fixed (docs/dead-letters.md). Admin scope; everything runs in the
 * caller's org under RLS.
 */
import type { Context } from 'hono'
import { NotFoundError } from '../../errors.ts'
import { decodeCursor, encodeCursor } from '../../http/pagination.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import type { AppEnv } from '../../http/request-context.ts'
import { withOrg, type Sql, type Tx } from '../../infra/db.ts'
import { registerDeadLetterGauge, type Metrics } from '../../infra/metrics.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import type { Bus } from '../../bus/bus.ts'
import { deadLettersWaiting, getDeadLetter, listDeadLetters, redriveAll, redriveOne, type DeadLetterRow } from './repo.ts'
import {
  DeadLetterDetail,
  DeadLetterIdParams,
  DeadLetterList,
  DeadLetterListQuery,
  RedriveAllBody,
  RedriveResult,
} from './schema.ts'

/** Dead letters handed back per `redrive` call; the answer says how many remain. */
const REDRIVE_ALL_LIMIT = 200

export function mountDeadLetters(routes: RouteRegistry, deps: { sql: Sql; bus: Bus; metrics: Metrics }): void {
  const { sql, bus } = deps
  registerDeadLetterGauge(deps.metrics.registry, () => deadLettersWaiting(sql))
  const tags = ['dead-letters']

  routes.add(
    {
      method: 'get',
      path: '/v1/dead-letters',
      operationId: 'listDeadLetters',
      summary: 'List bus messages set aside after their last failed attempt (newest first)',
      tags,
      permission: 'manage',
      query: DeadLetterListQuery,
      responses: { 200: { description: 'A page of dead letters', schema: DeadLetterList } },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const after = decodeCursor(query.cursor)
      const rows = await withOrg(sql, c.get('principal').orgId, (tx) =>
        listDeadLetters(tx, { limit: limit + 1, after, ...(query.consumer ? { consumer: query.consumer } : {}) }),
      )
      const page = rows.slice(0, limit)
      const last = page.at(-1)
      const next = rows.length > limit && last ? encodeCursor({ at: last.created_key, id: last.id }) : null
      return c.json({ dead_letters: page.map(view), next_cursor: next })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/dead-letters/:id',
      operationId: 'getDeadLetter',
      summary: 'One dead letter, with the message it carries',
      tags,
      permission: 'manage',
      params: DeadLetterIdParams,
      responses: { 200: { description: 'The dead letter', schema: DeadLetterDetail } },
    },
    async (c, { params }) => {
      const row = await withOrg(sql, c.get('principal').orgId, (tx) => getDeadLetter(tx, params.id))
      if (!row) throw new NotFoundError('No dead letter with that id in this organization.')
      return c.json({ ...view(row), payload: row.payload })
    },
  )

  const audit = (c: Context<AppEnv>) => async (tx: Tx, row: DeadLetterRow) => {
    await recordAudit(tx, {
      ...auditActor(c.get('principal')),
      action: 'dead_letter.redrive',
      targetType: 'bus_dead_letter',
      targetId: row.id,
      request: c.get('request'),
      details: { consumer: row.consumer, message_id: row.message_id },
    })
  }

  routes.add(
    {
      method: 'post',
      path: '/v1/dead-letters/:id/redrive',
      operationId: 'redriveDeadLetter',
      summary: 'Hand one dead letter back to the consumer that failed it',
      tags,
      permission: 'manage',
      params: DeadLetterIdParams,
      responses: { 200: { description: 'Handed back (it is no longer a dead letter)', schema: RedriveResult } },
    },
    async (c, { params }) => {
      const org = c.get('principal').orgId
      const row = await redriveOne(sql, bus, org, params.id, audit(c))
      if (!row) throw new NotFoundError('No dead letter with that id in this organization.')
      const remaining = await withOrg(sql, org, (tx) => tx<{ n: number }[]>`select count(*)::int as n from bus_dead_letters`)
      return c.json({ redriven: 1, remaining: remaining[0]!.n })
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/v1/dead-letters/redrive',
      operationId: 'redriveDeadLetters',
      summary: `Hand the org's dead letters back to their consumers, oldest first (at most ${REDRIVE_ALL_LIMIT} per call)`,
      tags,
      permission: 'manage',
      body: RedriveAllBody,
      responses: { 200: { description: 'How many were handed back and how many remain', schema: RedriveResult } },
    },
    async (c, { body }) => {
      const out = await redriveAll(sql, bus, c.get('principal').orgId, {
        limit: REDRIVE_ALL_LIMIT,
        onRedriven: audit(c),
        ...(body.consumer ? { consumer: body.consumer } : {}),
      })
      return c.json(out)
    },
  )
}

function view(r: DeadLetterRow) {
  return {
    id: r.id,
    consumer: r.consumer,
    // The queue URL names the AWS account: operators see it (CLI), org admins do not need it.
    source: r.source === 'local' ? ('local' as const) : ('sqs' as const),
    message_id: r.message_id,
    kind: r.kind,
    events: r.events,
    attempts: r.attempts,
    error_class: r.error_class,
    error_message: r.error_message,
    first_failed_at: r.first_failed_at.toISOString(),
    last_failed_at: r.last_failed_at.toISOString(),
    created_at: r.created_at.toISOString(),
  }
}
