/**
 * @module features/jwt-tokens/routes
 * `POST /tokens/{app,bearer,agent,subagent,session,override}` (also under `/auth/tokens/…`, the
 * migration guide's paths): both request shapes of SPEC §7.5. Any accepted credential may call;
 * the service decides who may mint what (src/features/jwt-tokens/service.ts, docs/auth.md).
 * Answers 201 `{"token","jti","token_type","expires_at","claims",…type fields}`; agent, sub-agent
 * and session answers add `action_key` (hex), shown once.
 */
import type { Static, TSchema } from '@sinclair/typebox'
import type { Context } from 'hono'
import { createHash } from 'node:crypto'
import type { Principal } from '../../auth/credentials.ts'
import type { SigningKeys } from '../../auth/jwt/keys.ts'
import type { MintedJwt, TokenType } from '../../auth/jwt/hierarchy.ts'
import { BadRequestError, ForbiddenError } from '../../errors.ts'
import type { Sql } from '../../infra/db.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import type { AppEnv } from '../../http/request-context.ts'
import { AgentBody, AppBody, BearerBody, MintedToken, OverrideBody, SessionBody, SubagentBody } from './schema.ts'
import {
  checkCustomer,
  isManagement,
  mintFor,
  narrowedPolicy,
  requirePolicy,
  subagentDepth,
  type MintDeps,
  type MintInput,
} from './service.ts'
import { rbacClaim } from '../../auth/rbac.ts'
import { actionKeyFor } from '../../auth/action-signature.ts'
import { ACTION_SIGNED_TYPES } from '../../http/action-signature.ts'
import type { LiveRing } from '../live/repo.ts'

export interface AuthTokenDeps {
  sql: Sql
  keys: SigningKeys
  maxDepth: number
  /** Any accepted credential (requireAnyAuth). */
  /**
   * SecretBox.derive('action-signature'): agent, sub-agent and session answers carry the token's
   * `action_key` (docs/action-signatures.md), derived from it and shown only there.
   */
  actionSecret: Uint8Array
  /** The console's live stream: rung after an override (an approval request) is minted. */
  live: LiveRing
}

const DAY = 86_400
const HOUR = 3600
const MIN = 60
const seconds = (v: number | undefined, unit: number) => (v === undefined ? undefined : Math.round(v * unit))

type Handler<B extends TSchema> = (c: Context<AppEnv>, p: Principal, body: Static<B>, deps: MintDeps) => MintInput

const DEFINITIONS: { type: TokenType; body: TSchema; summary: string; build: Handler<any> }[] = [
  {
    type: 'app',
    body: AppBody,
    summary: 'Mint an app token (management root, 1 year)',
    build: ((_c, p, b: Static<typeof AppBody>) => {
      const scopes = b.scopes ?? ['*']
      // An app token without `*`/admin cannot hand out scopes it does not hold.
      if (p.kind === 'jwt' && !p.scopes.some((s) => s === '*' || s === 'admin') && !scopes.every((s) => p.scopes.includes(s))) {
        throw new ForbiddenError('An app token cannot grant scopes it does not hold.')
      }
      return {
        type: 'app',
        parentRef: null,
        ttlS: seconds(b.ttl_days, DAY),
        ttlPointer: '/ttl_days',
        name: b.name ?? null,
        claims: () => ({ claims: { scopes } }),
        details: { name: b.name ?? null, scopes },
      }
    }) as Handler<typeof AppBody>,
  },
  {
    type: 'bearer',
    body: BearerBody,
    summary: 'Mint a bearer token (data-plane root, 90 days) under an app token',
    build: ((_c, _p, b: Static<typeof BearerBody>) => ({
      type: 'bearer',
      parentRef: b.app_token_hash ? { hash: Buffer.from(b.app_token_hash, 'hex'), pointer: '/app_token_hash' } : null,
      ttlS: seconds(b.ttl_days, DAY),
      ttlPointer: '/ttl_days',
      claims: () => ({ claims: { env: b.environment } }),
      details: { environment: b.environment },
    })) as Handler<typeof BearerBody>,
  },
  {
    type: 'agent',
    body: AgentBody,
    summary: 'Mint an agent token (24 h, RBAC) under a bearer token',
    build: ((_c, _p, b: Static<typeof AgentBody>) => {
      const rbac = rbacClaim(requirePolicy(b.rbac))
      return {
        type: 'agent',
        parentRef: b.bearer_jti ? { jti: b.bearer_jti.toLowerCase(), pointer: '/bearer_jti' } : null,
        ttlS: seconds(b.ttl_hours, HOUR),
        ttlPointer: '/ttl_hours',
        name: b.agent_name ?? null,
        claims: () => ({ claims: { agent_id: b.agent_id, rbac } }),
        details: { agent_id: b.agent_id },
      }
    }) as Handler<typeof AgentBody>,
  },
  {
    type: 'subagent',
    body: SubagentBody,
    summary: 'Mint a sub-agent token (4 h, narrowed RBAC) under an agent or sub-agent token',
    build: ((_c, _p, b: Static<typeof SubagentBody>, deps) => ({
      type: 'subagent',
      parentRef: b.parent_agent_jti ? { jti: b.parent_agent_jti.toLowerCase(), pointer: '/parent_agent_jti' } : null,
      ttlS: seconds(b.ttl_hours, HOUR),
      ttlPointer: '/ttl_hours',
      name: b.agent_name ?? null,
      claims: (parent) => {
        const depth = subagentDepth(parent!, deps.maxDepth, b.parent_agent_jti ? '/parent_agent_jti' : '/')
        return { claims: { agent_id: b.agent_id, rbac: narrowedPolicy(parent!.claims.rbac, b.rbac), depth }, depth }
      },
      details: { agent_id: b.agent_id },
    })) as Handler<typeof SubagentBody>,
  },
  {
    type: 'session',
    body: SessionBody,
    summary: 'Mint a session token (1 h, event-limited) under an agent or sub-agent token',
    build: ((_c, _p, b: Static<typeof SessionBody>) => ({
      type: 'session',
      parentRef: b.parent_jti ? { jti: b.parent_jti.toLowerCase(), pointer: '/parent_jti' } : null,
      ttlS: seconds(b.ttl_minutes, MIN),
      ttlPointer: '/ttl_minutes',
      claims: (parent) => {
        if (b.parent_type && parent && parent.type !== b.parent_type) {
          throw new BadRequestError('parent_type does not match the parent token.', [
            { path: '/parent_type', message: `the parent is a ${parent.type} token` },
          ])
        }
        const agentId = parent?.claims.agent_id
        return {
          claims: {
            session_id: b.session_id,
            max_events: b.max_events ?? 1000,
            ...(typeof agentId === 'string' ? { agent_id: agentId } : {}),
          },
        }
      },
      details: { session_id: b.session_id },
    })) as Handler<typeof SessionBody>,
  },
  {
    type: 'override',
    body: OverrideBody,
    summary: 'Mint a one-shot human override token (5 min) for one event',
    build: ((_c, _p, b: Static<typeof OverrideBody>) => {
      const decisions = [...new Set(b.allowed_decisions ?? ['approve', 'reject'])]
      return {
        type: 'override',
        parentRef: null,
        ttlS: seconds(b.ttl_minutes, MIN),
        ttlPointer: '/ttl_minutes',
        claims: () => ({ claims: { event_id: b.event_id, allowed_decisions: decisions } }),
        details: { event_id: b.event_id, reason: b.reason ?? null },
        requestReason: b.reason ?? null,
      }
    }) as Handler<typeof OverrideBody>,
  },
]

