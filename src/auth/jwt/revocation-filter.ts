/**
 * @module auth/jwt/revocation-filter
 * The JWT revocation filter (docs/revocation.md): a bloom filter of `${orgId}:${jti}` that the
 * validator asks, synchronously and in well under a microsecond, whether a token may be revoked.
 * `false` is definite; `true` and `'unknown'` send the validator to Postgres, the authority.
 *
 * Memory mode: the filter lives in this process; `rebuild` fills it from Postgres at start.
 * Cluster mode (Redis): every instance keeps a local copy and follows one shared generation,
 * `auth:revocation:bloom:<gen>` (a bitmap in the same bit order), through the channel
 * `auth:revocation`: each add is SETBIT into the generation's bitmap and published, so every
 * instance adds it at once; a new instance subscribes first, then GETs the whole bitmap.
 *
 * Whatever could have made the local copy miss a revocation — not loaded yet, subscriber
 * dropped (messages lost), a generation it has not loaded, the shared bitmap missing or short
 * (FLUSHALL, eviction, failover), other parameters (mixed versions), Redis not answering the
 * periodic check — turns non-hits into 'unknown' until a reload succeeds. A hit stays `true`
 * in every state: it only ever costs a Postgres lookup.
 *
 * The revocation SLO (issue 14): each revocation carries its commit time (`committedAt`, set by
 * the instance that committed it, or derived from the database's clock by the poll) and, on its
 * first arrival here, the time from that commit to its local add (after which the validator
 * refuses it) is observed as `quint_revocation_propagation_seconds{path}`: `local` on the
 * revoking instance, `pubsub` on the others with Redis, `poll` on the others without.
 *
 * One state machine (load, add, rebuild, repair, verify), kept in one file, past the usual size,
 * so that the rules above can be checked against a single reading of it.
 */
import type { ChannelHandlers } from '../../infra/redis.ts'
import type { BloomGeneration, RedisBloom } from '../../infra/redis-bloom.ts'
import type { Logger } from '../../infra/log.ts'
import { registerRevocationFilterGauges, type Metrics } from '../../infra/metrics.ts'
import { BloomFilter, bloomItem, bloomParams, bloomPositions, sameParams, type BloomParams } from './bloom.ts'

export interface RevocationEntry {
  orgId: string
  jti: string
  /**
   * When the revocation was committed, in ms since the epoch on this host's clock; absent for
   * one that is only re-announced (revoked before) or whose commit time is unknown: not observed.
   */
  committedAt?: number
}

/** How a revocation reached this instance's filter (the `path` label of the SLO histogram). */
export type RevocationPath = 'local' | 'pubsub' | 'poll'

export type RevocationEntries = Iterable<RevocationEntry> | AsyncIterable<RevocationEntry>

export interface RevocationFilter {
  /** false: definitely not revoked. true: maybe revoked → confirm. 'unknown': cannot answer → confirm. */
  check(orgId: string, jti: string): boolean | 'unknown'
  /**
   * After the Postgres commit: local filter, then (cluster) the shared bitmap + channel. Never
   * throws for Redis. `path`: how the entries reached this instance (default `local`: revoked here).
   */
  add(entries: readonly RevocationEntry[], options?: { path?: Exclude<RevocationPath, 'pubsub'> }): Promise<void>
  /** Every jti added anywhere (here, or another instance through the channel). */
  onAdded(handler: (orgId: string, jti: string) => void): void
  /**
   * A different generation was swapped in (a rebuild here, or one loaded from Redis), or the
   * filter stopped being sure (subscriber lost, bitmap gone: `'unknown'` is passed): revocations
   * may have been missed that `onAdded` never reported, so caches built on the old answers must
   * be dropped.
   */
  onGeneration(handler: (generation: string) => void): void
  /**
   * A new generation from the authoritative list, swapped in atomically. Pass an iterable that
   * reads its snapshot when iterated (an async generator over a query): a revocation committed
   * after that read reaches the new generation through `add`. A list read earlier still ends up
   * in this instance's filter (adds of the last 5 min are replayed) but, in a narrow race, not in
   * the shared bitmap that later instances load.
   */
  rebuild(entries: RevocationEntries): Promise<{ generation: string; count: number }>
  stats(): { generation: string | null; bits: number; hashes: number; setBits: number; count: number; loaded: boolean }
  close(): Promise<void>
}

