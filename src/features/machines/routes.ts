/**
 * @module features/machines/routes
 * The daemon ("machines") API of SPEC §7.1, with the status codes the public Gen-B daemon
 * accepts (§17): register 201/200, heartbeat 200, policies 200/304 with an unquoted ETag,
 * events 200, agents 200, graphs 201/200 (never 204: that daemon counts 204 as a failure).
 * Permissions `enroll` (register) and `machine` (the rest): credentials with the `ingest` scope,
 * enrollment tokens (register only), revoked deploy tokens for the machines they registered
 * (src/http/permissions.ts). A machine of another org, or a path id that is not a UUID, is a 404;
 * a disabled machine is a 403. See docs/machines.md for the decisions behind each answer.
 */
import { Type } from '@sinclair/typebox'
import type { CredentialResolver } from '../../auth/credentials.ts'
import { NotFoundError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { normalizeDaemonEvent } from '../ingest/events.ts'
import { readEventBatch } from '../ingest/batch.ts'
import { batchBody, MAX_BATCH_BYTES } from '../ingest/routes.ts'
import { DaemonEventBatch } from '../ingest/schema.ts'
import { acceptBatch, acceptEvents } from '../ingest/service.ts'
import { quotaHeaders } from '../ingest/rate-limit.ts'
import type { LiveRing } from '../live/repo.ts'
import {
  AgentsBody,
  AgentsResponse,
  EventsResponse,
  GraphsBody,
  GraphsResponse,
  HeartbeatBody,
  HeartbeatResponse,
  MachineParams,
  PolicyList,
  RegisterBody,
  RegisterResponse,
} from './schema.ts'
import { heartbeat, machinePolicies, registerMachine, replaceProcesses, resolveMachine, upsertGraphs } from './service.ts'

/** Process snapshots are small (≤ 1,000 entries); graphs carry whole raw graph objects. */
const AGENTS_BODY_BYTES = 1024 * 1024

export function mountMachines(
  routes: RouteRegistry,
  // Whatever acceptEvents needs (the ingest quota included: daemon events count against the same
  // per-org budget as /v1/ingest), the version the installer is told to fetch, and the console's
  // live stream, rung when a heartbeat or a policies fetch hands a machine a new hash (issue 12).
  deps: Parameters<typeof acceptEvents>[0] & { resolver: CredentialResolver; latestVersion: string; live: LiveRing },
): void {
  const tags = ['machines']

  routes.add(
    {
      method: 'get',
      path: '/agent/latest-version',
      operationId: 'daemonLatestVersion',
      summary: 'The daemon version to install, as plain text (the public installer asks before it downloads)',
      tags: ['installer'],
      permission: 'public',
      responses: {
        200: {
          description: 'The version (DAEMON_LATEST_VERSION), e.g. `0.10.0`, with no trailing newline',
          schema: Type.String(),
          contentType: 'text/plain',
        },
        404: { description: 'DAEMON_LATEST_VERSION is empty: the installer falls back to its own sources' },
      },
    },
    (c) => {
      if (!deps.latestVersion) throw new NotFoundError('No daemon version is configured here (DAEMON_LATEST_VERSION).')
      return c.text(deps.latestVersion, 200, { 'cache-control': 'public, max-age=300' })
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/v1/machines/register',
      operationId: 'registerMachine',
      summary: 'Register a daemon (idempotent per client machine_id); install/enrollment credentials get a service token',
      tags,
      permission: 'enroll',
      body: RegisterBody,
      responses: {
        201: { description: 'First registration of this machine', schema: RegisterResponse },
        200: { description: 'The machine was already registered: same cloud id', schema: RegisterResponse },
      },
    },
    async (c, { body }) => {
      const r = await registerMachine(deps, c.get('principal'), body, c.get('request'))
      return c.json(r.body, r.created ? 201 : 200)
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/v1/machines/:id/heartbeat',
      operationId: 'machineHeartbeat',
      summary: 'Record a heartbeat; answers the current policy hash',
      tags,
      permission: 'machine',
      params: MachineParams,
      body: HeartbeatBody,
      responses: { 200: { description: 'Recorded', schema: HeartbeatResponse } },
    },
    async (c, { params, body }) => c.json(await heartbeat(deps, c.get('principal'), params.id, body)),
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/machines/:id/policies',
      operationId: 'machinePolicies',
      summary: 'The enabled policies in force on this machine (bare array); ETag is the heartbeat policy_hash',
      tags,
      permission: 'machine',
      params: MachineParams,
      responses: {
        200: { description: 'The policies; `ETag` (unquoted) = heartbeat policy_hash', schema: PolicyList },
        304: { description: 'If-None-Match equals the current ETag: unchanged, no body' },
      },
    },
    async (c, { params }) => {
      const doc = await machinePolicies(deps, c.get('principal'), params.id, c.req.header('if-none-match'))
      if (doc.notModified) return c.body(null, 304, { ETag: doc.hash })
      return c.body(doc.text, 200, { 'content-type': 'application/json', ETag: doc.hash })
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/v1/machines/:id/events',
      operationId: 'machineEvents',
      summary: 'Ingest daemon events (at most 500 events and 10 MiB, gzip allowed); 200 with per-item results',
      tags,
      permission: 'machine',
      params: MachineParams,
      rawBody: DaemonEventBatch,
      responses: {
        200: {
          description: 'Durably accepted; per-item outcomes (also when some or all items were rejected: a retry cannot fix them)',
          schema: EventsResponse,
        },
      },
      // RateLimit fields on every answer of a route charged to the ingest quota (issue 14).
      middleware: [quotaHeaders(deps.limiter)],
    },
    async (c, { params }) => {
      const principal = c.get('principal')
      const machineId = await resolveMachine(deps, principal, params.id)
      // Each item measured before it is parsed: a hostile one is rejected alone (issue 14).
      const batch = await readEventBatch(c.req.raw, MAX_BATCH_BYTES)
      const now = Date.now()
      // The quota is taken before the items are normalised (issue 14).
      const out = await acceptBatch(
        deps,
        principal.orgId,
        batch,
        (e, base) => normalizeDaemonEvent(e, base, now, machineId),
        machineId,
      )
      return c.json(batchBody(out), 200)
    },
  )

  routes.add(
    {
      method: 'post',
      path: '/v1/machines/:id/agents',
      operationId: 'machineAgents',
      summary: "Replace the machine's agent process snapshot ([] clears it)",
      tags,
      permission: 'machine',
      params: MachineParams,
      body: AgentsBody,
      bodyLimit: AGENTS_BODY_BYTES,
      responses: { 200: { description: 'Snapshot replaced', schema: AgentsResponse } },
    },
    async (c, { params, body }) => c.json(await replaceProcesses(deps, c.get('principal'), params.id, body)),
  )

  routes.add(
    {
      method: 'post',
      path: '/v1/machines/:id/graphs',
      operationId: 'machineGraphs',
      summary: 'Upsert agent graphs per (machine, graph id); 201 when any was new, else 200 (never 204)',
      tags,
      permission: 'machine',
      params: MachineParams,
      body: GraphsBody,
      bodyLimit: MAX_BATCH_BYTES,
      responses: {
        201: { description: 'At least one graph was new', schema: GraphsResponse },
        200: { description: 'Every graph was already known (updated), or the list was empty', schema: GraphsResponse },
      },
    },
    async (c, { params, body }) => {
      const r = await upsertGraphs(deps, c.get('principal'), params.id, body)
      return c.json(r, r.created > 0 ? 201 : 200)
    },
  )
}
