/**
 * @module features/live/routes
 * The console's live stream (issue 12; docs/live.md):
 *
 *   GET /v1/live?topics=events,alerts,fleet   Server-Sent Events: `ready`, then `event`, `alert`,
 *                                              `approval`, `fleet`, `delivery` and `gap` as they happen
 *
 * Permission `read`: people and read credentials, never a machine's (docs/rbac.md). No resume:
 * a console refetches its lists on `ready` and on `gap`, which is simpler and never wrong.
 */
import type { CredentialResolver, Principal } from '../../auth/credentials.ts'
import { hashToken, isOpaqueToken } from '../../auth/opaque/format.ts'
import { RateLimitedError } from '../../errors.ts'
import { ORG_HEADER, presentedCredential } from '../../http/auth.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { allows } from '../../http/permissions.ts'
import { eventStream, SSE_HEADERS } from '../../http/sse.ts'
import { MAX_QUEUED_BYTES, TooManyLiveStreamsError, type LiveHub, type LiveStream } from './hub.ts'
import { LiveQuery, parseTopics } from './schema.ts'

export interface LiveDeps {
  hub: LiveHub
  resolver: CredentialResolver
}

export function mountLive(routes: RouteRegistry, deps: LiveDeps): void {
  routes.add(
    {
      method: 'get',
      path: '/v1/live',
      operationId: 'liveStream',
      summary:
        "Server-Sent Events for the console: the org's new events, alerts, approval requests and fleet changes as they commit",
      tags: ['live'],
      permission: 'read',
      query: LiveQuery,
      responses: {
        200: {
          description:
            'An event stream (docs/live.md): `ready` first, then `event`, `alert`, `approval`, `fleet`, `delivery` and `gap` events ' +
            'as they happen; a `: keep-alive` comment every 15 s',
          contentType: 'text/event-stream',
        },
        429: { description: "The org's live stream bound on this instance is reached" },
      },
    },
    async (c, { query }) => {
      const topics = parseTopics(query.topics)
      const principal = c.get('principal')
      const raw = presentedCredential(c)
      const org = c.req.header(ORG_HEADER)
      const { body, sink, onEnd } = eventStream({ maxQueuedBytes: MAX_QUEUED_BYTES, whenFull: 'refuse' })
      const stream: LiveStream = {
        orgId: principal.orgId,
        topics,
        tokenHash: isOpaqueToken(raw) ? hashToken(raw).toString('hex') : null,
        // A person is one credential however many sessions they hold (`tokenId` is the member id).
        credential: `${principal.kind}:${principal.tokenId}`,
        stillValid: async () => stillReads(deps.resolver, raw, org, principal),
        sink,
        logSeq: 0,
        fleetSeq: 0,
        missed: new Set(),
        behindSince: null,
      }
      c.req.raw.signal.addEventListener('abort', () => sink.close(), { once: true })
      let release: () => void
      try {
        release = await deps.hub.add(stream)
      } catch (err) {
        sink.close()
        if (err instanceof TooManyLiveStreamsError) {
          throw new RateLimitedError('This organization holds as many live streams as this instance allows.', 30)
        }
        throw err
      }
      onEnd(() => release())
      if (!sink.open) release()
      return new Response(body, { headers: SSE_HEADERS })
    },
  )
}

/**
 * Whether the credential still reads this org: authenticated again (an opaque token not counted
 * as a use: holding a stream is not a request), in the same org, with `read`. A revoked or
 * expired token, or a person removed from the org, no longer does.
 */
async function stillReads(resolver: CredentialResolver, raw: string, org: string | undefined, was: Principal): Promise<boolean> {
  const again = isOpaqueToken(raw)
    ? await resolver.resolve(raw, null, false)
    : (await resolver.authenticate(raw, { org })).principal
  return again !== null && again.orgId === was.orgId && allows(again, 'read')
}
