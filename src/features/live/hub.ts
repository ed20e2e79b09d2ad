/**
 * @module features/live/hub
 * The console's live streams one instance holds (issue 12; docs/live.md), and what it tells them.
 *
 * - Per org with at least one stream, ONE reader: a ring (src/infra/bell.ts: the live bell, or the
 *   fleet bell for fleet changes, which the fleet hub passes on: `heard`) or the keep-alive
 *   tick reads what is new since the org's streams' cursors, in one tenant transaction: the live
 *   log (./repo.ts: stored actions, raised or triaged alerts, policy deliveries) and the fleet log
 *   (../fleet/repo.ts), each row fetched once however many streams want it, one query per topic.
 *   Each item is framed and encoded once, and the same bytes are written to every stream of the
 *   org that follows its topic (each stream counts them against its own unread bound).
 * - Each stream keeps its own cursors (set when it connects), and moves past every read it took
 *   part in: a stream that joins while a read is in flight gets what committed after it joined
 *   from the next read, never loses it.
 * - At most `perCredential` streams of one credential (a person counts once) in an org: past it its
 *   oldest is closed (`replaced`), so one credential never takes the org's `perOrg` places.
 * - Bounded: more than LIVE_BOUND rows (or MAX_READ_BYTES, ./read.ts) of a topic at once are
 *   replaced by one `gap` (the console refetches the list); reads of one org are at least
 *   MIN_READ_INTERVAL_MS apart however fast rings come; a client that stops reading gets nothing more once
 *   MAX_QUEUED_BYTES are unread, a `gap` per topic it missed when it has caught up, and is closed
 *   if it is still behind a keep-alive interval later.
 * - Every `keepAliveMs`: a comment on every stream, every credential checked again (a revoked
 *   token, an expired one, a person no longer a member), every org read again (the catch-up for a
 *   lost ring). A revoked opaque credential's streams are checked at once (`revoked`).
 */
import { checkStreams, oneAtATime, type SseSink } from '../../http/sse.ts'
import type { Bell } from '../../infra/bell.ts'
import { withOrg, type Sql } from '../../infra/db.ts'
import type { Logger } from '../../infra/log.ts'
import { lastSeq } from '../fleet/repo.ts'
import { readOrg, type GapReason, type Read } from './read.ts'
import { liveLogEnd } from './repo.ts'
import type { LiveTopic } from './schema.ts'

/** Bytes a client may leave unread; past it, it gets nothing more until it has caught up. */
export const MAX_QUEUED_BYTES = 4 * 1024 * 1024
/** A client that fell behind is sent its `gap`s once it has read down to this. */
const RESUME_BYTES = 256 * 1024
/** Least time between two reads of one org, however fast rings come. */
const MIN_READ_INTERVAL_MS = 100
/** Rings for other instances are sent together, at most this often. */
const RING_FLUSH_MS = 50

export interface LiveStream {
  orgId: string
  topics: readonly LiveTopic[]
  /** The presented credential's SHA-256 hex (opaque tokens): its revocation checks the stream at once. */
  tokenHash: string | null
  /** Who holds it, for the per-credential bound: the token (its id or jti), or the person (member id). */
  credential: string
  /** Whether the credential still reads the org (re-authenticated, not counted as a use). */
  stillValid(): Promise<boolean>
  sink: SseSink
  /** The last live log and fleet log seq this stream was handed (or read past). */
  logSeq: number
  fleetSeq: number
  /** Topics of which something was not written (the client fell behind): a `gap` each is owed. */
  missed: Set<LiveTopic>
  /** When it fell behind (ms), null while it keeps up. */
  behindSince: number | null
}

export interface LiveHubOptions {
  sql: Sql
  bell: Bell
  log: Logger
  keepAliveMs: number
  perOrg: number
  /** Streams of one credential in an org; past it the credential's oldest is closed (`replaced`). */
  perCredential: number
  /** Counted: every gap sent, by topic and reason (`quint_live_gaps_total`). */
  onGap?(topic: LiveTopic, reason: GapReason): void
}

export class TooManyLiveStreamsError extends Error {}

interface Feed {
  streams: Set<LiveStream>
  /** Streams being added (positioned), counted against the bounds. */
  joining: Set<LiveStream>
}

export class LiveHub {
  readonly #feeds = new Map<string, Feed>()
  readonly #pumping = new Map<string, { again: boolean }>()
  #timer: ReturnType<typeof setInterval> | null = null
  readonly #remote = new Set<string>()
  #flush: ReturnType<typeof setTimeout> | null = null
  #stopped = false
  /** Every stream's credential checked again; one recheck at a time, a request meanwhile runs once more. */
  readonly #recheckAll = oneAtATime(() => checkStreams(this.#all(), (s) => this.#close(s, 'credential_invalid')))
  private readonly o: LiveHubOptions

