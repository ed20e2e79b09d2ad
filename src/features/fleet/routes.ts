/**
 * @module features/fleet/routes
 * The push half of the fleet loop (issue 11; docs/fleet-stream.md):
 *
 *   GET /v1/machines/{id}/stream   Server-Sent Events, as the machine: `policy` (its new policy
 *                                  hash, domains and what changed), `signature`, `override`
 *   GET /v1/machines/{id}/updates  the same events by polling, for a daemon without a stream
 *
 * A stream resumes after `Last-Event-ID` from the org's log, so a reconnect loses nothing the
 * log still keeps (FLEET_LOG_DAYS); the first event of every stream is its `policy`, so a daemon
 * is current as soon as it connects, whatever it missed.
 */
import type { CredentialResolver, Principal } from '../../auth/credentials.ts'
import { hashToken } from '../../auth/opaque/format.ts'
import { BadRequestError, ForbiddenError, RateLimitedError } from '../../errors.ts'
import { presentedCredential } from '../../http/auth.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { allows } from '../../http/permissions.ts'
import { eventStream, SSE_HEADERS } from '../../http/sse.ts'
import { withOrg, type Sql, type Tx } from '../../infra/db.ts'
import { machineRowOf } from '../machines/service.ts'
import { MachineParams } from '../machines/schema.ts'
import { deliver, TooManyStreamsError, type FleetHub, type HeldStream, type StreamSink } from './hub.ts'
import { fleetEventsAfter, lastSeq } from './repo.ts'
import type { MachineConfig } from '../policies/document.ts'
import { FleetUpdates, LastEventQuery, UpdatesQuery } from './schema.ts'

export interface FleetDeps {
  sql: Sql
  hub: FleetHub
  resolver: CredentialResolver
}

/**
 * Bytes a client may leave unread before its stream is closed (it resumes on reconnect): far
 * above what one pump sends (500 events), so only a client that stopped reading reaches it.
 */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024
const PAGE = 500

