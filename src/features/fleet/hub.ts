/**
 * @module features/fleet/hub
 * The fleet streams one instance holds (issue 11; docs/fleet-stream.md), and what it tells them.
 *
 * - A ring for an org (./bell.ts) reads that org's log once for every stream of the org held
 *   here (one transaction, whatever the number of daemons), and hands each stream its events:
 *   `signature` (in its machine's scope), `override` (addressed to it), and `policy` whenever
 *   its machine's configuration (policy hash, domains) differs from what it was last sent.
 * - Streams of one org are read by one pump at a time; a ring during a pump runs it once more.
 * - Every `keepAliveMs`: a comment on every stream, every credential checked again, every org
 *   read again (the catch-up for a ring that was lost).
 * - A revoked credential's streams close at once (`revoked`, from the credential resolver on
 *   this instance and, in cluster mode, from every other); a disabled or deleted machine's when
 *   its `machine` event is read.
 */
import type { Sql } from '../../infra/db.ts'
import { withOrg, type Tx } from '../../infra/db.ts'
import type { Logger } from '../../infra/log.ts'
import { machineConfig } from '../policies/document.ts'
import { inScope, type Scope } from '../policies/scope.ts'
import type { FleetBell } from './bell.ts'
import { expiredBetween, fleetEventsAfter, type FleetEvent } from './repo.ts'

/** Events read per stream and pump; a pump that reads a full page runs again. */
const PAGE = 500

export interface StreamSink {
  /** Writes one SSE event; false when the client is gone or too far behind (then it is closed). */
  send(event: string, id: number | null, data: unknown): boolean
  comment(text: string): boolean
  close(): void
}

export interface HeldStream {
  orgId: string
  machineId: string
  /** The presented credential's SHA-256 hex, when opaque: its revocation closes the stream at once. */
  tokenHash: string | null
  /** Authenticates the credential again (a JWT's revocation or expiry, another instance's cache). */
  stillValid(): Promise<boolean>
  sink: StreamSink
  /** The last seq this stream was handed. */
  after: number
  /** The `config_version` it was last told (only that is kept: memory per stream); null before the first. */
  configVersion: string | null
  tags: string[]
}

export interface HubOptions {
  sql: Sql
  bell: FleetBell
  log: Logger
  keepAliveMs: number
  perOrg: number
  perMachine: number
}

export class TooManyStreamsError extends Error {}

export class FleetHub {
  readonly #orgs = new Map<string, Set<HeldStream>>()
  readonly #pumping = new Map<string, { again: boolean; done: Promise<void> }>()
  #timer: ReturnType<typeof setInterval> | null = null
  #lastTick = new Date()
  /** Per org, the last tick: signatures that expired since then change configurations with no event. */
  readonly #expiredSince = new Map<string, Date>()

  private readonly o: HubOptions

  constructor(options: HubOptions) {
    this.o = options
  }

