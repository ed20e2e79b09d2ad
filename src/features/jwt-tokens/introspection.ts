/**
 * @module features/jwt-tokens/introspection
 * For operators debugging a denial: `GET /v1/auth/whoami` (the validated identity of any accepted
 * credential) and `POST /v1/auth/check` (the caller's own RBAC decision for an action, with the
 * step that decided; a credential without RBAC is allowed at step 6).
 */
import { Type } from '@sinclair/typebox'
import type { TokenKind } from '../../auth/opaque/format.ts'
import { evaluateRbac, parseRbac } from '../../auth/rbac.ts'
import { TOKEN_TYPES } from '../../auth/jwt/hierarchy.ts'
import { ForbiddenError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { ROLES } from '../../http/permissions.ts'
import { CheckBody } from './schema.ts'

// Documented field by field (issue 14: an empty schema gave generated clients nothing to read).
const OPAQUE_KINDS = ['install', 'enrollment', 'service', 'personal', 'api_key'] as const satisfies readonly TokenKind[]
const Scopes = Type.Array(Type.String(), { description: 'admin, ingest, read, override, …' })

const OpaqueIdentity = Type.Object(
  {
    kind: Type.Literal('opaque'),
    type: Type.Union(
      OPAQUE_KINDS.map((k) => Type.Literal(k)),
      {
        description: 'api_key: a qk_ admin key; install: a qt_deploy_ deploy token; service: a machine qt_sk_ token.',
      },
    ),
    org_id: Type.String({ format: 'uuid' }),
    token_id: Type.String({ format: 'uuid' }),
    scopes: Scopes,
    expires_at: Type.Null({ description: 'Opaque credentials live until revoked.' }),
  },
  { $id: 'OpaqueIdentity', description: 'An opaque credential (qk_, qt_deploy_, qt_sk_, …).' },
)

const JwtIdentity = Type.Object(
  {
    kind: Type.Literal('jwt'),
    type: Type.Union(TOKEN_TYPES.map((t) => Type.Literal(t))),
    org_id: Type.String({ format: 'uuid' }),
    jti: Type.String(),
    parent_jti: Type.Optional(Type.String({ description: 'The token this one was minted from.' })),
    agent_id: Type.Optional(Type.String()),
    session_id: Type.Optional(Type.String()),
    max_events: Type.Optional(
      Type.Union([Type.Integer(), Type.Null()], { description: 'Session tokens: event budget; null: none.' }),
    ),
    delegation_depth: Type.Optional(Type.Integer({ minimum: 0 })),
    event_id: Type.Optional(Type.String({ description: 'Override tokens: the event they decide.' })),
    allowed_decisions: Type.Optional(Type.Array(Type.String())),
    environment: Type.Optional(Type.String()),
    rbac: Type.Optional(
      Type.Object({}, { additionalProperties: true, description: 'The signed RBAC policy (agent and sub-agent tokens).' }),
    ),
    scopes: Scopes,
    expires_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'JwtIdentity', description: 'A qt_ JWT of the token hierarchy.' },
)

const MemberIdentity = Type.Object(
  {
    kind: Type.Literal('member'),
    org_id: Type.String({ format: 'uuid' }),
    member_id: Type.String({ format: 'uuid' }),
    email: Type.String(),
    role: Type.Union(ROLES.map((r) => Type.Literal(r))),
  },
  { $id: 'MemberIdentity', description: "A person signed in with their identity provider's token (docs/people.md)." },
)

export const WhoAmI = Type.Union([OpaqueIdentity, JwtIdentity, MemberIdentity], {
  description: 'Which credential this is; `kind` tells them apart.',
})

export const Decision = Type.Object({
  allowed: Type.Boolean(),
  step: Type.Integer({ minimum: 1, maximum: 6 }),
  step_name: Type.String(),
  reason: Type.String(),
  pattern: Type.Optional(Type.String({ description: 'The policy pattern that decided, when one did.' })),
})

export function mountIntrospection(routes: RouteRegistry): void {
  const tags = ['auth']
  routes.add(
    {
      method: 'get',
      path: '/v1/auth/whoami',
      operationId: 'whoami',
      summary: 'The validated identity of the presented credential',
      tags,
      permission: 'authenticated',
      responses: { 200: { description: 'Identity', schema: WhoAmI } },
    },
    (c) => {
      const p = c.get('principal')
      if (p.kind === 'member') {
        return c.json({ kind: 'member', org_id: p.orgId, member_id: p.memberId, email: p.email, role: p.role })
      }
      if (p.kind !== 'jwt') {
        return c.json({ kind: 'opaque', type: p.kind, org_id: p.orgId, token_id: p.tokenId, scopes: p.scopes, expires_at: null })
      }
      return c.json({
        kind: 'jwt',
        type: p.type,
        org_id: p.orgId,
        jti: p.jti,
        ...(p.parentJti ? { parent_jti: p.parentJti } : {}),
        ...(p.agentId ? { agent_id: p.agentId } : {}),
        ...(p.sessionId ? { session_id: p.sessionId, max_events: p.maxEvents ?? null } : {}),
        ...(p.depth !== undefined ? { delegation_depth: p.depth } : {}),
        ...(p.eventId ? { event_id: p.eventId, allowed_decisions: p.allowedDecisions } : {}),
        ...(p.env ? { environment: p.env } : {}),
        ...(p.rbac ? { rbac: p.rbac } : {}),
        scopes: p.scopes,
        expires_at: new Date(p.exp * 1000).toISOString(),
      })
    },
  )
  routes.add(
    {
      method: 'post',
      path: '/v1/auth/check',
      operationId: 'checkRbac',
      summary: "The caller's RBAC decision for an action (deny-first, six steps)",
      tags,
      permission: 'authenticated',
      body: CheckBody,
      responses: { 200: { description: 'Decision', schema: Decision } },
    },
    (c, { body }) => {
      const p = c.get('principal')
      // A person has no RBAC policy to evaluate: "allowed, no policy" would tell them everything is.
      if (p.kind === 'member') {
        throw new ForbiddenError("RBAC checks are for agent credentials; a person's permissions follow their role.")
      }
      const parsed = p.kind === 'jwt' && p.rbac ? parseRbac(p.rbac) : null
      // A signed policy we cannot parse denies everything rather than nothing.
      if (parsed && !parsed.ok)
        return c.json({
          allowed: false,
          step: 1,
          step_name: 'denied_actions',
          reason: 'the credential carries an unreadable RBAC policy',
        })
      const d = evaluateRbac(parsed ? parsed.policy : null, {
        action: body.action,
        resource: body.resource,
        sensitivity: body.sensitivity,
      })
      return c.json({
        allowed: d.allowed,
        step: d.step,
        step_name: d.step_name,
        reason: d.reason,
        ...(d.pattern ? { pattern: d.pattern } : {}),
      })
    },
  )
}
