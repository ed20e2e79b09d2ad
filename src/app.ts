/**
 * @module app
 * The Hono application: middleware order, routes, and the single error mapper. Built from its
 * dependencies (no I/O at import), so tests build it against their own database.
 */
import { Hono, type MiddlewareHandler } from 'hono'
import { randomBytes } from 'node:crypto'
import { CredentialResolver } from './auth/credentials.ts'
import { SecretBox } from './auth/secret-box.ts'
import type { Config } from './config.ts'
import { mountAlerts } from './features/alerts/routes.ts'
import { mountDeployTokens } from './features/deploy-tokens/routes.ts'
import { LocalBus, type Bus } from './features/ingest/bus.ts'
import { OrgRateLimiter } from './features/ingest/rate-limit.ts'
import { mountIngest } from './features/ingest/routes.ts'
import { mountMachines } from './features/machines/routes.ts'
import { mountWebhooks } from './features/webhooks/routes.ts'
import { SigningKeys } from './auth/keys.ts'
import { MAX_TOKEN_TTL_MS } from './auth/tokens.ts'
import { TokenValidator, type RevocationFilterLike } from './auth/validator.ts'
import { mountIntrospection } from './features/auth-tokens/introspection.ts'
import { mountSigningKeys } from './features/auth-tokens/keys-routes.ts'
import { mountRevocation } from './features/auth-tokens/revocation-routes.ts'
import { mountAuthTokens } from './features/auth-tokens/routes.ts'
import { sessionEventBudget } from './features/auth-tokens/session-budget.ts'
import { mountFilterRebuild } from './features/auth-tokens/rebuild-routes.ts'
import { mountOverrides } from './features/overrides/routes.ts'
import { ActionSignatureReplayGuard, verifyActionSignatures } from './http/action-signature.ts'
import type { RevocationFilter } from './auth/revocation-filter.ts'
import { requireAnyAuth, requireAuth } from './http/auth.ts'
import { mountHealth } from './http/health.ts'
import { httpMetrics, mountMetrics } from './http/metrics.ts'
import { RouteRegistry } from './http/openapi.ts'
import { errorToProblem, problem } from './http/problem.ts'
import { requestContext, type AppEnv } from './http/request-context.ts'
import { createPool, type Sql } from './infra/db.ts'
import type { Logger } from './infra/log.ts'
import type { RedisStateStore } from './infra/redis.ts'
import { createMetrics, type Metrics } from './infra/metrics.ts'
import { Lifecycle } from './lifecycle.ts'
import pkg from '../package.json' with { type: 'json' }

export const VERSION: string = pkg.version

export interface AppDeps {
  config: Config
  sql: Sql
  log: Logger
  metrics: Metrics
  lifecycle: Lifecycle
  resolver: CredentialResolver
  bus: Bus
  /** Cluster mode's shared state (REDIS_URL); null or absent: process memory only. */
  redis?: RedisStateStore | null
  /** Seals secrets at rest under the master key (signing keys, webhook secrets). */
  secrets: SecretBox
  /**
   * The JWT revocation filter (src/auth/revocation-filter.ts), filled from Postgres by the caller.
   * Absent: every cold JWT validation confirms revocation state in Postgres (docs/auth.md).
   */
  revocationFilter?: RevocationFilter | RevocationFilterLike | null
}

