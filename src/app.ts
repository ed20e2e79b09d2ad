/**
 * @module app
 * The composition of the service: middleware order, routes, the single error mapper, and every
 * object they share (credential resolver, JWT validator, revocation filter and poll). `serve`,
 * the tests and the offline app all call `composeApp`, so what the tests run is what ships.
 * No I/O at import or composition; `start` begins the background work.
 */
import { Hono, type MiddlewareHandler } from 'hono'
import { randomBytes } from 'node:crypto'
import { CredentialResolver } from './auth/credentials.ts'
import { SecretBox } from './auth/secret-box.ts'
import type { Config } from './config.ts'
import { mountAlerts } from './features/alerts/routes.ts'
import { mountDeadLetters } from './features/dead-letters/routes.ts'
import { mountDeployTokens } from './features/api-tokens/deploy-routes.ts'
import { mountApiTokens } from './features/api-tokens/routes.ts'
import { mountPolicies } from './features/policies/routes.ts'
import { mountAuditSync } from './features/audit-sync/routes.ts'
import { mountSignatures } from './features/signatures/routes.ts'
import { mountSimulate } from './features/simulate/routes.ts'
import { mountBackfill } from './features/simulate/backfill-routes.ts'
import { PostgresBell, RedisBell } from './infra/bell.ts'
import { FLEET_NOTIFY_CHANNEL, FLEET_REDIS_CHANNEL } from './features/fleet/repo.ts'
import { FleetHub } from './features/fleet/hub.ts'
import { mountFleet } from './features/fleet/routes.ts'
import { LiveHub } from './features/live/hub.ts'
import { LIVE_NOTIFY_CHANNEL, LIVE_REDIS_CHANNEL } from './features/live/repo.ts'
import { mountLive } from './features/live/routes.ts'
import { LocalBus, type Bus } from './bus/bus.ts'
import { OrgRateLimiter } from './features/ingest/rate-limit.ts'
import { mountIngest } from './features/ingest/routes.ts'
import { mountMachines } from './features/machines/routes.ts'
import { mountWebhooks } from './features/webhooks/routes.ts'
import { SigningKeys } from './auth/jwt/keys.ts'
import { MAX_TOKEN_TTL_MS } from './auth/jwt/hierarchy.ts'
import { TokenValidator } from './auth/jwt/validator.ts'
import { mountIntrospection } from './features/jwt-tokens/introspection.ts'
import { mountSigningKeys } from './features/jwt-tokens/keys-routes.ts'
import { mountRevocation } from './features/jwt-tokens/revocation-routes.ts'
import { mountAuthTokens } from './features/jwt-tokens/routes.ts'
import { sessionEventBudget } from './features/jwt-tokens/session-budget.ts'
import { mountFilterRebuild } from './features/jwt-tokens/rebuild-routes.ts'
import { mountOverrides } from './features/overrides/routes.ts'
import { mountEvents } from './features/events/routes.ts'
import { mountSessions } from './features/sessions/routes.ts'
import { mountAgents } from './features/agents/routes.ts'
import { mountMachineInventory } from './features/machines/inventory-routes.ts'
import { mountChain } from './features/chain/routes.ts'
import { mountIngestStats } from './features/ingest/stats-routes.ts'
import { mountOrgSettings } from './features/orgs/routes.ts'
import { mountTeam } from './features/members/routes.ts'
import { mountAuditLog } from './features/audit/routes.ts'
import { PeopleSignIn } from './features/members/signin.ts'
import { IdpVerifier } from './auth/idp/verifier.ts'
import { ActionSignatureReplayGuard, verifyActionSignatures } from './http/action-signature.ts'
import { createRevocationFilter, type RevocationFilter } from './auth/jwt/revocation-filter.ts'
import { revokedForFilter } from './features/jwt-tokens/repo.ts'
import { RevocationPoll } from './features/jwt-tokens/revocation-poll.ts'
import { requireAnyAuth, requireAuth } from './http/auth.ts'
import { mountHealth } from './http/health.ts'
import { httpMetrics, mountMetrics } from './http/metrics.ts'
import { RouteRegistry, type Guards } from './http/openapi.ts'
import type { Permission } from './http/permissions.ts'
import { cors, securityHeaders } from './http/browser.ts'
import { mountDocs } from './http/docs.ts'
import { mountConsole } from './console/routes.ts'
import { IdempotencyStore } from './http/idempotency.ts'
import { notFoundOrNotAllowed } from './http/method-not-allowed.ts'
import { errorToProblem } from './http/problem.ts'
import { requestContext, type AppEnv } from './http/request-context.ts'
import { createPool, type Sql } from './infra/db.ts'
import type { Logger } from './infra/log.ts'
import type { RedisStateStore } from './infra/redis.ts'
import { createMetrics, registerFleetStreamsGauge, registerLiveMetrics, type Metrics } from './infra/metrics.ts'
import { Lifecycle } from './lifecycle.ts'
import pkg from '../package.json' with { type: 'json' }

