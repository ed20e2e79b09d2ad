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
import type { CredentialResolver } from '../../auth/credentials.ts'
import { hashToken, isOpaqueToken } from '../../auth/opaque/format.ts'
import { BadRequestError, RateLimitedError } from '../../errors.ts'
import { presentedCredential } from '../../http/auth.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { allows } from '../../http/permissions.ts'
import { withOrg, type Sql } from '../../infra/db.ts'
import { resolveMachine } from '../machines/service.ts'
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

/** Chunks a slow client may leave unread before its stream is closed (it resumes on reconnect). */
const MAX_QUEUED = 64
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
      const machineId = await resolveMachine(deps, principal, params.id)
      const { after, machineTags } = await withOrg(deps.sql, principal.orgId, async (tx) => {
        const [m] = await tx<{ tags: string[] }[]>`select tags from machines where id = ${machineId}`
        return { after: resume === undefined ? await lastSeq(tx) : Number(resume.trim()), machineTags: m?.tags ?? [] }
      })
      const { body, sink, onEnd } = eventStream()
      const stream: HeldStream = {
        orgId: principal.orgId,
        machineId,
        tokenHash: isOpaqueToken(raw) ? hashToken(raw).toString('hex') : null,
        async stillValid() {
          const out = await deps.resolver.authenticate(raw)
          return out.principal !== null && out.principal.orgId === principal.orgId && allows(out.principal, 'machine')
        },
        sink,
        after,
        configVersion: null,
        tags: machineTags,
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
      return new Response(body, {
        headers: {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-cache, no-transform',
          // Proxies that buffer (nginx) would hold every event back.
          'x-accel-buffering': 'no',
        },
      })
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
      const machineId = await resolveMachine(deps, principal, params.id)
      const after = query.after === undefined ? 0 : Number(query.after)
      const out = await withOrg(deps.sql, principal.orgId, async (tx) => {
        const [m] = await tx<{ tags: string[] }[]>`select tags from machines where id = ${machineId}`
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
        const s = { machineId, sink: collect, after, configVersion: null, tags: m?.tags ?? [] }
        await deliver(tx, s, events, oldest)
        return { s, updates, gap, config: config as MachineConfig | null, hasMore: events.length === PAGE }
      })
      const { config } = out
      return c.json({
        machine_id: machineId,
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

/** A text/event-stream body and the sink that writes to it (SSE framing, a bounded queue). */
const encoder = new TextEncoder()

function eventStream(): { body: ReadableStream<Uint8Array>; sink: StreamSink; onEnd(fn: () => void): void } {
  let controller: ReadableStreamDefaultController<Uint8Array> | null = null
  let open = true
  const ends: (() => void)[] = []
  const end = () => {
    if (!open) return
    open = false
    for (const fn of ends) fn()
  }
  const write = (text: string): boolean => {
    if (!open || !controller) return false
    if ((controller.desiredSize ?? 0) < -MAX_QUEUED) {
      sink.close()
      return false
    }
    controller.enqueue(encoder.encode(text))
    return true
  }
  const sink: StreamSink = {
    send: (event, id, data) => write(`${id === null ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`),
    comment: (text) => write(`: ${text}\n\n`),
    close() {
      if (!open) return
      try {
        controller?.close()
      } catch {
        // Already closed by the client.
      }
      end()
    },
  }
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c
      // A reconnecting client waits 1 s, not its default 3 s.
      c.enqueue(encoder.encode('retry: 1000\n\n'))
    },
    cancel: end,
  })
  return { body, sink, onEnd: (fn) => ends.push(fn) }
}
