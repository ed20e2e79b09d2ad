/**
 * @module features/overrides/routes
 * The human override flow of SPEC §16.7 (docs/auth.md "Overrides"):
 *
 *   POST /overrides/{event_id}/decide  {override_jti?, customer_id?, decision, reason?}
 *     → 200 {"event_id","decision","override_jti","cosignature","decided_at","reason"}
 *   GET  /overrides/{event_id}         → {"event_id","decisions":[…]}
 *   GET  /v1/overrides/pending         → {"pending":[…],"next_cursor"} (issue 12: approval requests)
 *
 * Who decides: the override token itself as the bearer (its claims name the event and the allowed
 * decisions; `override_jti`, when sent, must be its own), or a management credential or a member
 * whose role manages (admin, owner) naming `override_jti`; `decided_by` and the audit entry name
 * that member (`member:<member id>`). Either way the token must be of the caller's org (404), an override (404), not
 * revoked with its whole chain, not expired (401 as a bearer, 409 when named), bound to the path's
 * event (409 `override_event_mismatch`), and the decision one of its `allowed_decisions` (422).
 * Single use: `auth.issued_tokens.used_at` is set by one conditional UPDATE, so of any number of
 * concurrent decides on any instances exactly one succeeds; the others get 409 `override_used`.
 * The decision, the audit entry and `used_at` commit together. Refusals of a genuine override of
 * the org are audited too (in their own transaction). Never logged or stored: the token.
 *
 * The pending list is `read`: seeing that an agent waits for a human is reading the org (a
 * viewer's console shows it); deciding keeps the rules above. A decision ends its request on the
 * console's live stream (`approval`, docs/live.md) in the same commit; the list is read on the
 * primary, as that stream is, so a console merging both never sees a decided request again.
 */
import { hasScope, type Principal } from '../../auth/credentials.ts'
import { overrideCosignature } from '../../auth/override-cosign.ts'
import { AppError, ForbiddenError, NotFoundError, ValidationError } from '../../errors.ts'
import { withOrg, type Sql, type Tx } from '../../infra/db.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { roleAllows } from '../../http/permissions.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { findIssued } from '../jwt-tokens/repo.ts'
import { checkCustomer, isManagement } from '../jwt-tokens/service.ts'
import { decisionsFor, insertDecision, machineOfEvent, markUsed, whyUnusable } from './repo.ts'
import { recordFleetEvent, type FleetRing } from '../fleet/repo.ts'
import { DecideBody, DecisionList, DecisionView, EventParams, PendingList } from './schema.ts'
import { approvalView, eventsOf, pendingApprovals } from './pending.ts'
import { decodeCursor, paginate, PageQuery } from '../../http/pagination.ts'
import { recordLive, type LiveRing } from '../live/repo.ts'

export interface OverrideDeps {
  sql: Sql
  fleet: FleetRing
  /** The console's live stream: rung after a decision ends a request. */
  live: LiveRing
  /** SecretBox.derive('override-cosign'): the cosignature key, the same on every instance. */
  secret: Uint8Array
}

const conflict = (code: string, detail: string) => new AppError(409, code, detail)