export function buildApp(deps: AppDeps): { app: Hono<AppEnv>; routes: RouteRegistry } {
  const { sql, log, metrics, lifecycle, resolver, bus } = deps
  const app = new Hono<AppEnv>()
  app.use(requestContext(log))
  app.use(httpMetrics(metrics))

  mountHealth(app, { lifecycle, sql, version: VERSION })
  mountMetrics(app, metrics)

  const routes = new RouteRegistry(app)
  // JWT-bearing tokens (qt_app_ … qt_override_): keys, validator, minting, revocation (docs/auth.md).
  const keys = new SigningKeys(sql, deps.secrets, log, { maxTokenTtlMs: MAX_TOKEN_TTL_MS })
  const validator = new TokenValidator(sql, keys, {
    clockSkewS: deps.config.AUTH_CLOCK_SKEW_S,
    maxDepth: deps.config.AUTH_MAX_DELEGATION_DEPTH,
    filter: deps.revocationFilter ?? null,
  })
  resolver.useJwtValidator(validator)
  // X-Action-Signature (docs/action-signatures.md): checked right after every auth middleware,
  // for agent, sub-agent and session tokens, before the route reads the body.
  const actionSecret = deps.secrets.derive('action-signature')
  const checkSignature = verifyActionSignatures({
    secret: actionSecret,
    required: deps.config.AUTH_REQUIRE_ACTION_SIGNATURE,
    replay: new ActionSignatureReplayGuard({ shared: deps.redis, log, metrics }),
  })
  const signed = (auth: MiddlewareHandler<AppEnv>): MiddlewareHandler<AppEnv> => (c, next) =>
    auth(c, async () => {
      await checkSignature(c, next)
    })
  const anyAuth = signed(requireAnyAuth(resolver))
  mountAuthTokens(routes, { sql, keys, maxDepth: deps.config.AUTH_MAX_DELEGATION_DEPTH, anyAuth, actionSecret })
  mountSigningKeys(routes, { sql, keys, anyAuth })
  mountRevocation(routes, {
    sql,
    anyAuth,
    async onRevoked(entries) {
      validator.evict(entries)
      // Postgres is committed; a filter that misses an add turns to 'unknown' on its own repair.
      await validator.filter?.add(entries).catch((err: unknown) => log.error({ err }, 'revocation committed but the revocation filter add failed'))
    },
  })
  mountIntrospection(routes, { anyAuth })
  const filter = deps.revocationFilter
  mountFilterRebuild(routes, {
    sql,
    anyAuth,
    filter: filter && 'rebuild' in filter ? filter : null,
    clockSkewS: deps.config.AUTH_CLOCK_SKEW_S,
    onRebuilt: () => validator.evict([]),
  })
  mountOverrides(routes, { sql, anyAuth, secret: deps.secrets.derive('override-cosign') })
  const admin = signed(requireAuth(resolver, { scope: 'admin' }))
  mountDeployTokens(routes, { sql, resolver, admin })
  const ingestAuth = signed(requireAuth(resolver, { scope: 'ingest' }))
  // Session tokens draw each ingest request's events from their max_events budget (429 past it).
  const budget = sessionEventBudget(sql)
  const ingest: MiddlewareHandler<AppEnv> = (c, next) =>
    ingestAuth(c, async () => {
      await budget(c, next)
    })
  // One quota per org across every ingest path (v2, API-reference, daemon, lifecycle).
  const limiter = new OrgRateLimiter(deps.config.INGEST_RATE_PER_S, deps.config.INGEST_RATE_BURST, {
    shared: deps.redis,
    log,
    metrics,
  })
  mountIngest(routes, { sql, bus, limiter, ingest })
  mountMachines(routes, { sql, bus, limiter, resolver, ingest })
  mountAlerts(routes, { sql, admin, read: signed(requireAuth(resolver, { scope: 'read' })) })
  mountWebhooks(routes, {
    sql,
    admin,
    secrets: deps.secrets,
    policy: { allowInsecure: deps.config.WEBHOOK_ALLOW_INSECURE, allowPrivate: deps.config.WEBHOOK_ALLOW_PRIVATE_TARGETS },
  })

  let doc: string | null = null
  app.get('/openapi.json', (c) => {
    doc ??= JSON.stringify(routes.document({ title: 'quint-cloud', version: VERSION }))
    return c.body(doc, 200, { 'content-type': 'application/json' })
  })

  app.notFound((c) =>
    problem({ status: 404, code: 'not_found', detail: `No route for ${c.req.method} ${c.req.path}.`, instance: `urn:request:${c.get('requestId')}` }),
  )
  app.onError((err, c) => errorToProblem(err, c.get('requestId'), c.get('log') ?? log))
  return { app, routes }
}

/**
 * The app with no database behind it (the pool is never connected): for `quint-cloud openapi`
 * and for benchmarking the HTTP stack on routes that touch no store.
 */
export function offlineApp(config: Config, log: Logger) {
  const sql = createPool({ url: 'postgres://unused@127.0.0.1:1/unused' }, { max: 1 })
  const lifecycle = new Lifecycle(log)
  const built = buildApp({
    config,
    sql,
    log,
    metrics: createMetrics(),
    lifecycle,
    resolver: new CredentialResolver(sql, log),
    bus: new LocalBus(),
    // Nothing is sealed or opened offline: a throw-away key.
    secrets: new SecretBox(randomBytes(32)),
  })
  lifecycle.markReady()
  return { ...built, close: () => sql.end({ timeout: 0 }) }
}