export function mountAuthTokens(routes: RouteRegistry, deps: AuthTokenDeps): void {
  const mintDeps: MintDeps = { sql: deps.sql, keys: deps.keys, maxDepth: deps.maxDepth }
  for (const def of DEFINITIONS) {
    for (const [base, suffix] of [
      ['/tokens', ''],
      ['/auth/tokens', 'Alias'],
    ] as const) {
      routes.add(
        {
          method: 'post',
          path: `${base}/${def.type}`,
          operationId: `mint${def.type[0]!.toUpperCase()}${def.type.slice(1)}Token${suffix}`,
          summary: def.summary,
          tags: ['auth tokens'],
          permission: 'authenticated',
          body: def.body,
          idempotent: true,
          responses: { 201: { description: 'Minted (the token is shown only here)', schema: MintedToken } },
        },
        async (c, { body }) => {
          const p = c.get('principal')
          checkCustomer(p, (body as { customer_id?: string }).customer_id)
          if (def.type === 'app' || def.type === 'bearer' || def.type === 'agent') {
            // The client form lets a token mint its own children; roots need management.
            const selfParent =
              p.kind === 'jwt' && ((def.type === 'bearer' && p.type === 'app') || (def.type === 'agent' && p.type === 'bearer'))
            if (!isManagement(p) && !selfParent) throw new ForbiddenError(`This credential may not mint ${def.type} tokens.`)
          }
          const minted = await mintFor(mintDeps, p, def.build(c, p, body, mintDeps), c.get('request'))
          if (def.type === 'override') deps.live.ring([p.orgId])
          return c.json(view(minted, deps.actionSecret), 201)
        },
      )
    }
  }
}

function view(m: MintedJwt, actionSecret: Uint8Array) {
  const c = m.claims
  return {
    token: m.token,
    jti: m.jti,
    token_type: m.type,
    expires_at: m.expiresAt.toISOString(),
    ...(c.agent_id !== undefined ? { agent_id: c.agent_id } : {}),
    ...(c.depth !== undefined ? { delegation_depth: c.depth } : {}),
    ...(c.session_id !== undefined ? { session_id: c.session_id, max_events: c.max_events } : {}),
    ...(c.event_id !== undefined ? { event_id: c.event_id, allowed_decisions: c.allowed_decisions } : {}),
    ...(c.env !== undefined ? { environment: c.env } : {}),
    ...(c.scopes !== undefined ? { scopes: c.scopes } : {}),
    // The hash a bearer-token request names its parent app token by (`app_token_hash`).
    ...(m.type === 'app' ? { token_hash: createHash('sha256').update(m.token).digest('hex') } : {}),
    // Not stored anywhere: derived again from (org, jti) to verify X-Action-Signature.
    ...(ACTION_SIGNED_TYPES.has(m.type) ? { action_key: actionKeyFor(actionSecret, String(c.sub), m.jti).toString('hex') } : {}),
    claims: c,
  }
}