export function mountOverrides(routes: RouteRegistry, deps: OverrideDeps): void {
  const tags = ['overrides']
  mountPending(routes, deps)
  routes.add(
    {
      method: 'post',
      path: '/overrides/:event_id/decide',
      operationId: 'decideOverride',
      summary: 'Record a human decision with a one-shot override token (single use, cosigned)',
      tags,
      permission: 'authenticated',
      params: EventParams,
      body: DecideBody,
      bodyLimit: 8 * 1024,
      // A retry whose first answer was lost gets that answer, not 409 override_used.
      idempotent: true,
      responses: { 200: { description: 'Decided; the token is now used', schema: DecisionView } },
    },
    async (c, { params, body }) => {
      const p = c.get('principal')
      checkCustomer(p, body.customer_id)
      const jti = overrideJtiOf(p, body.override_jti)
      const eventId = params.event_id
      const audit = (tx: Tx, action: string, details: Record<string, unknown>) =>
        recordAudit(tx, {
          ...auditActor(p),
          action,
          targetType: 'event',
          targetId: eventId,
          request: c.get('request'),
          details: { override_jti: jti, decision: body.decision, reason: body.reason ?? null, ...details },
        })
      const outcome = await withOrg(deps.sql, p.orgId, async (tx) => {
        const token = await findIssued(tx, { jti })
        if (!token || token.type !== 'override')
          return { refused: new NotFoundError('No such override token in this organization.') }
        const refuse = async (err: AppError) => {
          await audit(tx, 'override.refused', { refusal: err.code })
          return { refused: err }
        }
        if (token.chainRevoked)
          return refuse(conflict('override_revoked', 'The override token (or the token that minted it) is revoked.'))
        if (token.claims.event_id !== eventId) {
          return refuse(conflict('override_event_mismatch', 'The override token is bound to another event.'))
        }
        const allowed = Array.isArray(token.claims.allowed_decisions) ? (token.claims.allowed_decisions as unknown[]) : []
        if (!allowed.includes(body.decision)) {
          return refuse(
            new ValidationError(
              [{ path: '/decision', message: `must be one of the token's allowed_decisions: ${allowed.join(', ')}` }],
              'Decision not allowed by this override token.',
            ),
          )
        }
        const decidedAt = await markUsed(tx, jti)
        if (!decidedAt) {
          const why = await whyUnusable(tx, jti)
          return refuse(
            why === 'used'
              ? conflict('override_used', 'This override token has already been used; an override decides once.')
              : conflict(`override_${why}`, `The override token is ${why}.`),
          )
        }
        const cosignature = overrideCosignature(deps.secret, eventId, body.decision, jti)
        const decidedBy = p.kind === 'jwt' ? `jwt:${p.type}:${p.jti}` : `${p.kind}:${p.tokenId}`
        await insertDecision(tx, {
          event_id: eventId,
          decision: body.decision,
          override_jti: jti,
          cosignature,
          decided_at: decidedAt,
          reason: body.reason ?? null,
          decided_by: decidedBy,
        })
        const decided = {
          event_id: eventId,
          decision: body.decision,
          override_jti: jti,
          cosignature,
          decided_at: decidedAt.toISOString(),
          reason: body.reason ?? null,
        }
        // The daemon waiting on this event hears it on its fleet stream (docs/fleet-stream.md).
        const machineId = await machineOfEvent(tx, eventId)
        if (machineId) await recordFleetEvent(tx, { kind: 'override', machineId, data: decided })
        // After the fleet log's lock, as in every transaction that takes both (no deadlock).
        await audit(tx, 'override.decide', {})
        // Last: the console's live stream hears the request end at commit (issue 12).
        await recordLive(tx, 'approval', [jti])
        return { decided }
      })
      if ('refused' in outcome) throw outcome.refused
      deps.fleet.ring([c.get('principal').orgId])
      deps.live.ring([c.get('principal').orgId])
      return c.json(outcome.decided)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/overrides/:event_id',
      operationId: 'listOverrideDecisions',
      summary: 'The decisions recorded for an event',
      tags,
      permission: 'authenticated',
      params: EventParams,
      responses: { 200: { description: 'Decisions, oldest first', schema: DecisionList } },
    },
    async (c, { params }) => {
      const p = c.get('principal')
      const ownEvent = p.kind === 'jwt' && p.type === 'override' && p.eventId === params.event_id
      if (!ownEvent && !isManagement(p) && !hasScope(p, 'read')) {
        throw new ForbiddenError(
          'Reading override decisions needs a management or read credential, or the override token of this event.',
        )
      }
      const rows = await withOrg(deps.sql, p.orgId, (tx) => decisionsFor(tx, params.event_id))
      return c.json({
        event_id: params.event_id,
        decisions: rows.map((r) => ({ ...r, decided_at: r.decided_at.toISOString() })),
      })
    },
  )
}

/** `GET /v1/overrides/pending`: the approval requests agents wait on, newest first. */
function mountPending(routes: RouteRegistry, deps: OverrideDeps): void {
  routes.add(
    {
      method: 'get',
      path: '/v1/overrides/pending',
      operationId: 'listPendingOverrides',
      summary: 'Approval requests waiting for a human: override tokens not used, expired or revoked (newest first)',
      tags: ['overrides'],
      permission: 'read',
      query: PageQuery,
      responses: {
        200: { description: 'A page of pending requests, each with its stored event when there is one', schema: PendingList },
        403: { description: "A machine's credential (deploy, enrollment, service, data-plane JWTs): reading is for people" },
      },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const after = decodeCursor(query.cursor)
      const { page, next, events } = await withOrg(deps.sql, c.get('principal').orgId, async (tx) => {
        const cut = paginate(await pendingApprovals(tx, limit + 1, after), limit, (r) => r.requested_key)
        return { ...cut, events: await eventsOf(tx, cut.page) }
      })
      return c.json({ pending: page.map((r) => approvalView(r, events)), next_cursor: next })
    },
  )
}

/**
 * Who may decide by naming an override: a management credential (`isManagement`), or a person
 * whose role manages (admin, owner). Only here: `isManagement` also gates minting, revocation and
 * signing keys, which people still may not touch. Personal and service tokens are neither.
 */
const decidesByName = (p: Principal): boolean => isManagement(p) || (p.kind === 'member' && roleAllows(p.role, 'manage'))

/** The override being decided: the bearer itself, or the one a management credential or admin names. */
function overrideJtiOf(p: Principal, named: string | undefined): string {
  if (p.kind === 'jwt' && p.type === 'override') {
    if (named !== undefined && named.toLowerCase() !== p.jti) {
      throw new ForbiddenError('An override token can only decide with itself.')
    }
    return p.jti
  }
  if (!decidesByName(p))
    throw new ForbiddenError('Deciding needs the override token itself, a management credential, or an admin or owner.')
  if (named === undefined)
    throw new ValidationError([{ path: '/override_jti', message: 'required when the caller is not the override token' }])
  return named.toLowerCase()
}
