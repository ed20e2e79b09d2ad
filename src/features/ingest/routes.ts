/**
 * @module features/ingest/routes
 * `POST /v1/ingest` and `POST /v1/events/ingest` (`{"events":[…]}`, v2 or API-reference items)
 * and `POST /v1/sessions/ingest` (one lifecycle event). Any credential with the `ingest` scope.
 * 200 when every item was accepted or a duplicate; 207 when some were rejected; 2xx only once
 * the accepted events are durable. Events sent with a service token bound to a machine (minted
 * at `POST /v1/machines/register`) are that machine's (issue 9: they had none, so their alerts
 * could not say which laptop they came from); the body's optional `dropped_events` is counted as
 * the edge's drops (docs/ingest-stats.md).
 */
import { Type } from '@sinclair/typebox'
import type { RouteRegistry } from '../../http/openapi.ts'
import { readEventBatch } from './batch.ts'
import { normalizeIngestItem } from './events.ts'
import type { Principal } from '../../auth/credentials.ts'
import { IngestBatch, MAX_BATCH_EVENTS } from './schema.ts'
import { SessionLifecycleBody } from './lifecycle.ts'
import { acceptBatch, acceptLifecycle, type BatchOutcome, type IngestDeps } from './service.ts'
import { quotaHeaders } from './rate-limit.ts'

export { MAX_BATCH_EVENTS }
/** 10 MiB, counted on the decoded bytes actually received. */
export const MAX_BATCH_BYTES = 10 * 1024 * 1024

export const BatchResponse = Type.Object({
  ingested: Type.Integer({ description: 'accepted + duplicate: events the server now holds' }),
  accepted: Type.Integer(),
  duplicates: Type.Integer(),
  rejected: Type.Integer(),
  results: Type.Array(
    Type.Object({
      index: Type.Integer(),
      status: Type.Union([Type.Literal('accepted'), Type.Literal('duplicate'), Type.Literal('rejected')]),
      event_id: Type.Optional(Type.String()),
      path: Type.Optional(Type.String({ description: 'JSON Pointer of the offending value' })),
      reason: Type.Optional(Type.String()),
    }),
  ),
})

export function batchBody(out: BatchOutcome) {
  return {
    ingested: out.accepted + out.duplicates,
    accepted: out.accepted,
    duplicates: out.duplicates,
    rejected: out.rejected,
    results: out.results,
  }
}

/** The machine a credential is bound to (a registration's service token), else null. */
export function boundMachine(p: Principal): string | null {
  return p.kind === 'jwt' || p.kind === 'member' ? null : p.machineId
}

export function mountIngest(routes: RouteRegistry, deps: IngestDeps): void {
  const tags = ['ingest']
  for (const [path, operationId] of [
    ['/v1/ingest', 'ingest'],
    ['/v1/events/ingest', 'ingestEvents'],
  ] as const) {
    routes.add(
      {
        method: 'post',
        path,
        operationId,
        summary: 'Ingest a batch of events (at most 500 events and 10 MiB, gzip allowed)',
        tags,
        permission: 'ingest',
        rawBody: IngestBatch,
        responses: {
          200: { description: 'Every event accepted or already held', schema: BatchResponse },
          207: { description: 'Some events rejected (see results)', schema: BatchResponse },
        },
        // RateLimit fields on every answer of a route charged to the quota (issue 14).
        middleware: [quotaHeaders(deps.limiter)],
      },
      async (c) => {
        // Each item measured before it is parsed: a hostile one is rejected alone (issue 14).
        const batch = await readEventBatch(c.req.raw, MAX_BATCH_BYTES)
        const now = Date.now()
        // The quota is taken before the items are normalised (issue 14).
        const p = c.get('principal')
        const out = await acceptBatch(deps, p.orgId, batch, (e, base) => normalizeIngestItem(e, base, now), boundMachine(p))
        return c.json(batchBody(out), out.rejected > 0 ? 207 : 200)
      },
    )
  }

  routes.add(
    {
      method: 'post',
      path: '/v1/sessions/ingest',
      operationId: 'ingestSessionLifecycle',
      summary: 'Record a session lifecycle event (start, update, end)',
      tags,
      permission: 'ingest',
      body: SessionLifecycleBody,
      responses: { 200: { description: 'Durably recorded', schema: Type.Object({ ok: Type.Literal(true) }) } },
      middleware: [quotaHeaders(deps.limiter)],
    },
    async (c, { body }) => {
      await acceptLifecycle(deps, c.get('principal').orgId, body)
      return c.json({ ok: true as const })
    },
  )
}