  constructor(options: LiveHubOptions) {
    this.o = options
  }

  async start(): Promise<void> {
    await this.o.bell.start({ ring: (org) => this.#pump(org), resync: () => this.#pumpAll() })
    this.#timer = setInterval(() => void this.#tick(), this.o.keepAliveMs)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer) clearInterval(this.#timer)
    if (this.#flush) clearTimeout(this.#flush)
    await this.o.bell.stop()
    for (const feed of this.#feeds.values()) for (const s of feed.streams) s.sink.close()
    this.#feeds.clear()
  }

  /** Streams held here, for metrics and tests. */
  get size(): number {
    let n = 0
    for (const feed of this.#feeds.values()) n += feed.streams.size
    return n
  }

  /**
   * After writes that appended to these orgs' live log committed (./repo.ts): read them here at
   * once, and tell the other instances (together, at most every RING_FLUSH_MS).
   */
  ring(orgIds: readonly string[]): void {
    if (orgIds.length === 0) return
    for (const org of orgIds) {
      this.#pump(org)
      this.#remote.add(org)
    }
    this.#flush ??= setTimeout(() => {
      this.#flush = null
      const orgs = [...this.#remote]
      this.#remote.clear()
      this.o.bell.ring(orgs)
    }, RING_FLUSH_MS)
  }

  /**
   * Orgs rung on another instance's doorbell: the fleet log's (../fleet/hub.ts), whose changes
   * the `fleet` topic carries. Read here at once; no other instance is told (each hears that
   * bell itself).
   */
  heard(orgIds: readonly string[]): void {
    for (const org of orgIds) this.#pump(org)
  }

  /** Rings on that other doorbell may have been missed (it reconnected): every org held here is read. */
  resync(): void {
    this.#pumpAll()
  }

  /**
   * Holds a stream: positions its cursors at the end of both logs (what commits from now on is
   * sent), writes `ready`, and returns its release. Past the credential's bound its oldest stream
   * is closed (`replaced`): one credential never takes every place of its org. Past the org's
   * bound (unless it replaces one of its own), TooManyLiveStreamsError.
   */
  async add(s: LiveStream): Promise<() => void> {
    let feed = this.#feeds.get(s.orgId)
    const replaces = feed !== undefined && this.#heldBy(feed, s.credential) >= this.o.perCredential
    if (feed && !replaces && feed.streams.size + feed.joining.size >= this.o.perOrg) throw new TooManyLiveStreamsError()
    if (!feed) this.#feeds.set(s.orgId, (feed = { streams: new Set(), joining: new Set() }))
    feed.joining.add(s)
    const positioned = await withOrg(this.o.sql, s.orgId, async (tx) => {
      s.logSeq = await liveLogEnd(tx)
      s.fleetSeq = await lastSeq(tx)
    }).then(
      () => null,
      (err: unknown) => ({ err }),
    )
    feed.joining.delete(s)
    // The client may have gone while it was positioned.
    if (positioned || !s.sink.open || this.#stopped) {
      if (feed.streams.size === 0 && feed.joining.size === 0) this.#feeds.delete(s.orgId)
      if (positioned) throw positioned.err
      s.sink.close()
      return () => {}
    }
    // Oldest first (a Set keeps insertion order): the streams this one replaces.
    const same = [...feed.streams].filter((x) => x.credential === s.credential)
    for (const old of same.slice(0, Math.max(0, same.length + 1 - this.o.perCredential))) this.#close(old, 'replaced')
    // A replaced stream may have been the org's last: its feed left the map with it.
    this.#feeds.set(s.orgId, feed)
    feed.streams.add(s)
    s.sink.send('ready', null, { topics: s.topics })
    // A read that began while it was positioned did not include it: the next one does.
    this.#pump(s.orgId)
    return () => this.#remove(s)
  }

  /** Opaque credentials just revoked (by hash hex): their streams check them now. */
  revoked(hashHexes: readonly string[]): void {
    const gone = new Set(hashHexes)
    const hit = this.#all().filter((s) => s.tokenHash && gone.has(s.tokenHash))
    void checkStreams(hit, (s) => this.#close(s, 'credential_revoked'))
  }

  /** Some credential was revoked without a hash to match (a JWT): check every stream's now, not at the next tick. */
  recheck(): void {
    void this.#recheckAll()
  }

  /** Streams of the credential in the feed, held or being added. */
  #heldBy(feed: Feed, credential: string): number {
    let n = 0
    for (const x of feed.streams) if (x.credential === credential) n++
    for (const x of feed.joining) if (x.credential === credential) n++
    return n
  }

  #all(): LiveStream[] {
    return [...this.#feeds.values()].flatMap((feed) => [...feed.streams])
  }

  #remove(s: LiveStream): void {
    const feed = this.#feeds.get(s.orgId)
    if (!feed?.streams.delete(s)) return
    if (feed.streams.size === 0 && feed.joining.size === 0) this.#feeds.delete(s.orgId)
  }

  #drop(s: LiveStream): void {
    this.#remove(s)
    s.sink.close()
  }

  #close(s: LiveStream, reason: string): void {
    s.sink.send('closed', null, { reason })
    this.#drop(s)
  }

  async #tick(): Promise<void> {
    const now = Date.now()
    for (const s of this.#all()) {
      if (!s.sink.open) this.#drop(s)
      else if (s.behindSince !== null && !this.#caughtUp(s)) {
        // Still behind a whole interval after it stopped reading: what it holds is stale anyway.
        if (now - s.behindSince >= this.o.keepAliveMs) this.#close(s, 'slow_client')
      } else if (!s.sink.comment('keep-alive')) {
        if (s.sink.open) s.behindSince = now
        else this.#drop(s)
      }
    }
    await this.#recheckAll()
    this.#pumpAll()
  }

