/**
 * @module features/fleet/bell
 * The doorbell of the fleet stream (issue 11): "org X has new fleet events", rung on every
 * instance so each one reads the log (./repo.ts) for the daemons it holds. It carries no event
 * itself: a lost ring delays a change until the next keep-alive tick's catch-up, never loses it.
 *
 * - Embedded mode and any instances sharing one Postgres without Redis: `LISTEN quint_fleet`;
 *   every fleet write NOTIFYs in its own transaction, so the ring is sent exactly at commit,
 *   whichever thread or process wrote it.
 * - Cluster mode (REDIS_URL): Redis pub/sub on `fleet:ring`. Writers ring after their commit
 *   (`ring`); consumer threads through their parent (src/bus/pool.ts).
 */
import type { Sql } from '../../infra/db.ts'
import type { Logger } from '../../infra/log.ts'
import type { ChannelHandlers } from '../../infra/redis.ts'
import { FLEET_NOTIFY_CHANNEL } from './repo.ts'

export const FLEET_REDIS_CHANNEL = 'fleet:ring'

export interface BellHandlers {
  /** New events may be in this org's log. */
  ring(orgId: string): void
  /** Rings may have been missed (a reconnect): read every org held. */
  resync(): void
}

export interface FleetBell {
  start(handlers: BellHandlers): Promise<void>
  /** After a commit that wrote fleet events for these orgs: tells the other instances. */
  ring(orgIds: readonly string[]): void
  stop(): Promise<void>
}

/** What the Redis bell needs (RedisStateStore provides it). */
export interface RingChannel {
  publish(channel: string, message: string): Promise<void>
  subscribeChannel(channel: string, handlers: ChannelHandlers): () => Promise<void>
}

export class PostgresBell implements FleetBell {
  #unlisten: (() => Promise<void>) | null = null
  private readonly sql: Sql
  private readonly log: Logger

  constructor(sql: Sql, log: Logger) {
    this.sql = sql
    this.log = log
  }

  async start(handlers: BellHandlers): Promise<void> {
    try {
      // postgres.js listens again after a reconnect and calls the third argument each time.
      const sub = await this.sql.listen(
        FLEET_NOTIFY_CHANNEL,
        (org) => handlers.ring(org),
        () => handlers.resync(),
      )
      this.#unlisten = () => sub.unlisten()
    } catch (err) {
      this.log.warn({ err }, 'LISTEN quint_fleet failed; fleet streams catch up at each keep-alive tick')
    }
  }

  // The transaction's NOTIFY already did.
  ring(): void {}

  async stop(): Promise<void> {
    await this.#unlisten?.().catch(() => {})
  }
}

export class RedisBell implements FleetBell {
  #unsubscribe: (() => Promise<void>) | null = null
  private readonly channel: RingChannel
  private readonly log: Logger

  constructor(channel: RingChannel, log: Logger) {
    this.channel = channel
    this.log = log
  }

  async start(handlers: BellHandlers): Promise<void> {
    let first = true
    this.#unsubscribe = this.channel.subscribeChannel(FLEET_REDIS_CHANNEL, {
      message: (org) => handlers.ring(org),
      // Every confirmation after the first follows a reconnect: what was published meanwhile is lost.
      subscribed: () => (first ? (first = false) : handlers.resync()),
      lost: () => {},
    })
  }

  ring(orgIds: readonly string[]): void {
    for (const org of orgIds) {
      this.channel
        .publish(FLEET_REDIS_CHANNEL, org)
        .catch((err: unknown) =>
          this.log.warn({ err, org_id: org }, 'fleet ring not published; other instances catch up at their next tick'),
        )
    }
  }

  async stop(): Promise<void> {
    await this.#unsubscribe?.()
  }
}