/** What the filter needs from Redis; `RedisStateStore` (src/infra/redis.ts) provides it. */
export interface RevocationStore {
  subscribeChannel(channel: string, handlers: ChannelHandlers): () => Promise<void>
  readonly bloom: Pick<RedisBloom, 'targets' | 'verify' | 'bitmap' | 'add' | 'begin' | 'commit' | 'tryLock' | 'unlock'>
}

export interface RevocationFilterOptions {
  redis?: RevocationStore | null
  log: Logger
  metrics?: Metrics
  expectedItems?: number
  falsePositiveRate?: number
  /** Prefix of the Redis keys and name of the channel; default `auth:revocation` (tests use their own). */
  namespace?: string
  /**
   * The authoritative list (Postgres). When given, an instance that finds the shared generation
   * lost rebuilds it (one instance at a time) instead of staying 'unknown' until someone calls
   * `rebuild`. It must read its snapshot when called.
   */
  source?: () => RevocationEntries
  /** Cluster mode: how often the shared generation is checked to still be there (ms). */
  verifyIntervalMs?: number
  /**
   * Cluster mode with `source`: rebuild the shared generation when it is older than this (ms;
   * default 15 min, 0 = never), one instance at a time. Bounds what an add that never reached
   * Redis, or bits lost in a failover, can cost, and sheds the jtis the source no longer lists.
   */
  rebuildIntervalMs?: number
}

/**
 * Adds of the last few minutes, replayed into every generation that is swapped in: a rebuild
 * whose list was read before a concurrent revocation committed, or a load racing a message, still
 * ends with it. Bounded so that a mass revocation cannot grow it without limit.
 */
const JOURNAL_MS = 5 * 60_000
const JOURNAL_MAX = 100_000
/** A rebuild that takes longer than this is abandoned by the others (its bitmap expires). */
const BUILD_TTL_MS = 10 * 60_000
/** A replaced generation stays readable this long for instances still loading it. */
const PREVIOUS_TTL_MS = 60_000
const REPAIR_LOCK_MS = 30_000
const GENERATION = /^[a-z0-9-]{1,64}$/
/** Sync lists are added in slices so that checks keep running during a large rebuild. */
const YIELD_EVERY = 16_384

/** `c`: the revocation's commit time (ms since the epoch, the revoking instance's clock). */
type Message = { i: string; t: 'a'; g: string | null; o: string; j: string; c?: number } | { i: string; t: 'g'; g: string }

export function createRevocationFilter(opts: RevocationFilterOptions): RevocationFilter {
  return new BloomRevocationFilter(opts)
}