export const VERSION: string = pkg.version

export interface AppDeps {
  config: Config
  sql: Sql
  /**
   * The read side's pool (issue 9): a replica when DATABASE_READ_URL is set, under the same
   * runtime role and RLS. Default: `sql`.
   */
  readSql?: Sql
  log: Logger
  lifecycle: Lifecycle
  bus: Bus
  /** Seals secrets at rest under the master key (signing keys, webhook secrets). */
  secrets: SecretBox
  /** Default: a fresh registry (tests, the offline app). */
  metrics?: Metrics
  /** Cluster mode's shared state (REDIS_URL); null or absent: process memory only. */
  redis?: RedisStateStore | null
  /**
   * The JWT revocation filter, when the caller needs its own (tests namespace or tune it).
   * Default: one filled from Postgres and, with Redis, shared with every instance (docs/auth.md).
   */
  revocationFilter?: RevocationFilter
}

/** The composed service: what `serve`, the tests and the offline app all run. */
export interface ComposedApp {
  app: Hono<AppEnv>
  routes: RouteRegistry
  resolver: CredentialResolver
  metrics: Metrics
  revocationFilter: RevocationFilter
  /** The fleet streams held here; consumer threads ring it for what they wrote (src/bus/pool.ts). */
  fleet: FleetHub
  /** The console's live streams held here (issue 12); consumer threads ring it for what they stored. */
  live: LiveHub
  /**
   * Loads the revocation filter from Postgres and, without Redis, starts polling Postgres for
   * other instances' revocations. Until it has loaded, every JWT check asks Postgres. Resolves
   * once loaded (or once loading failed and was logged); callers need not wait.
   */
  start(): Promise<void>
  /** Stops what `start` began; bounded by the caller's shutdown deadline. */
  stop(): Promise<void>
}

/**
 * The one place the app is composed (issue 14: it was wired in three places, and a forgotten
 * setter refused every JWT without an error). Every dependency is built here or passed in; none
 * is set afterwards.
 */
