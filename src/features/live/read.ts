/**
 * @module features/live/read
 * One read of an org for the console's live streams (issue 12, docs/live.md; ./hub.ts holds the
 * streams): what committed after the streams' cursors, each row fetched and framed once however
 * many streams want it. A page of the org's live log (./repo.ts), then one query per kind of row
 * it names (events, alerts, approval requests, policy deliveries) of the wanted topics, and one
 * of the fleet log; a topic with more rows (or bytes) than one read sends is replaced by a `gap`.
 */
import { sseFrame } from '../../http/sse.ts'
import type { Tx } from '../../infra/db.ts'
import { alertView } from '../alerts/view.ts'
import { eventView } from '../events/view.ts'
import { fleetEventsAfter, lastSeq } from '../fleet/repo.ts'
import { approvalEvent, eventsOf } from '../overrides/pending.ts'
import {
  liveLogAfter,
  loggedAlerts,
  loggedApprovals,
  loggedDeliveries,
  loggedEvents,
  type LiveKind,
  type LiveLogRow,
} from './repo.ts'
import { LIVE_TOPICS, type LiveTopic } from './schema.ts'

/** Rows of one topic one read sends; past it the topic gets one `gap` instead. */
const LIVE_BOUND = 500
/** Bytes of one topic one read sends (an event may carry up to 1 MiB of arguments); past it, `gap`. */
const MAX_READ_BYTES = 2 * 1024 * 1024
/** Live log rows per read; a read that fills it reads again. */
const LOG_PAGE = 100
/** The log's kinds each topic carries, in the order a read sends them. */
const KINDS_OF: Record<LiveTopic, readonly LiveKind[]> = {
  events: ['event'],
  alerts: ['alert', 'approval'],
  fleet: ['delivery'],
}

export type GapReason = 'too_many' | 'too_large' | 'log_pruned' | 'slow_client'

/** One item of a read: its frame, the log it came from and its position there. */
interface Item {
  source: 'log' | 'fleet'
  seq: number
  /** Encoded once (src/http/sse.ts `sseFrame`), written as it is to every stream of the org. */
  frame: Uint8Array
}

interface Gap {
  topic: LiveTopic
  source: 'log' | 'fleet'
  /** Streams whose cursor is below this missed something. */
  before: number
  reason: GapReason
}

export interface Read {
  items: Record<LiveTopic, Item[]>
  gaps: Gap[]
  /** Where the read ended in each log (streams that took part move there). */
  logEnd: number
  fleetEnd: number
  more: boolean
}

/**
 * What is new for an org since `logAfter` (and `fleetAfter`, when `fleet` is wanted): one page of
 * the live log, then per wanted topic one fetch of the rows it names (none past the bound).
 */
export async function readOrg(tx: Tx, want: ReadonlySet<LiveTopic>, logAfter: number, fleetAfter: number | null): Promise<Read> {
  const read: Read = { items: { events: [], alerts: [], fleet: [] }, gaps: [], logEnd: logAfter, fleetEnd: 0, more: false }
  const { rows, oldest } = await liveLogAfter(tx, logAfter, LOG_PAGE, LIVE_BOUND + 1)
  if (rows.length > 0) {
    read.logEnd = rows.at(-1)!.seq
    read.more = rows.length === LOG_PAGE
    // Rows the log no longer keeps: every log topic may have lost something.
    if (oldest > logAfter + 1) {
      for (const topic of ['events', 'alerts', 'fleet'] as const) {
        read.gaps.push({ topic, source: 'log', before: oldest - 1, reason: 'log_pruned' })
      }
    }
  }
  for (const topic of LIVE_TOPICS) {
    const mine = rows.filter((r) => KINDS_OF[topic].includes(r.kind))
    if (!want.has(topic) || mine.length === 0) continue
    const last = mine.at(-1)!.seq
    if (mine.reduce((n, r) => n + r.n, 0) > LIVE_BOUND) {
      read.gaps.push({ topic, source: 'log', before: last, reason: 'too_many' })
      continue
    }
    const framed: Item[] = []
    for (const kind of KINDS_OF[topic]) {
      const ofKind = mine.filter((r) => r.kind === kind)
      if (ofKind.length > 0) framed.push(...(await frameKind(tx, kind, ofKind)))
    }
    if (framed.reduce((n, i) => n + i.frame.byteLength, 0) > MAX_READ_BYTES) {
      read.gaps.push({ topic, source: 'log', before: last, reason: 'too_large' })
    } else read.items[topic].push(...framed)
  }
  if (fleetAfter !== null) {
    read.fleetEnd = fleetAfter
    const { events } = await fleetEventsAfter(tx, fleetAfter, null, LIVE_BOUND + 1)
    if (events.length > LIVE_BOUND) {
      // Past the bound: told once, and the reader moves to the log's end.
      read.fleetEnd = await lastSeq(tx)
      read.gaps.push({ topic: 'fleet', source: 'fleet', before: read.fleetEnd, reason: 'too_many' })
    } else if (events.length > 0) {
      read.fleetEnd = events.at(-1)!.seq
      for (const e of events) {
        const data = { seq: e.seq, kind: e.kind, machine_id: e.machine_id, data: e.data, created_at: e.created_at.toISOString() }
        read.items.fleet.push({ source: 'fleet', seq: e.seq, frame: sseFrame('fleet', null, data) })
      }
    }
  }
  // Deliveries (from the log) and fleet changes interleave by time only loosely: each keeps its order.
  return read
}

const frame = (seq: number, event: string, data: unknown): Item => ({ source: 'log', seq, frame: sseFrame(event, null, data) })

/** The rows the log rows `mine` (all of `kind`) name, fetched in one query (two for approvals) and framed. */
async function frameKind(tx: Tx, kind: LiveKind, mine: readonly LiveLogRow[]): Promise<Item[]> {
  // A row named by several log rows is sent once, at the last of them.
  const seqOf = new Map<string, number>()
  for (const r of mine) for (const id of r.ids) seqOf.set(id, r.seq)
  const seqs = mine.map((r) => r.seq)
  switch (kind) {
    case 'event':
      return (await loggedEvents(tx, seqs)).map((e) => frame(seqOf.get(e.id)!, 'event', eventView(e)))
    case 'alert':
      return (await loggedAlerts(tx, seqs)).map((a) => frame(seqOf.get(a.id)!, 'alert', alertView(a)))
    case 'approval': {
      const states = await loggedApprovals(tx, seqs)
      const events = await eventsOf(
        tx,
        states.filter((r) => !r.used && !r.revoked && !r.expired),
      )
      return states.map((r) => frame(seqOf.get(r.id)!, 'approval', approvalEvent(r, events)))
    }
    case 'delivery':
      return (await loggedDeliveries(tx, seqs)).map((d) =>
        frame(seqOf.get(d.id)!, 'delivery', {
          machine_id: d.id,
          delivered_hash: d.policy_delivered_hash,
          delivered_at: d.policy_delivered_at.toISOString(),
          delivered_via: d.policy_delivered_via,
        }),
      )
  }
}