class BloomRevocationFilter implements RevocationFilter {
  readonly #params: BloomParams
  readonly #redis: RevocationStore | null
  readonly #ns: string
  readonly #log: Logger
  readonly #metrics: Metrics | undefined
  readonly #source: (() => RevocationEntries) | undefined
  readonly #id = crypto.randomUUID()
  readonly #handlers: ((orgId: string, jti: string) => void)[] = []
  readonly #generationHandlers: ((generation: string) => void)[] = []
  /** Filters of rebuilds in progress: every add goes into them too. */
  readonly #building = new Set<BloomFilter>()
  #journal: { item: string; at: number }[] = []
  /**
   * Items that arrived in the last JOURNAL_MS (insertion order = arrival order): a revocation is
   * observed for the SLO on its first arrival only (the revoking instance's own poll sees it again).
   */
  readonly #arrived = new Map<string, number>()
  #journalHead = 0
  /** Bumped by every swap, so a load that raced a rebuild does not put an older generation back. */
  #epoch = 0
  #lastRepairLog = 0
  #bloom: BloomFilter
  #generation: string | null = null
  /** Items of the current generation: its list plus the adds since. */
  #count = 0
  /** Loaded, and (cluster) subscribed since before it was loaded: non-hits are definite. */
  #ready = false
  #subscribed = false
  #loading: Promise<void> | null = null
  #loadAgain = false
  #repairing = false
  /** Adds that did not reach Redis, sent again after the next successful load. */
  #pending: RevocationEntry[] = []
  #unsubscribe: (() => Promise<void>) | null = null
  #timer: ReturnType<typeof setInterval> | null = null
  #rebuildTimer: ReturnType<typeof setInterval> | null = null
  #closed = false