export function composeApp(deps: AppDeps): ComposedApp {
  const { sql, log, lifecycle, bus, redis = null } = deps
  const metrics = deps.metrics ?? createMetrics()
  const app = new Hono<AppEnv>()
  app.use(requestContext(log, { trustProxyHops: deps.config.TRUST_PROXY_HOPS }))
  app.use(httpMetrics(metrics))
  // Before any route: every answer carries the headers, and a CORS preflight is answered here.
  app.use(securityHeaders())
  app.use(cors(deps.config.corsOrigins))

  mountHealth(app, { lifecycle, sql, version: VERSION })
  mountMetrics(app, metrics)

  // The authoritative revocation list, read when a filter is (re)built.
  const revokedList = () =>
    (async function* () {
      yield* await revokedForFilter(sql, deps.config.AUTH_CLOCK_SKEW_S)
    })()
  const revocationFilter = deps.revocationFilter ?? createRevocationFilter({ redis, log, metrics, source: revokedList })
  // Without Redis nothing carries another instance's revocation here: poll Postgres for it.
  const poll = redis ? null : new RevocationPoll({ sql, filter: revocationFilter, log })
  // JWT-bearing tokens (qt_app_ … qt_override_): keys, validator, minting, revocation (docs/auth.md).
  const keys = new SigningKeys(sql, deps.secrets, log, { maxTokenTtlMs: MAX_TOKEN_TTL_MS })
  const validator = new TokenValidator(sql, keys, {
    clockSkewS: deps.config.AUTH_CLOCK_SKEW_S,
    maxDepth: deps.config.AUTH_MAX_DELEGATION_DEPTH,
    filter: revocationFilter,
    log,
  })
  // People sign in with their identity provider's tokens when one is configured (docs/people.md).
  const idp = deps.config.OIDC_ISSUER
    ? new IdpVerifier(
        {
          issuer: deps.config.OIDC_ISSUER,
          audience: deps.config.OIDC_AUDIENCE!,
          jwksUrl: deps.config.OIDC_JWKS_URL,
          hs256Secret: deps.config.SUPABASE_JWT_SECRET,
          clockSkewS: deps.config.AUTH_CLOCK_SKEW_S,
        },
        log,
      )
    : null
  const resolver = new CredentialResolver(sql, log, {
    lastUsedEveryMs: deps.config.TOKEN_USAGE_WRITE_MS,
    shared: redis,
    metrics,
    jwt: validator,
    people: idp ? new PeopleSignIn(sql, idp, { channel: redis, log }) : null,
  })
  // The console's live stream (issue 12, docs/live.md): rung after commits by the consumers (through
  // src/bus/pool.ts), the alert triage and policy deliveries; the bell NOTIFYs after the commit.
  // Fleet changes ring the fleet bell only: the fleet hub passes each ring it hears on to `live`.
  const live: LiveHub = new LiveHub({
    sql,
    bell: redis
      ? new RedisBell(redis, log, LIVE_REDIS_CHANNEL)
      : new PostgresBell(sql, log, { channel: LIVE_NOTIFY_CHANNEL, notify: true }),
    log,
    keepAliveMs: deps.config.LIVE_STREAM_KEEPALIVE_MS,
    perOrg: deps.config.LIVE_STREAMS_PER_ORG,
    perCredential: deps.config.LIVE_STREAMS_PER_CREDENTIAL,
    onGap: (topic, reason) => liveMetrics.gaps.inc({ topic, reason }),
  })
  const liveMetrics = registerLiveMetrics(metrics.registry, () => live.size)
  // The fleet stream (docs/fleet-stream.md): a revoked credential's streams end at once.
  const fleet = new FleetHub({
    sql,
    bell: redis
      ? new RedisBell(redis, log, FLEET_REDIS_CHANNEL)
      : new PostgresBell(sql, log, { channel: FLEET_NOTIFY_CHANNEL, notify: false }),
    log,
    keepAliveMs: deps.config.FLEET_STREAM_KEEPALIVE_MS,
    perOrg: deps.config.FLEET_STREAMS_PER_ORG,
    perMachine: deps.config.FLEET_STREAMS_PER_MACHINE,
    live,
  })
  resolver.onRevoked((hashes) => {
    fleet.revoked(hashes)
    live.revoked(hashes)
  })
  registerFleetStreamsGauge(metrics.registry, () => fleet.size)
  // X-Action-Signature (docs/action-signatures.md): checked right after every auth middleware,
  // for agent, sub-agent and session tokens, before the route reads the body.
  const actionSecret = deps.secrets.derive('action-signature')
  const checkSignature = verifyActionSignatures({
    secret: actionSecret,
    required: deps.config.AUTH_REQUIRE_ACTION_SIGNATURE,
    replay: new ActionSignatureReplayGuard({ shared: redis, log, metrics }),
  })
  const signed =
    (auth: MiddlewareHandler<AppEnv>): MiddlewareHandler<AppEnv> =>
    (c, next) =>
      auth(c, async () => {
        await checkSignature(c, next)
      })
  // Session tokens draw each ingest request's events from their max_events budget (429 past it).
  const budget = sessionEventBudget(sql)
  // Every route's guard comes from the permission it declares (src/http/permissions.ts, issue 10):
  // credentials hold permissions by scope, people by role. `read` is held by credentials meant
  // for reading, never by a machine's (docs/rbac.md).
  const guard = (permission: Permission) => signed(requireAuth(resolver, { permission }))
  const budgeted = (permission: Permission): MiddlewareHandler<AppEnv> => {
    const auth = guard(permission)
    return (c, next) =>
      auth(c, async () => {
        await budget(c, next)
      })
  }
  const guards: Guards = {
    authenticated: signed(requireAnyAuth(resolver)),
    enroll: guard('enroll'),
    machine: budgeted('machine'),
    ingest: budgeted('ingest'),
    read: guard('read'),
    triage: guard('triage'),
    manage: guard('manage'),
    members: guard('members'),
  }
  // Idempotency-Key on the routes marked `idempotent` (src/http/idempotency.ts, issue 14).
  const routes = new RouteRegistry(app, guards, { idempotency: new IdempotencyStore(sql, deps.secrets) })
  mountAuthTokens(routes, { sql, keys, maxDepth: deps.config.AUTH_MAX_DELEGATION_DEPTH, actionSecret, live })
  mountSigningKeys(routes, { sql, keys })
  mountRevocation(routes, {
    sql,
    live,
    async onRevoked(entries) {
      validator.evict(entries)
      fleet.recheck()
      live.recheck()
      // Postgres is committed; a filter that misses an add turns to 'unknown' on its own repair.
      await revocationFilter
        .add(entries)
        .catch((err: unknown) => log.error({ err }, 'revocation committed but the revocation filter add failed'))
    },
  })
  mountIntrospection(routes)
  mountFilterRebuild(routes, {
    sql,
    filter: revocationFilter,
    clockSkewS: deps.config.AUTH_CLOCK_SKEW_S,
    onRebuilt: () => validator.evict([]),
  })
  mountOverrides(routes, { sql, fleet, live, secret: deps.secrets.derive('override-cosign') })
  mountApiTokens(routes, { sql, resolver })
  // Before the policies: `/v1/policies/active` is the CLI's, not a policy id.
  mountAuditSync(routes, { sql })
  mountPolicies(routes, { sql, fleet })
  mountSignatures(routes, { sql, fleet })
  mountSimulate(routes, { sql: deps.readSql ?? sql })
  // Retro-hunt raises alerts: on the primary.
  mountBackfill(routes, { sql })
  mountDeployTokens(routes, { sql, resolver })
  // One quota per org across every ingest path (v2, API-reference, daemon, lifecycle).
  const limiter = new OrgRateLimiter(deps.config.INGEST_RATE_PER_S, deps.config.INGEST_RATE_BURST, {
    shared: redis,
    log,
    metrics,
  })
  mountIngest(routes, { sql, bus, limiter, metrics })
  mountMachines(routes, { sql, bus, limiter, resolver, metrics, latestVersion: deps.config.DAEMON_LATEST_VERSION, live })
  mountFleet(routes, { sql, hub: fleet, resolver })
  // The read side (issue 9): every read may go to a replica.
  const readSql = deps.readSql ?? sql
  mountAlerts(routes, { sql, readSql, live })
  mountEvents(routes, { sql: readSql })
  mountSessions(routes, { sql: readSql })
  mountAgents(routes, { sql: readSql })
  mountMachineInventory(routes, { sql: readSql, primary: sql, resolver, fleet })
  mountChain(routes, { sql: readSql })
  mountIngestStats(routes, { sql: readSql })
  mountOrgSettings(routes, { sql, fleet })
  mountTeam(routes, { sql, resolver })
  mountAuditLog(routes, { sql: readSql })
  // On the primary: a ring announces a commit the replica may not show yet.
  mountLive(routes, { hub: live, resolver })
  mountDeadLetters(routes, { sql, bus, metrics })
  mountWebhooks(routes, {
    sql,
    secrets: deps.secrets,
    policy: { allowInsecure: deps.config.WEBHOOK_ALLOW_INSECURE, allowPrivate: deps.config.WEBHOOK_ALLOW_PRIVATE_TARGETS },
  })

  let doc: string | null = null
  app.get('/openapi.json', (c) => {
    doc ??= JSON.stringify(routes.document({ title: 'quint-cloud', version: VERSION }))
    return c.body(doc, 200, { 'content-type': 'application/json' })
  })
  mountDocs(app)
  // The console (issue 12): the same binary serves it at `/`, reading only the API above.
  mountConsole(
    app,
    {
      oidc:
        deps.config.OIDC_ISSUER && deps.config.CONSOLE_OIDC_CLIENT_ID
          ? {
              issuer: deps.config.OIDC_ISSUER,
              client_id: deps.config.CONSOLE_OIDC_CLIENT_ID,
              scopes: deps.config.CONSOLE_OIDC_SCOPES,
            }
          : null,
      version: VERSION,
    },
    log,
  )

  // 405 + Allow for a known path with another method, else 404 (issue 14).
  app.notFound(notFoundOrNotAllowed(app))
  app.onError((err, c) => errorToProblem(err, c.get('requestId'), c.get('log') ?? log))
  let started: Promise<void> | null = null
  return {
    app,
    routes,
    resolver,
    metrics,
    revocationFilter,
    fleet,
    live,
    start() {
      started ??= Promise.all([fleet.start(), live.start(), poll ? poll.start() : Promise.resolve()])
        .then(() => revocationFilter.rebuild(revokedList()))
        .then(
          () => {},
          (err: unknown) => log.error({ err }, 'revocation filter rebuild failed; revocation checks use Postgres'),
        )
      return started
    },
    async stop() {
      try {
        await fleet.stop()
        await live.stop()
        await poll?.stop()
        await revocationFilter.close()
      } finally {
        // Before the pools close: the token use counted since the last write (docs/tokens.md).
        await resolver.close()
      }
    },
  }
}

/**
 * The app with no database behind it (the pool is never connected): for `quint-cloud openapi`
 * and for benchmarking the HTTP stack on routes that touch no store. Never started.
 */
export function offlineApp(config: Config, log: Logger) {
  const sql = createPool({ url: 'postgres://unused@127.0.0.1:1/unused' }, { max: 1 })
  const lifecycle = new Lifecycle(log)
  const composed = composeApp({
    config,
    sql,
    log,
    lifecycle,
    bus: new LocalBus(),
    // Nothing is sealed or opened offline: a throw-away key.
    secrets: new SecretBox(randomBytes(32)),
  })
  lifecycle.markReady()
  return { ...composed, close: () => sql.end({ timeout: 0 }) }
}
