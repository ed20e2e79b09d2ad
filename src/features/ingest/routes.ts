/**
 * @module features/ingest/routes
 * `POST /v1/ingest` and `POST /v1/events/ingest` (`{"events":[…]}`, v2 or API-reference items)
 * and `POST /v1/sessions/ingest` (one lifecycle event). Any credential with the `ingest` scope.
 * 200 when every item was accepted or a duplicate; 207 when some were rejected; 2xx only once
 * the accepted events are durable.
 */
import { Type } from '@sinclair/typebox'
import type { MiddlewareHandler } from 'hono'
import { AppError, BadRequestError } from '../../errors.ts'
import { readJson } from '../../http/body.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import type { AppEnv } from '../../http/request-context.ts'
import { normalizeIngestItem } from './events.ts'
import { SessionLifecycleBody } from './lifecycle.ts'
import { acceptEvents, acceptLifecycle, type BatchOutcome, type IngestDeps } from './service.ts'

export const MAX_BATCH_EVENTS = 500
/** 10 MiB, counted on the decoded bytes actually received. */
export const MAX_BATCH_BYTES = 10 * 1024 * 1024

const Envelope = Type.Object({
  events: Type.Array(Type.Object({}, { additionalProperties: true }), {
    maxItems: MAX_BATCH_EVENTS,
    description: 'schema_version 2 events (SPEC §8.2) or API-reference items (§8.3); unknown fields are kept',
  }),
})

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

/** The `{"events":[…]}` envelope: anything else is a 400; more than 500 events a 413. */
export function eventsOf(body: unknown): unknown[] {
  if (body === null || typeof body !== 'object' || Array.isArray(body) || !Array.isArray((body as { events?: unknown }).events)) {
    throw new BadRequestError('The body must be {"events": [ … ]}.', [{ path: '/events', message: 'must be an array' }])
  }
  const events = (body as { events: unknown[] }).events
  if (events.length > MAX_BATCH_EVENTS) {
    throw new AppError(413, 'too_many_events', `At most ${MAX_BATCH_EVENTS} events per request (got ${events.length}).`, {
      extensions: { limit_events: MAX_BATCH_EVENTS },
    })
  }
  return events
}

export function batchBody(out: BatchOutcome) {
  return {
    ingested: out.accepted + out.duplicates,
    accepted: out.accepted,
    duplicates: out.duplicates,
    rejected: out.rejected,
    results: out.results,
  }
}

export function mountIngest(
  routes: RouteRegistry,
  deps: IngestDeps & { ingest: MiddlewareHandler<AppEnv> },
): void {
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
        auth: true,
        rawBody: Envelope,
        responses: {
          200: { description: 'Every event accepted or already held', schema: BatchResponse },
          207: { description: 'Some events rejected (see results)', schema: BatchResponse },
        },
      },
      [deps.ingest],
      async (c) => {
        const events = eventsOf(await readJson(c.req.raw, MAX_BATCH_BYTES))
        const now = Date.now()
        const items = events.map((e, i) => normalizeIngestItem(e, `/events/${i}`, now))
        const out = await acceptEvents(deps, c.get('principal').orgId, items, null)
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
      auth: true,
      body: SessionLifecycleBody,
      responses: { 200: { description: 'Durably recorded', schema: Type.Object({ ok: Type.Literal(true) }) } },
    },
    [deps.ingest],
    async (c, { body }) => {
      await acceptLifecycle(deps, c.get('principal').orgId, body)
      return c.json({ ok: true as const })
    },
  )
}