  constructor(opts: RevocationFilterOptions) {
    this.#params = bloomParams(opts.expectedItems, opts.falsePositiveRate)
    this.#redis = opts.redis ?? null
    this.#ns = opts.namespace ?? 'auth:revocation'
    this.#log = opts.log.child({ component: 'revocation-filter' })
    this.#metrics = opts.metrics
    this.#source = opts.source
    this.#bloom = BloomFilter.create(this.#params)
    if (opts.metrics) registerRevocationFilterGauges(opts.metrics.registry, () => this.stats())
    if (this.#redis) {
      this.#unsubscribe = this.#redis.subscribeChannel(this.#ns, {
        message: (m) => this.#onMessage(m),
        subscribed: () => {
          this.#subscribed = true
          void this.#load()
        },
        lost: () => {
          this.#subscribed = false
          this.#invalidate('subscriber connection lost')
        },
      })
      this.#timer = setInterval(() => void this.#verify(), opts.verifyIntervalMs ?? 2_000)
      this.#timer.unref?.()
      const every = opts.rebuildIntervalMs ?? 15 * 60_000
      if (this.#source && every > 0) {
        // Jittered, so that the instances do not all look at once.
        this.#rebuildTimer = setInterval(() => void this.#periodicRebuild(every), every / 4 + Math.random() * (every / 8))
        this.#rebuildTimer.unref?.()
      }
    }
  }

  check(orgId: string, jti: string): boolean | 'unknown' {
    if (this.#bloom.has(bloomItem(orgId, jti))) return true
    return this.#ready ? false : 'unknown'
  }

  async add(entries: readonly RevocationEntry[], options: { path?: Exclude<RevocationPath, 'pubsub'> } = {}): Promise<void> {
    if (entries.length === 0) return
    const path = options.path ?? 'local'
    for (const e of entries) {
      const first = this.#firstArrival(e.orgId, e.jti)
      this.#addLocal(e.orgId, e.jti)
      if (first) this.#observe(path, e.committedAt)
    }
    if (this.#redis) await this.#share(entries)
  }

  /** True the first time an item arrives within JOURNAL_MS (bounded like the journal). */
  #firstArrival(orgId: string, jti: string): boolean {
    const item = bloomItem(orgId, jti)
    const now = Date.now()
    for (const [k, at] of this.#arrived) {
      if (at >= now - JOURNAL_MS && this.#arrived.size < JOURNAL_MAX) break
      this.#arrived.delete(k)
    }
    if (this.#arrived.has(item)) return false
    this.#arrived.set(item, now)
    return true
  }

  /** Commit → refused here, for the revocation SLO; a commit time from a clock ahead counts as 0. */
  #observe(path: RevocationPath, committedAt: number | undefined): void {
    if (!this.#metrics || typeof committedAt !== 'number' || !Number.isFinite(committedAt)) return
    this.#metrics.revocationPropagation.observe({ path }, Math.max(0, Date.now() - committedAt) / 1000)
  }

  onAdded(handler: (orgId: string, jti: string) => void): void {
    this.#handlers.push(handler)
  }

  onGeneration(handler: (generation: string) => void): void {
    this.#generationHandlers.push(handler)
  }

  #generationChanged(generation: string): void {
    for (const h of this.#generationHandlers) {
      try {
        h(generation)
      } catch (err) {
        this.#log.error({ err }, 'revocation filter generation handler failed')
      }
    }
  }

  async rebuild(entries: RevocationEntries): Promise<{ generation: string; count: number }> {
    const generation = `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`
    const next = BloomFilter.create(this.#params)
    this.#building.add(next)
    try {
      let began = false
      if (this.#redis) {
        try {
          await this.#redis.bloom.begin(this.#ns, generation, this.#params.bits, BUILD_TTL_MS)
          began = true
        } catch (err) {
          this.#fallback(
            'revocation_bloom_rebuild',
            err,
            'could not start the shared generation; using the rebuilt filter locally',
          )
        }
      }
      let count = 0
      if (Symbol.iterator in entries) {
        for (const e of entries) {
          next.add(bloomItem(e.orgId, e.jti))
          if (++count % YIELD_EVERY === 0) await Bun.sleep(0)
        }
      } else {
        for await (const e of entries) {
          next.add(bloomItem(e.orgId, e.jti))
          count++
        }
      }
      this.#replayJournal(next)
      let shared = false
      if (began) {
        const gen: BloomGeneration = { generation, ...this.#paramsFields(), count, at: Date.now() }
        try {
          const message: Message = { i: this.#id, t: 'g', g: generation }
          shared = await this.#redis!.bloom.commit(this.#ns, gen, next.bytes, JSON.stringify(message), PREVIOUS_TTL_MS)
          if (!shared) this.#log.error({ generation }, 'revocation filter bitmap vanished during the rebuild; not committed')
        } catch (err) {
          this.#fallback(
            'revocation_bloom_rebuild',
            err,
            'could not commit the shared generation; using the rebuilt filter locally',
          )
        }
      }
      // One synchronous swap: a concurrent check sees the old filter or the new, both complete.
      this.#bloom = next
      this.#generation = generation
      this.#epoch++
      this.#count = count
      this.#ready = this.#redis ? shared && this.#subscribed : true
      this.#generationChanged(generation)
      this.#log.info({ generation, count, shared }, 'revocation filter rebuilt')
      if (shared) void this.#flushPending()
      return { generation, count }
    } finally {
      this.#building.delete(next)
    }
  }

  stats() {
    return {
      generation: this.#generation,
      bits: this.#params.bits,
      hashes: this.#params.hashes,
      setBits: this.#bloom.setBits,
      count: this.#count,
      loaded: this.#ready,
    }
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#ready = false
    if (this.#timer) clearInterval(this.#timer)
    if (this.#rebuildTimer) clearInterval(this.#rebuildTimer)
    await this.#unsubscribe?.()
    await this.#loading?.catch(() => {})
  }

  #paramsFields() {
    return { version: this.#params.version, bits: this.#params.bits, hashes: this.#params.hashes }
  }

  #addLocal(orgId: string, jti: string): void {
    const item = bloomItem(orgId, jti)
    this.#bloom.add(item)
    for (const b of this.#building) b.add(item)
    this.#count++
    const now = Date.now()
    const j = this.#journal
    j.push({ item, at: now })
    while (j.length - this.#journalHead > JOURNAL_MAX || j[this.#journalHead]!.at < now - JOURNAL_MS) this.#journalHead++
    if (this.#journalHead > 1024 && this.#journalHead > j.length / 2) {
      this.#journal = j.slice(this.#journalHead)
      this.#journalHead = 0
    }
    for (const h of this.#handlers) {
      try {
        h(orgId, jti)
      } catch (err) {
        this.#log.error({ err }, 'revocation handler failed')
      }
    }
  }

  #replayJournal(into: BloomFilter): void {
    const now = Date.now()
    for (let i = this.#journalHead; i < this.#journal.length; i++) {
      const e = this.#journal[i]!
      if (e.at >= now - JOURNAL_MS) into.add(e.item)
    }
  }

  /** Into the shared generation(s) and onto the channel; on failure kept for the next load. */
  async #share(entries: readonly RevocationEntry[]): Promise<void> {
    try {
      const { current, building } = await this.#redis!.bloom.targets(this.#ns)
      const usable = current && sameParams(current, this.#params) ? current.generation : null
      const gens = [...(usable ? [usable] : []), ...building.filter((g) => GENERATION.test(g))]
      const items = entries.map((e) => {
        const message: Message = { i: this.#id, t: 'a', g: usable, o: e.orgId, j: e.jti }
        if (e.committedAt !== undefined) message.c = e.committedAt
        return { positions: bloomPositions(this.#params, bloomItem(e.orgId, e.jti)), message: JSON.stringify(message) }
      })
      const wrote = await this.#redis!.bloom.add(this.#ns, gens, items)
      if (!usable || wrote.some((w) => w[0] !== 1)) {
        // Published, so running instances have it, but no complete shared bitmap holds it.
        this.#invalidate(usable ? 'shared bitmap missing' : 'no usable shared generation')
        void this.#load()
      }
    } catch (err) {
      this.#pending.push(...entries)
      this.#fallback(
        'revocation_bloom_add',
        err,
        'revocation committed but not shared through Redis; retried after the next load',
      )
    }
  }

  async #flushPending(): Promise<void> {
    if (this.#pending.length === 0) return
    const pending = this.#pending
    this.#pending = []
    await this.#share(pending)
  }

  #onMessage(raw: string): void {
    if (this.#closed) return
    let m: Message
    try {
      m = JSON.parse(raw) as Message
    } catch {
      return
    }
    if (!m || m.i === this.#id) return
    if (m.t === 'a' && typeof m.o === 'string' && typeof m.j === 'string') {
      const first = this.#firstArrival(m.o, m.j)
      this.#addLocal(m.o, m.j)
      if (first) this.#observe('pubsub', m.c)
      if (m.g !== null && m.g !== this.#generation && this.#ready) {
        this.#invalidate(`message for generation ${m.g}`)
        void this.#load()
      }
    } else if (m.t === 'g' && typeof m.g === 'string' && m.g !== this.#generation) {
      this.#invalidate(`new generation ${m.g}`)
      void this.#load()
    }
  }

  #invalidate(reason: string): void {
    const was = this.#ready
    this.#ready = false
    if (!was) return
    this.#log.warn({ reason, generation: this.#generation }, 'revocation filter unknown until reloaded')
    // Revocations may have been missed meanwhile (lost messages): answers cached on the old
    // state must go, so the next checks reach Postgres.
    this.#generationChanged('unknown')
  }

  /** Coalesced: a request during a load runs one more load after it. */
  #load(): Promise<void> {
    if (this.#closed) return Promise.resolve()
    if (this.#loading) {
      this.#loadAgain = true
      return this.#loading
    }
    this.#loading = (async () => {
      do {
        this.#loadAgain = false
        await this.#loadOnce().catch((err) => {
          this.#invalidate('load failed')
          this.#fallback('revocation_bloom_load', err, 'could not load the shared revocation filter')
        })
      } while (this.#loadAgain && !this.#closed)
    })().finally(() => {
      this.#loading = null
    })
    return this.#loading
  }

  async #loadOnce(): Promise<void> {
    // Subscribed before the read: every add whose SETBIT the GET misses is a message still to come.
    if (!this.#subscribed) return
    const redis = this.#redis!
    const epoch = this.#epoch
    const { current } = await redis.bloom.targets(this.#ns)
    if (!current) {
      this.#invalidate('no shared generation')
      return this.#repair('no shared generation')
    }
    if (!sameParams(current, this.#params) || !GENERATION.test(current.generation)) {
      this.#invalidate('shared generation has other parameters')
      this.#log.error(
        { shared: current, local: this.#params },
        'revocation filter parameters differ from the shared generation; every check goes to Postgres',
      )
      return
    }
    const bytes = await redis.bloom.bitmap(this.#ns, current.generation)
    const loaded = bytes && BloomFilter.fromBytes(this.#params, bytes)
    if (!loaded) {
      this.#invalidate('shared bitmap missing or short')
      return this.#repair('shared bitmap missing or short')
    }
    // Same generation again (after a reconnect): keep what we had too; a union never loses an item.
    if (this.#generation === current.generation) loaded.merge(this.#bloom)
    this.#replayJournal(loaded)
    if (this.#closed) return
    if (epoch !== this.#epoch) {
      // A rebuild swapped in its generation meanwhile; read the pointer again.
      this.#loadAgain = true
      return
    }
    const changed = this.#generation !== current.generation
    this.#bloom = loaded
    this.#generation = current.generation
    this.#epoch++
    if (changed) this.#count = current.count
    this.#ready = this.#subscribed
    if (changed) this.#generationChanged(current.generation)
    if (this.#ready) this.#log.info({ generation: current.generation }, 'revocation filter loaded')
    await this.#flushPending()
  }

  /** The shared generation is gone: rebuild it from the authority if we were given one. */
  async #repair(reason: string): Promise<void> {
    if (!this.#source || this.#repairing) {
      if (!this.#source && Date.now() - this.#lastRepairLog > 60_000) {
        this.#lastRepairLog = Date.now()
        this.#log.error({ reason }, 'revocation filter needs a rebuild from Postgres; checks go to Postgres until then')
      }
      return
    }
    this.#repairing = true
    let locked = false
    try {
      // The others wait for the new generation's notice (or their next verify).
      locked = await this.#redis!.bloom.tryLock(this.#ns, this.#id, REPAIR_LOCK_MS)
      if (!locked) return
      this.#log.warn({ reason }, 'rebuilding the shared revocation filter from the authoritative list')
      await this.rebuild(this.#source())
    } catch (err) {
      this.#log.error({ err }, 'revocation filter repair failed')
    } finally {
      this.#repairing = false
      if (locked) await this.#redis!.bloom.unlock(this.#ns, this.#id).catch(() => {})
    }
  }

  async #periodicRebuild(every: number): Promise<void> {
    if (this.#closed || !this.#ready || this.#repairing) return
    try {
      const { current } = await this.#redis!.bloom.targets(this.#ns)
      if (current && Date.now() - current.at < every) return
      await this.#repair('periodic rebuild')
    } catch (err) {
      this.#log.warn({ err }, 'periodic revocation filter rebuild skipped')
    }
  }

  /** Catches what sends no event: FLUSHALL, eviction, a hung server, a missed generation notice. */
  async #verify(): Promise<void> {
    if (this.#closed || this.#loading || !this.#subscribed) return
    if (!this.#ready || this.#generation === null) return void this.#load()
    const generation = this.#generation
    try {
      const { current, length } = await this.#redis!.bloom.verify(this.#ns, generation)
      if (current !== generation || length !== this.#params.bits / 8) {
        this.#invalidate(current !== generation ? 'generation changed' : 'shared bitmap missing or short')
        void this.#load()
      } else if (this.#pending.length) {
        // Redis answers again, and no reconnect told us (a hung server, a partition of our side).
        await this.#flushPending()
      }
    } catch (err) {
      this.#invalidate('redis not answering')
      this.#fallback('revocation_bloom_verify', err, 'revocation filter check against Redis failed')
    }
  }

  #fallback(op: string, err: unknown, msg: string): void {
    this.#metrics?.redisFallbacks.inc({ op })
    this.#log.warn({ err, op }, msg)
  }
}
