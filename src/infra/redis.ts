/**
 * @module infra/redis
 * The cluster mode's shared state (REDIS_URL): the per-org ingest buckets, the write-through cache
 * of opaque-token lookups, and the revocation channel. Keys and channels (docs/redis.md):
 *
 *   tenant:{<org id>}:ingest:bucket   hash {tokens, at}: the org's ingest token bucket
 *   tenant:{<org id>}:actsig:<jti>:<t>:<v1>  a used X-Action-Signature, until it leaves the window
 *   auth:token:<sha256 hex>           a resolved token (JSON), or the tombstone `revoked`
 *   auth:revoked (channel)            sha256 hex of each revoked token
 *   auth:revocation:bloom:…, auth:revocation (channel)   the JWT revocation filter (./redis-bloom.ts)
 *
 * Two connections: commands, and a subscriber (a connection in subscribe mode runs nothing else).
 * The command connection has no offline queue and a short command timeout: with a dead or hung
 * Redis a command fails fast instead of queueing without bound (ioredis #285), and the caller
 * falls back to its local path. Both reconnect forever with capped, jittered backoff.
 *
 * Nothing here decides policy: callers choose what a failure means (src/features/ingest/rate-limit.ts,
 * src/auth/credentials.ts).
 */
import Redis from 'ioredis'
import { Gauge } from 'prom-client'
import type { Logger } from './log.ts'
import type { Metrics } from './metrics.ts'
import { RedisBloom } from './redis-bloom.ts'

export const REVOKED_CHANNEL = 'auth:revoked'
const TOMBSTONE = 'revoked'
/**
 * Far longer than any lookup takes between its Postgres read and its cache write, so a write
 * carrying a pre-revocation read always meets the tombstone (the resolver also drops writes of
 * slow lookups).
 */
const TOMBSTONE_TTL_MS = 10 * 60_000
const HASH_HEX = /^[0-9a-f]{64}$/

export const bucketKey = (orgId: string) => `tenant:{${orgId}}:ingest:bucket`
export const tokenKey = (hashHex: string) => `auth:token:${hashHex}`
/** A used action signature (org from the verified token; `v1` is the lower-case hex MAC). */
export const actionSignatureKey = (orgId: string, jti: string, t: number, v1: string) =>
  `tenant:{${orgId}}:actsig:${jti}:${t}:${v1}`

/**
 * Refill by elapsed time on the server's clock (instances' clocks never meet), then take ARGV[3]
 * tokens or answer the wait in ms. A refusal writes nothing: it costs the org nothing. The key
 * expires when the bucket would be full again, which is the same as no key.
 * A clock that went back (failover) refills nothing rather than going negative.
 */
const TAKE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000)
  at = now
end
if tokens >= n then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - n), 'at', tostring(at))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
  return 0
