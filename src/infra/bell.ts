/**
 * @module infra/bell
 * A doorbell between instances: "org X has something new on channel C", rung so that each
 * instance reads what is new for the streams it holds. It carries no data: a lost ring delays
 * the news until the reader's next catch-up tick, never loses it. Two streams ring it, each on its
 * own channel: the fleet stream (issue 11, src/features/fleet) and the console's live stream
 * (issue 12, src/features/live). The live stream's `fleet` topic reads the fleet log, so the fleet
 * hub passes every ring of the fleet bell on to the live streams of its instance.
 *
 * - Without Redis (embedded mode, or instances sharing one Postgres): `LISTEN <channel>`. A writer
 *   either NOTIFYs in its own transaction (the fleet log: delivered exactly at commit, whichever
 *   thread or process wrote it), or rings after its commit and the bell NOTIFYs (`notify: true`:
 *   the live stream, whose writers are the ingest consumers and must not NOTIFY per batch).
 * - Cluster mode (REDIS_URL): Redis pub/sub. Writers ring after their commit; consumer threads
 *   through their parent (src/bus/pool.ts).
 */
import type { Sql } from './db.ts'
import type { Logger } from './log.ts'
import type { ChannelHandlers } from './redis.ts'

export interface BellHandlers {
  /** Something new may be there for this org. */
  ring(orgId: string): void
  /** Rings may have been missed (a reconnect): read every org held. */
  resync(): void
}

export interface Bell {
  start(handlers: BellHandlers): Promise<void>
  /** After a commit that wrote something for these orgs: tells the other instances. */
  ring(orgIds: readonly string[]): void
  stop(): Promise<void>
}

/** What the Redis bell needs (RedisStateStore provides it). */
export interface RingChannel {
  publish(channel: string, message: string): Promise<void>
  subscribeChannel(channel: string, handlers: ChannelHandlers): () => Promise<void>
}

export class PostgresBell implements Bell {
  #unlisten: (() => Promise<void>) | null = null
  private readonly sql: Sql
  private readonly log: Logger
  private readonly channel: string
  private readonly notify: boolean

  /**
   * `notify`: `ring` sends the NOTIFY (after the writer's commit); false when writers NOTIFY in
   * their own transactions.
   */
  constructor(sql: Sql, log: Logger, options: { channel: string; notify: boolean }) {
    this.sql = sql
    this.log = log
    this.channel = options.channel
    this.notify = options.notify
  }

  async start(handlers: BellHandlers): Promise<void> {
    try {
      // postgres.js listens again after a reconnect and calls the third argument each time.
      const sub = await this.sql.listen(
        this.channel,
        (org) => handlers.ring(org),
        () => handlers.resync(),
      )
      this.#unlisten = () => sub.unlisten()
    } catch (err) {
      this.log.warn({ err, channel: this.channel }, 'LISTEN failed; streams catch up at each keep-alive tick')
    }
  }

  ring(orgIds: readonly string[]): void {
    if (!this.notify || orgIds.length === 0) return
    // One statement for every org rung: a NOTIFY each.
    this.sql`select pg_notify(${this.channel}, o) from unnest(${orgIds as string[]}::text[]) as o`.catch((err: unknown) =>
      this.log.warn({ err, channel: this.channel }, 'ring not sent; other instances catch up at their next tick'),
    )
  }

  async stop(): Promise<void> {
    await this.#unlisten?.().catch(() => {})
  }
}

export class RedisBell implements Bell {
  #unsubscribe: (() => Promise<void>) | null = null
  private readonly redis: RingChannel
  private readonly log: Logger
  private readonly channel: string

  constructor(redis: RingChannel, log: Logger, channel: string) {
    this.redis = redis
    this.log = log
    this.channel = channel
  }

  async start(handlers: BellHandlers): Promise<void> {
    let first = true
    this.#unsubscribe = this.redis.subscribeChannel(this.channel, {
      message: (org) => handlers.ring(org),
      // Every confirmation after the first follows a reconnect: what was published meanwhile is lost.
      subscribed: () => (first ? (first = false) : handlers.resync()),
      lost: () => {},
    })
  }

  ring(orgIds: readonly string[]): void {
    for (const org of orgIds) {
      this.redis
        .publish(this.channel, org)
        .catch((err: unknown) =>
          this.log.warn(
            { err, org_id: org, channel: this.channel },
            'ring not published; other instances catch up at their next tick',
          ),
        )
    }
  }

  async stop(): Promise<void> {
    await this.#unsubscribe?.()
  }
}
