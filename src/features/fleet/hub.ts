/**
 * @module features/fleet/hub
 * The fleet streams one instance holds (issue 11; docs/fleet-stream.md), and what it tells them.
 *
 * - A ring for an org (src/infra/bell.ts) reads that org's log once for every stream of the org
 *   held here (one transaction, whatever the number of daemons), and hands each stream its events:
 *   `signature` (in its machine's scope), `override` (addressed to it), and `policy` whenever
 *   its machine's configuration (policy hash, domains) differs from what it was last sent.
 *   Machines that cannot differ (the same tags, named by no scope) share one configuration read.
 * - Every stream of the pump moves past the page read, whether or not its events were in it, so
 *   one stream far behind never holds the others back. Streams of one org are read by one pump
 *   at a time; a ring during a pump runs it once more.
 * - A configuration owed (the events that changed it were read, the `policy` event not yet sent,
 *   a database error in between) stays owed until it is sent.
 * - Every `keepAliveMs`: a comment on every stream, every credential checked again, every org
 *   read again (the catch-up for a lost ring, and signature expiries, which no write announces).
 * - A `policy` event sent records which hash the machine now holds (issue 12,
 *   ../machines/delivery.ts), after the read, and rings the console's live stream when it changed.
 * - A revoked credential's streams are checked at once (`revoked`, from the credential resolver
 *   on this instance and, in cluster mode, every other), and end unless it still holds the
 *   machine (a revoked deploy token keeps serving the machines it registered); a disabled
 *   machine's end when its `machine` event is read.
 */
import type { Sql } from '../../infra/db.ts'
import { withOrg, type Tx } from '../../infra/db.ts'
import type { Logger } from '../../infra/log.ts'
import { configCache, machineConfig, type ConfigCache } from '../policies/document.ts'
import { inScope, type Scope } from '../policies/scope.ts'
import type { Bell } from '../../infra/bell.ts'
import { checkStreams, oneAtATime } from '../../http/sse.ts'
import { expiredBetween, fleetEventsAfter, type FleetEvent } from './repo.ts'
import { recordDeliveries, type PolicySent } from '../machines/delivery.ts'
import type { LiveRing } from '../live/repo.ts'

/** Events read per pump; a pump that reads a full page runs again. */
const PAGE = 500
/** The changes one `policy` event lists (the rest are summed up by their count). */
const MAX_CHANGES = 50

export interface StreamSink {
  /** Writes one SSE event; false when the client is gone or too far behind (then it is closed). */
  send(event: string, id: number | null, data: unknown): boolean
  comment(text: string): boolean
  close(): void
}

export interface HeldStream {
  orgId: string
  machineId: string
  /** The presented credential's SHA-256 hex: its revocation makes the stream check it at once. */
  tokenHash: string | null
  /** Whether the credential still holds the machine (re-authenticated, the machine re-read). */
  stillValid(): Promise<boolean>
  sink: StreamSink
  /** The last seq this stream was handed (or skipped, as not its own). */
  after: number
  /** The `config_version` it was last told (only that is kept: memory per stream); null before the first. */
  configVersion: string | null
  tags: string[]
  /** Changes read whose `policy` event is not sent yet (null: none owed). */
  owed: Record<string, unknown>[] | null
}

export interface HubOptions {
  sql: Sql
  bell: Bell
  log: Logger
  keepAliveMs: number
  perOrg: number
  perMachine: number
  /**
   * The console's live stream (issue 12), which reads the fleet log too (topic `fleet`): every
   * fleet ring this hub hears, its own or another instance's through the fleet bell, is read by
   * the live streams held here too (`heard`; `resync` after a reconnect of the bell), so a fleet
   * change reaches them as fast as it reaches the daemons. `ring` tells every instance of a
   * policy delivery a `policy` event recorded (a live log row, rung on the live bell).
   */
  live?: LiveRing & { heard(orgIds: readonly string[]): void; resync(): void }
}

export class TooManyStreamsError extends Error {}