export function mountFleet(routes: RouteRegistry, deps: FleetDeps): void {
  const tags = ['machines']

  routes.add(
    {
      method: 'get',
      path: '/v1/machines/:id/stream',
      operationId: 'machineStream',
      summary: "Server-Sent Events: this machine's policy hash, signatures and override decisions as they happen",
      tags,
      permission: 'machine',
      params: MachineParams,
      query: LastEventQuery,
      responses: {
        200: {
          description:
            'An event stream (docs/fleet-stream.md): `policy` first, then `signature`, `override` and `policy` events as they happen; a `: keep-alive` comment every 15 s',
          contentType: 'text/event-stream',
        },
        429: { description: "The org's stream bound on this instance is reached" },
      },
    },
    async (c, { params, query }) => {
      const principal = c.get('principal')
      const raw = presentedCredential(c)
      const resume = c.req.header('last-event-id') ?? query.last_event_id
      if (resume !== undefined && !/^[0-9]{1,15}$/.test(resume.trim())) {
        throw new BadRequestError('Last-Event-ID must be the id of an event of this stream (a non-negative integer).')
      }
      const { machineId, after, machineTags, ahead } = await withOrg(deps.sql, principal.orgId, async (tx) => {
        // The log's end first: a change committed from now on is after it, and one committed
        // before (a disable) is seen by the checks below.
        const last = await lastSeq(tx)
        const m = await ownMachine(tx, principal, params.id)
        const asked = resume === undefined ? last : Number(resume.trim())
        // An id past the log's end (a restored database, a client's mistake): from the end, told.
        return { machineId: m.id, machineTags: m.tags, after: Math.min(asked, last), ahead: asked > last }
      })
      const { body, sink, onEnd } = eventStream({ maxQueuedBytes: MAX_QUEUED_BYTES, whenFull: 'close' })
      if (ahead) sink.send('gap', null, { oldest_event_id: after + 1, detail: 'Last-Event-ID is past the end of the log.' })
      const stream: HeldStream = {
        orgId: principal.orgId,
        machineId,
        tokenHash: hashToken(raw).toString('hex'),
        async stillValid() {
          // Not counted as a use: holding a stream is not a request.
          const again = await deps.resolver.resolve(raw, null, false)
          if (!again || again.orgId !== principal.orgId || !allows(again, 'machine')) return false
          // A disabled machine, or one the credential no longer holds, throws.
          return withOrg(deps.sql, principal.orgId, (tx) => ownMachine(tx, again, machineId)).then(
            () => true,
            () => false,
          )
        },
        sink,
        after,
        configVersion: null,
        tags: machineTags,
        owed: null,
      }
      let release: () => void
      try {
        release = deps.hub.add(stream)
      } catch (err) {
        if (err instanceof TooManyStreamsError) {
          throw new RateLimitedError('This organization holds as many fleet streams as this instance allows.', 30)
        }
        throw err
      }
      onEnd(() => release())
      c.req.raw.signal.addEventListener('abort', () => sink.close(), { once: true })
      return new Response(body, { headers: SSE_HEADERS })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/machines/:id/updates',
      operationId: 'machineUpdates',
      summary: "Poll what the stream pushes: this machine's configuration and its signature and override events",
      tags,
      permission: 'machine',
      params: MachineParams,
      query: UpdatesQuery,
      responses: { 200: { description: 'The configuration now and the events after `after`', schema: FleetUpdates } },
    },
    async (c, { params, query }) => {
      const principal = c.get('principal')
      const after = query.after === undefined ? 0 : Number(query.after)
      const out = await withOrg(deps.sql, principal.orgId, async (tx) => {
        const m = await ownMachine(tx, principal, params.id)
        const machineId = m.id
        const { events, oldest } = await fleetEventsAfter(tx, after, [machineId], PAGE)
        const updates: { id: number; event: string; data: unknown }[] = []
        let gap = false
        let config: MachineConfig | null = null
        const collect: StreamSink = {
          send(event, id, data) {
            if (event === 'gap') gap = true
            else if (event === 'policy') config = data as MachineConfig
            else if (id !== null) updates.push({ id, event, data })
            return true
          },
          comment: () => true,
          close() {},
        }
        const s = { machineId, sink: collect, after, configVersion: null, tags: m.tags, owed: null }
        await deliver(tx, s, events, oldest)
        // Every event of this machine up to the page's last was read, its own or not.
        s.after = Math.max(s.after, events.at(-1)?.seq ?? after)
        return { machineId, s, updates, gap, config: config as MachineConfig | null, hasMore: events.length === PAGE }
      })
      const { config } = out
      return c.json({
        machine_id: out.machineId,
        policy_hash: config?.policy_hash ?? '',
        config_version: config?.config_version ?? '',
        domains: config?.domains ?? [],
        updates: out.updates,
        last_event_id: out.s.after,
        has_more: out.hasMore,
        gap: out.gap,
      })
    },
  )
}

/**
 * The machine, when the credential is the machine's own: the service token bound to it at its
 * registration, or the deploy token that registered it (also once revoked: retired, it keeps
 * serving the machines it registered). Other credentials of the org may make the daemon's calls
 * for any machine, but not read what is addressed to one (override decisions): 403. Another
 * org's machine or an id that is not one: 404; a disabled machine: 403 (as the daemon's routes).
 */
async function ownMachine(tx: Tx, principal: Principal, rawId: string) {
  const m = await machineRowOf(tx, principal, rawId)
  const own =
    'machineId' in principal &&
    (principal.machineId === m.id || (principal.kind === 'install' && m.token_id === principal.tokenId))
  if (!own) {
    throw new ForbiddenError(
      "A machine's fleet stream is its own: use the service token it was given at registration, or the deploy token that registered it.",
    )
  }
  return m
}