  async start(): Promise<void> {
    await this.o.bell.start({ ring: (org) => this.#pump(org), resync: () => this.#pumpAll() })
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

  /** After writes that recorded fleet events for these orgs committed (see ./bell.ts). */
  ring(orgIds: readonly string[]): void {
    if (orgIds.length === 0) return
    for (const org of orgIds) this.#pump(org)
    this.o.bell.ring(orgIds)
  }

  /**
   * Holds a stream; its first pump replays what it missed after `after` and sends its machine's
   * configuration. Throws TooManyStreamsError past the org's bound; past the machine's, its
   * oldest stream is closed (the daemon reconnected before its old connection timed out).
   */
  add(stream: HeldStream): () => void {
    let set = this.#orgs.get(stream.orgId)
    if (set && set.size >= this.o.perOrg) throw new TooManyStreamsError()
    if (!set) this.#orgs.set(stream.orgId, (set = new Set()))
    const same = [...set].filter((s) => s.machineId === stream.machineId)
    for (const old of same.slice(0, Math.max(0, same.length - this.o.perMachine + 1))) {
      old.sink.send('replaced', null, { reason: 'another stream of this machine connected' })
      this.#drop(old)
    }
    set.add(stream)
    this.#pump(stream.orgId)
    return () => this.#remove(stream)
  }

  /** Opaque credentials just revoked (by hash hex): their streams close now. */
  revoked(hashHexes: readonly string[]): void {
    const gone = new Set(hashHexes)
    for (const set of this.#orgs.values()) {
      for (const s of set) if (s.tokenHash && gone.has(s.tokenHash)) this.#close(s, 'credential_revoked')
    }
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
    await this.#recheckAll()
    for (const org of this.#orgs.keys()) {
      this.#expiredSince.set(org, since)
      this.#pump(org)
    }
  }

  async #recheckAll(): Promise<void> {
    const all = [...this.#orgs.values()].flatMap((set) => [...set])
    await Promise.all(
      all.map(async (s) => {
        const ok = await s.stillValid().catch(() => true)
        if (!ok) this.#close(s, 'credential_invalid')
      }),
    )
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
    const state = { again: false, done: Promise.resolve() }
    state.done = (async () => {
      try {
        do {
          state.again = false
          const full = await this.#pumpOnce(orgId).catch((err: unknown) => {
            this.o.log.warn({ err, org_id: orgId }, 'fleet stream pump failed; retried at the next ring or tick')
            return false
          })
          if (full) state.again = true
        } while (state.again && this.#orgs.has(orgId))
      } finally {
        this.#pumping.delete(orgId)
      }
    })()
    this.#pumping.set(orgId, state)
  }

  /** One read of the org's log for every stream of it; true when a page was full. */
  async #pumpOnce(orgId: string): Promise<boolean> {
    const streams = [...(this.#orgs.get(orgId) ?? [])]
    if (streams.length === 0) return false
    const after = Math.min(...streams.map((s) => s.after))
    const machines = [...new Set(streams.map((s) => s.machineId))]
    const since = this.#expiredSince.get(orgId)
    this.#expiredSince.delete(orgId)
    return withOrg(this.o.sql, orgId, async (tx) => {
      const { events, oldest } = await fleetEventsAfter(tx, after, machines, PAGE)
      const expired = since !== undefined && (await expiredBetween(tx, since))
      for (const s of streams) {
        if (!this.#orgs.get(orgId)?.has(s)) continue
        const end = await deliver(tx, s, events, oldest, expired)
        if (end === 'gone') this.#drop(s)
        else if (end) this.#close(s, end)
      }
      return events.length === PAGE
    })
  }
}

/**
 * Hands one stream the events of its org read after its `after` (the fleet updates route calls
 * it with a collecting sink): its own, in order, then its configuration when it changed. Returns
 * why the stream must end, if it must: its machine was disabled or deleted, or its client is gone.
 */
export async function deliver(
  tx: Tx,
  s: Pick<HeldStream, 'machineId' | 'sink' | 'after' | 'configVersion' | 'tags'>,
  events: readonly FleetEvent[],
  oldest: number | null,
  expired = false,
): Promise<'gone' | 'machine_disabled' | 'machine_deleted' | null> {
  // A daemon away for longer than the log keeps: what it missed is gone, its state is not.
  if (s.configVersion === null && oldest !== null && s.after + 1 < oldest) {
    if (!s.sink.send('gap', null, { oldest_event_id: oldest, detail: 'Events before this one are no longer kept.' }))
      return 'gone'
  }
  let reconfigure = s.configVersion === null || expired
  const changes: Record<string, unknown>[] = expired ? [{ type: 'signature_expiry' }] : []
  for (const e of events) {
    if (e.seq <= s.after || (e.machine_id !== null && e.machine_id !== s.machineId)) continue
    s.after = e.seq
    switch (e.kind) {
      case 'machine': {
        const status = e.data.status
        if (status === 'disabled' || status === 'deleted') return `machine_${status}`
        if (Array.isArray(e.data.tags)) s.tags = e.data.tags as string[]
        reconfigure = true
        changes.push({ event_id: e.seq, ...e.data })
        break
      }
      case 'override':
        if (!s.sink.send('override', e.seq, e.data)) return 'gone'
        break
      case 'signature': {
        // Out of scope, the signature itself is not this machine's to read; its configuration is
        // still checked, as a signature rescoped away from it leaves its policies.
        reconfigure = true
        if (!inScope(e.data.scope as Scope | undefined, s.machineId, s.tags)) break
        if (!s.sink.send('signature', e.seq, e.data.signature)) return 'gone'
        changes.push({ event_id: e.seq, type: 'signature', id: (e.data.signature as { id?: string } | undefined)?.id })
        break
      }
      default:
        reconfigure = true
        changes.push({ event_id: e.seq, ...e.data })
    }
  }
  if (!reconfigure) return null
  const config = await machineConfig(tx, s.machineId)
  if (config.config_version === s.configVersion) return null
  s.configVersion = config.config_version
  return s.sink.send('policy', s.after, { ...config, changes }) ? null : 'gone'
}