  #pumpAll(): void {
    for (const org of this.#feeds.keys()) this.#pump(org)
  }

  #pump(orgId: string): void {
    if (!this.#feeds.get(orgId)?.streams.size) return
    const running = this.#pumping.get(orgId)
    if (running) {
      running.again = true
      return
    }
    const state = { again: false }
    this.#pumping.set(orgId, state)
    void (async () => {
      try {
        do {
          state.again = false
          const started = Date.now()
          const more = await this.#pumpOnce(orgId).catch((err: unknown) => {
            this.o.log.warn({ err, org_id: orgId }, 'live stream read failed; retried at the next ring or tick')
            return false
          })
          if (more) state.again = true
          const wait = MIN_READ_INTERVAL_MS - (Date.now() - started)
          if (state.again && wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
        } while (state.again && this.#feeds.get(orgId)?.streams.size)
      } finally {
        this.#pumping.delete(orgId)
      }
    })()
  }

  /** One read for every stream of the org; true when there is more to read. */
  async #pumpOnce(orgId: string): Promise<boolean> {
    const streams = [...(this.#feeds.get(orgId)?.streams ?? [])]
    if (streams.length === 0) return false
    const want = new Set(streams.flatMap((s) => s.topics))
    const logAfter = Math.min(...streams.map((s) => s.logSeq))
    const following = streams.filter((s) => s.topics.includes('fleet'))
    const fleetAfter = following.length > 0 ? Math.min(...following.map((s) => s.fleetSeq)) : null
    const read = await withOrg(this.o.sql, orgId, (tx) => readOrg(tx, want, logAfter, fleetAfter))
    for (const s of streams) {
      if (this.#feeds.get(orgId)?.streams.has(s)) this.#hand(s, read)
      // Every stream that took part moves past what was read, its topics or not.
      s.logSeq = Math.max(s.logSeq, read.logEnd)
      if (fleetAfter !== null) s.fleetSeq = Math.max(s.fleetSeq, read.fleetEnd)
    }
    return read.more
  }

  /** Writes one stream its share of a read: its topics, after its cursors. */
  #hand(s: LiveStream, read: Read): void {
    if (!s.sink.open) return this.#drop(s)
    const after = (source: 'log' | 'fleet') => (source === 'log' ? s.logSeq : s.fleetSeq)
    const gaps = new Map<LiveTopic, GapReason>()
    for (const g of read.gaps) {
      if (s.topics.includes(g.topic) && after(g.source) < g.before && !gaps.has(g.topic)) gaps.set(g.topic, g.reason)
    }
    // Behind: nothing more is written until it has read down to RESUME_BYTES (then its gaps).
    let behind = s.behindSince !== null && !this.#caughtUp(s)
    for (const t of s.topics) {
      const fresh = read.items[t].filter((i) => i.seq > after(i.source))
      if (!behind) {
        const reason = gaps.get(t)
        behind = reason !== undefined && !this.#gap(s, t, reason)
        for (const item of behind ? [] : fresh) {
          if (!s.sink.write(item.frame)) {
            behind = true
            break
          }
        }
        if (behind) s.missed.add(t)
      } else if (fresh.length > 0 || gaps.has(t)) s.missed.add(t)
    }
    if (!s.sink.open) return this.#drop(s)
    if (behind) s.behindSince ??= Date.now()
  }

  /** Whether a stream that fell behind has read enough to go on; if so its owed gaps are sent. */
  #caughtUp(s: LiveStream): boolean {
    if (!s.sink.open || s.sink.queued() > RESUME_BYTES) return false
    for (const t of s.missed) if (!this.#gap(s, t, 'slow_client')) return false
    s.missed.clear()
    s.behindSince = null
    return true
  }

  #gap(s: LiveStream, topic: LiveTopic, reason: GapReason): boolean {
    if (!s.sink.send('gap', null, { topic, reason })) return false
    this.o.onGap?.(topic, reason)
    return true
  }
}