export class FleetHub {
  readonly #orgs = new Map<string, Set<HeldStream>>()
  readonly #pumping = new Map<string, { again: boolean }>()
  #timer: ReturnType<typeof setInterval> | null = null
  #lastTick = new Date()
  /** Per org, since when signature expiries are still to be checked (kept until a pump succeeds). */
  readonly #expiredSince = new Map<string, Date>()
  /** Every stream's credential checked again; one recheck at a time, a request meanwhile runs once more. */
  readonly #recheckAll = oneAtATime(() =>
    this.#check(
      [...this.#orgs.values()].flatMap((set) => [...set]),
      'credential_invalid',
    ),
  )
  private readonly o: HubOptions

  constructor(options: HubOptions) {
    this.o = options
  }

  async start(): Promise<void> {
    await this.o.bell.start({
      ring: (org) => {
        this.#pump(org)
        this.o.live?.heard([org])
      },
      resync: () => {
        this.#pumpAll()
        this.o.live?.resync()
      },
    })
    this.#timer = setInterval(() => void this.#tick(), this.o.keepAliveMs)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    await this.o.bell.stop()
    for (const set of this.#orgs.values()) for (const s of set) s.sink.close()
    this.#orgs.clear()
  }

  /** Streams held here, for metrics and tests. */
  get size(): number {
    let n = 0
    for (const set of this.#orgs.values()) n += set.size
    return n
  }

  /** After writes that recorded fleet events for these orgs committed (see src/infra/bell.ts). */
  ring(orgIds: readonly string[]): void {
    if (orgIds.length === 0) return
    for (const org of orgIds) this.#pump(org)
    this.o.bell.ring(orgIds)
    // The console's live streams read the fleet log too (topic `fleet`): those held here at once;
    // every other instance's when its fleet bell hears this change (see `start`).
    this.o.live?.heard(orgIds)
  }

  /**
   * Holds a stream; its first pump replays what it missed after `after` and sends its machine's
   * configuration. Past the machine's bound its oldest stream is closed first (the daemon
   * reconnected before its old connection timed out: never locked out); then past the org's
   * bound, TooManyStreamsError.
   */
  add(stream: HeldStream): () => void {
    let set = this.#orgs.get(stream.orgId)
    if (!set) this.#orgs.set(stream.orgId, (set = new Set()))
    const same = [...set].filter((s) => s.machineId === stream.machineId)
    let replace = Math.max(0, same.length - this.o.perMachine + 1)
    // At the org's bound, a machine that holds a stream gives up its oldest rather than be refused.
    if (set.size - replace >= this.o.perOrg && same.length > replace) replace++
    for (const old of same.slice(0, replace)) {
      old.sink.send('replaced', null, { reason: 'another stream of this machine connected' })
      this.#drop(old)
    }
    if (set.size >= this.o.perOrg) {
      if (set.size === 0) this.#orgs.delete(stream.orgId)
      throw new TooManyStreamsError()
    }
    // A replaced stream may have been the org's last: its set left the map with it.
    this.#orgs.set(stream.orgId, set)
    set.add(stream)
    this.#pump(stream.orgId)
    return () => this.#remove(stream)
  }

  /** Opaque credentials just revoked (by hash hex): their streams check them now. */
  revoked(hashHexes: readonly string[]): void {
    const gone = new Set(hashHexes)
    const hit = [...this.#orgs.values()].flatMap((set) => [...set].filter((s) => s.tokenHash && gone.has(s.tokenHash)))
    void this.#check(hit, 'credential_revoked')
  }

  /** Some credential was revoked without a hash to match (a JWT): check every stream's again. */
  recheck(): void {
    void this.#recheckAll()
  }

  #remove(s: HeldStream): void {
    const set = this.#orgs.get(s.orgId)
    if (!set?.delete(s)) return
    if (set.size === 0) this.#orgs.delete(s.orgId)
  }

  #drop(s: HeldStream): void {
    this.#remove(s)
    s.sink.close()
  }

  #close(s: HeldStream, reason: string): void {
    s.sink.send('closed', null, { reason })
    this.#drop(s)
  }

  async #tick(): Promise<void> {
    const since = this.#lastTick
    this.#lastTick = new Date()
    for (const set of this.#orgs.values()) for (const s of set) if (!s.sink.comment('keep-alive')) this.#drop(s)
    for (const org of this.#orgs.keys()) if (!this.#expiredSince.has(org)) this.#expiredSince.set(org, since)
    await this.#recheckAll()
    this.#pumpAll()
  }

  #check(streams: HeldStream[], reason: string): Promise<void> {
    return checkStreams(streams, (s) => this.#close(s, reason))
  }

  #pumpAll(): void {
    for (const org of this.#orgs.keys()) this.#pump(org)
  }

  #pump(orgId: string): void {
    if (!this.#orgs.has(orgId)) return
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
          const more = await this.#pumpOnce(orgId).catch((err: unknown) => {
            this.o.log.warn({ err, org_id: orgId }, 'fleet stream pump failed; retried at the next ring or tick')
            return false
          })
          if (more) state.again = true
        } while (state.again && this.#orgs.has(orgId))
      } finally {
        this.#pumping.delete(orgId)
      }
    })()
  }

  /** One read of the org's log for every stream of it; true when there is more to read. */
  async #pumpOnce(orgId: string): Promise<boolean> {
    const streams = [...(this.#orgs.get(orgId) ?? [])]
    if (streams.length === 0) return false
    const after = Math.min(...streams.map((s) => s.after))
    const machines = [...new Set(streams.map((s) => s.machineId))]
    const since = this.#expiredSince.get(orgId)
    const sent: PolicySent[] = []
    const more = await withOrg(this.o.sql, orgId, async (tx) => {
      const { events, oldest } = await fleetEventsAfter(tx, after, machines, PAGE)
      const expired = since !== undefined && (await expiredBetween(tx, since))
      const configs = await configCache(tx)
      for (const s of streams) {
        if (!this.#orgs.get(orgId)?.has(s)) continue
        const end = await deliver(tx, s, events, oldest, expired, configs, sent)
        if (end === 'gone') this.#drop(s)
        else if (end) this.#close(s, end)
      }
      // The page held every event of these machines up to its last: all of them are past it.
      const last = events.at(-1)?.seq
      if (last !== undefined) for (const s of streams) s.after = Math.max(s.after, last)
      return events.length === PAGE && last !== undefined && last > after
    })
    if (since !== undefined && this.#expiredSince.get(orgId) === since) this.#expiredSince.delete(orgId)
    if (sent.length > 0) await this.#recordSent(orgId, sent)
    return more
  }

  /**
   * Which machines now hold which policy hash (issue 12, docs/machines.md): recorded after the
   * pump's read, in its own short transaction, so the read never holds the live log's lock.
   */
  async #recordSent(orgId: string, sent: PolicySent[]): Promise<void> {
    try {
      const changed = await withOrg(this.o.sql, orgId, (tx) => recordDeliveries(tx, 'stream', sent))
      if (changed.length > 0) this.o.live?.ring([orgId])
    } catch (err) {
      this.o.log.warn({ err, org_id: orgId }, 'policy delivery by the fleet stream not recorded')
    }
  }
}

/**
 * Hands one stream the events of its org read after its `after` (the fleet updates route calls
 * it with a collecting sink): its own, in order, then its configuration when it changed. Returns
 * why the stream must end, if it must: its machine is disabled, or its client is gone.
 */
export async function deliver(
  tx: Tx,
  s: Pick<HeldStream, 'machineId' | 'sink' | 'after' | 'configVersion' | 'tags' | 'owed'>,
  events: readonly FleetEvent[],
  oldest: number | null,
  expired = false,
  configs?: ConfigCache,
  sent?: PolicySent[],
): Promise<'gone' | 'machine_disabled' | null> {
  // A daemon away for longer than the log keeps: what it missed is gone, its state is not.
  if (s.configVersion === null && oldest !== null && s.after + 1 < oldest) {
    if (!s.sink.send('gap', null, { oldest_event_id: oldest, detail: 'Events before this one are no longer kept.' }))
      return 'gone'
  }
  const owe = (change: Record<string, unknown> | null) => {
    s.owed ??= []
    if (change && s.owed.length < MAX_CHANGES) s.owed.push(change)
  }
  if (s.configVersion === null) owe(null)
  if (expired) owe({ type: 'signature_expiry' })
  for (const e of events) {
    if (e.seq <= s.after || (e.machine_id !== null && e.machine_id !== s.machineId)) continue
    s.after = e.seq
    const { scopes, ...change } = e.data as { scopes?: Scope[] } & Record<string, unknown>
    // A change whose scopes (before and after it) never took this machine in changes nothing here.
    if (scopes && !scopes.some((sc) => inScope(sc, s.machineId, s.tags))) continue
    switch (e.kind) {
      case 'machine': {
        if (change.status === 'disabled') {
          // Only as it is now: a machine disabled and enabled again keeps its stream.
          const [m] = await tx<{ status: string }[]>`select status from machines where id = ${s.machineId}`
          if (m?.status !== 'active') return 'machine_disabled'
        }
        if (Array.isArray(change.tags)) s.tags = change.tags as string[]
        owe({ event_id: e.seq, ...change })
        break
      }
      case 'override':
        if (!s.sink.send('override', e.seq, change)) return 'gone'
        break
      case 'signature':
        if (inScope(change.scope as Scope | undefined, s.machineId, s.tags)) {
          if (!s.sink.send('signature', e.seq, change.signature)) return 'gone'
        }
        owe({ event_id: e.seq, type: 'signature', id: (change.signature as { id?: string } | undefined)?.id })
        break
      default:
        owe({ event_id: e.seq, ...change })
    }
  }
  if (s.owed === null) return null
  const config = configs ? await configs(s.machineId, s.tags) : await machineConfig(tx, s.machineId)
  const changes = s.owed
  s.owed = null
  if (config.config_version === s.configVersion) return null
  s.configVersion = config.config_version
  if (!s.sink.send('policy', s.after, { ...config, changes })) return 'gone'
  sent?.push({ machineId: s.machineId, policyHash: config.policy_hash })
  return null
}