end
return math.max(1, math.ceil((n - tokens) * 1000 / rate))
`

/** Writes a resolved token unless it has been revoked meanwhile (the tombstone wins). */
const PUT_TOKEN_LUA = `
if redis.call('GET', KEYS[1]) == '${TOMBSTONE}' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`

type Commands = Redis & {
  quintTake(key: string, rate: number, burst: number, n: number): Promise<number>
  quintPutToken(key: string, value: string, ttlMs: number): Promise<number>
}

export interface ChannelHandlers {
  message(message: string): void
  /** The subscription is active: at first and again after every reconnect of the subscriber. */
  subscribed(): void
  /** The subscriber connection dropped: messages published from now on until `subscribed` are lost. */
  lost(): void
}

export type SharedTokenLookup = 'revoked' | { value: unknown; ttlMs: number } | null

export interface RedisStateOptions {
  url: string
  commandTimeoutMs: number
  log: Logger
  metrics?: Metrics
  /** How often the subscriber connection is pinged (default 5 s); see the constructor. */
  subscriberPingMs?: number
}

export class RedisStateStore {
  readonly #cmd: Commands
  /** The JWT revocation filter's shared bitmap (./redis-bloom.ts), on the command connection. */
  readonly bloom: RedisBloom
  readonly #sub: Redis
  readonly #revokedHandlers: ((hashHex: string) => void)[] = []
  readonly #resyncHandlers: (() => void)[] = []
  /** Channels other than REVOKED_CHANNEL (subscribeChannel), created on first use. */
  #channels: Map<string, Set<ChannelHandlers>> | null = null
  /** Revocations published by this process, waiting to come back on the channel. */
  readonly #echoes = new Map<string, (() => void)[]>()
  readonly #timeoutMs: number
  readonly #subscribed: Promise<void>
  readonly #pinger: ReturnType<typeof setInterval>
  private readonly log: Logger

  constructor(options: RedisStateOptions) {
    this.log = options.log.child({ component: 'redis' })
    this.#timeoutMs = options.commandTimeoutMs
    const common = {
      connectTimeout: 2_000,
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000) + Math.floor(Math.random() * 100),
      // Never print the URL (it may carry a password): ioredis names the connection in errors.
      connectionName: 'quint-cloud',
    }
    this.#cmd = new Redis(options.url, {
      ...common,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs,
    }) as Commands
    this.#cmd.defineCommand('quintTake', { numberOfKeys: 1, lua: TAKE_LUA })
    this.#cmd.defineCommand('quintPutToken', { numberOfKeys: 1, lua: PUT_TOKEN_LUA })
    this.bloom = new RedisBloom(this.#cmd)
    // Subscriptions are queued until connected and renewed after every reconnect.
    this.#sub = new Redis(options.url, { ...common, maxRetriesPerRequest: null, autoResubscribe: true })
    this.#watch(this.#cmd, 'command')
    this.#watch(this.#sub, 'subscriber')
    this.#sub.on('ready', () => {
      // Messages published while this connection was down are lost: whatever was cached
      // meanwhile may be revoked, so every listener drops its cache.
      for (const h of this.#resyncHandlers) h()
    })
    this.#sub.on('message', (channel: string, message: string) => {
      if (channel !== REVOKED_CHANNEL || !HASH_HEX.test(message)) return
      for (const h of this.#revokedHandlers) h(message)
      const waiting = this.#echoes.get(message)
      this.#echoes.delete(message)
      for (const resolve of waiting ?? []) resolve()
    })
    this.#subscribed = this.#sub.subscribe(REVOKED_CHANNEL).then(
      () => {},
      (err) => this.log.error({ err }, 'subscribing to the revocation channel failed'),
    )
    if (options.metrics) this.#gauge(options.metrics)
    // A half-open subscriber connection (a NAT or balancer dropped the idle flow, a hung server)
    // never closes by itself, and its lost messages would go unnoticed. A PING that does not
    // come back in time drops the connection: the reconnect then runs the lost/resync handlers.
    const every = options.subscriberPingMs ?? 5_000
    this.#pinger = setInterval(() => {
      if (this.#sub.status !== 'ready') return
      const late = Bun.sleep(Math.max(every, 1_000)).then(() => 'late' as const)
      void Promise.race([
        this.#sub.ping().then(
          () => 'ok' as const,
          () => 'late' as const,
        ),
        late,
      ]).then((r) => {
        if (r === 'ok' || this.#sub.status !== 'ready') return
        this.log.warn('the Redis subscriber did not answer a PING; reconnecting')
        // Destroy, not end(): a FIN to a peer that no longer answers never completes the close,
        // and only a closed socket makes ioredis reconnect (and run the lost/resync handlers).
        ;(this.#sub as unknown as { stream?: { destroy(): void } }).stream?.destroy()
      })
    }, every)
    this.#pinger.unref()
  }

  get connected(): boolean {
    return this.#cmd.status === 'ready'
  }

  /**
   * Resolves once both connections are up and the channel subscribed; rejects after `timeoutMs`.
   * The service does not wait for it (Redis is optional); tests do.
   */
  async whenReady(timeoutMs: number): Promise<void> {
    const ready = (c: Redis) =>
      c.status === 'ready' ? Promise.resolve() : new Promise<void>((resolve) => c.once('ready', () => resolve()))
    let timer: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`redis not ready within ${timeoutMs} ms`)), timeoutMs)
    })
    try {
      await Promise.race([Promise.all([ready(this.#cmd), ready(this.#sub), this.#subscribed]), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Takes `n` tokens from the org's shared bucket: 0 when taken, else the wait in ms. */
  takeTokens(orgId: string, perSecond: number, burst: number, n: number): Promise<number> {
    return this.#cmd.quintTake(bucketKey(orgId), perSecond, burst, n)
  }

  async getToken(hashHex: string): Promise<SharedTokenLookup> {
    const key = tokenKey(hashHex)
    const res = await this.#cmd.multi().get(key).pttl(key).exec()
    const [[getErr, value], [, ttl]] = res as [[Error | null, string | null], [Error | null, number]]
    if (getErr) throw getErr
    if (value === null) return null
    if (value === TOMBSTONE) return 'revoked'
    if (typeof ttl !== 'number' || ttl <= 0) return null
    return { value: JSON.parse(value) as unknown, ttlMs: ttl }
  }

  async putToken(hashHex: string, value: unknown, ttlMs: number): Promise<void> {
    await this.#cmd.quintPutToken(tokenKey(hashHex), JSON.stringify(value), Math.max(1, Math.floor(ttlMs)))
  }

  /**
   * Tombstones the tokens and tells every instance, then waits (bounded) until the message came
   * back to this process: Redis has by then handed it to every subscribed instance.
   */
  async revokeTokens(hashes: readonly string[]): Promise<void> {
    if (hashes.length === 0) return
    const multi = this.#cmd.multi()
    for (const h of hashes) multi.set(tokenKey(h), TOMBSTONE, 'PX', TOMBSTONE_TTL_MS)
    for (const h of hashes) multi.publish(REVOKED_CHANNEL, h)
    const last = hashes[hashes.length - 1]!
    let timer: ReturnType<typeof setTimeout> | undefined
    let done: () => void = () => {}
    const echoed = new Promise<void>((resolve) => {
      done = resolve
      this.#echoes.set(last, [...(this.#echoes.get(last) ?? []), resolve])
      timer = setTimeout(resolve, this.#timeoutMs)
    })
    try {
      const res = await multi.exec()
      const failed = res?.find(([err]) => err)
      if (failed) throw failed[0]
      await echoed
      // Let the event loop read any other subscriber socket of this process that has the message.
      await new Promise((resolve) => setImmediate(resolve))
    } finally {
      clearTimeout(timer)
      const rest = this.#echoes.get(last)?.filter((r) => r !== done)
      if (rest?.length) this.#echoes.set(last, rest)
      else this.#echoes.delete(last)
    }
  }

  onRevoked(handler: (hashHex: string) => void): void {
    this.#revokedHandlers.push(handler)
  }

  onResync(handler: () => void): void {
    this.#resyncHandlers.push(handler)
  }

  // --- Other channels: the JWT revocation filter (src/auth/jwt/revocation-filter.ts), team changes ---

  /** Publishes on a channel of `subscribeChannel` (not the reserved revocation channel). */
  async publish(channel: string, message: string): Promise<void> {
    if (channel === REVOKED_CHANNEL) throw new Error(`${channel} is reserved`)
    await this.#cmd.publish(channel, message)
  }

  /**
   * Subscribes to `channel` on the subscriber connection; `handlers.subscribed` runs once the
   * server confirmed it, and again after every reconnect (re-subscribing explicitly, so the
   * confirmation really follows the new SUBSCRIBE). Returns the unsubscribe function.
   */
  subscribeChannel(channel: string, handlers: ChannelHandlers): () => Promise<void> {
    if (channel === REVOKED_CHANNEL) throw new Error(`${channel} is reserved`)
    if (!this.#channels) {
      const channels = new Map<string, Set<ChannelHandlers>>()
      this.#channels = channels
      this.#sub.on('message', (ch: string, message: string) => {
        for (const h of channels.get(ch) ?? []) h.message(message)
      })
      let up = this.#sub.status === 'ready'
      this.#sub.on('close', () => {
        if (!up) return
        up = false
        for (const set of channels.values()) for (const h of set) h.lost()
      })
      this.#sub.on('ready', () => {
        up = true
        for (const [ch, set] of channels) this.#confirm(ch, set)
      })
    }
    let set = this.#channels.get(channel)
    if (!set) this.#channels.set(channel, (set = new Set()))
    set.add(handlers)
    this.#confirm(channel, new Set([handlers]))
    return async () => {
      set.delete(handlers)
      if (set.size === 0 && this.#channels?.get(channel) === set) {
        this.#channels.delete(channel)
        // Only on a live connection: a down one would queue it forever, and on reconnect the
        // channel is renewed with no handler left, which is harmless.
        if (this.#sub.status !== 'ready') return
        let timer: ReturnType<typeof setTimeout> | undefined
        await Promise.race([
          this.#sub.unsubscribe(channel).catch(() => {}),
          new Promise((resolve) => (timer = setTimeout(resolve, this.#timeoutMs))),
        ])
        clearTimeout(timer)
      }
    }
  }

  #confirm(channel: string, handlers: Set<ChannelHandlers>): void {
    this.#sub.subscribe(channel).then(
      () => {
        for (const h of handlers) if (this.#channels?.get(channel)?.has(h)) h.subscribed()
      },
      // The connection dropped before the reply: 'ready' confirms again after the reconnect.
      (err) => this.log.debug({ err, channel }, 'subscribe not confirmed'),
    )
  }

  /**
   * `SET key 1 PX ttl NX`: true for the first caller, false for every later one until it expires.
   * For single-use checks shared by every instance (action-signature replay, `actionSignatureKey`).
   */
  async claimOnce(key: string, ttlMs: number): Promise<boolean> {
    return (await this.#cmd.set(key, '1', 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX')) === 'OK'
  }

  async close(): Promise<void> {
    clearInterval(this.#pinger)
    const quit = Promise.allSettled([this.#cmd.quit(), this.#sub.quit()])
    await Promise.race([quit, Bun.sleep(1_000)])
    this.#cmd.disconnect()
    this.#sub.disconnect()
  }

  #watch(conn: Redis, name: string): void {
    let lastLog = 0
    let wasReady = false
    conn.on('error', (err: Error) => {
      // Every failed reconnect emits one: log the first and then every 10 s.
      const now = Date.now()
      if (now - lastLog < 10_000) return
      lastLog = now
      this.log.warn({ err, connection: name }, 'redis connection error')
    })
    conn.on('ready', () => {
      if (wasReady) this.log.info({ connection: name }, 'redis reconnected')
      wasReady = true
      lastLog = 0
    })
  }

  #gauge(metrics: Metrics): void {
    const name = 'quint_redis_connected'
    if (metrics.registry.getSingleMetric(name)) return
    const conns = { command: this.#cmd, subscriber: this.#sub }
    new Gauge({
      name,
      help: 'Whether the Redis connection is ready (1) or not (0), by connection.',
      labelNames: ['connection'],
      registers: [metrics.registry],
      collect() {
        for (const [connection, c] of Object.entries(conns)) this.set({ connection }, c.status === 'ready' ? 1 : 0)
      },
    })
  }
}
