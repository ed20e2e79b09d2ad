/**
 * @module features/ingest/service
 * Accepting a batch: per-item outcomes, then one tenant transaction that finds events already
 * stored (answered `duplicate`, not sent again) and publishes the rest: inside that transaction
 * for a transactional bus (the local one), after its commit for one that is not (SNS). When this
 * resolves the accepted events are durable (the bus's ack point); the caller may answer 2xx.
 * Outcomes are counted once durable (issue 14): `quint_ingest_events_total{outcome}`,
 * `quint_ingest_rejected_total{reason}`, `quint_ingest_redactions_total{kind}` and
 * `quint_ingest_edge_dropped_total{report}`, every label from a fixed set (no free text, no org).
 * The per-org, per-day and per-machine view of the same outcomes is `ingest_stats` (issue 9,
 * ./stats.ts), written in the same tenant transaction as the ledger check: with the publish on
 * the local bus, so it commits exactly when the ack is durable.
 *
 * The quota is taken before any item is normalised (issue 14: an org over its quota still had
 * every item parsed and redacted, up to 10 MiB of CPU, before its 429): `acceptBatch` charges
 * the number of items found by the scan of the body, then normalises. A refused request takes
 * nothing and stores nothing.
 */
import { withOrg, type Sql, type Tx } from '../../infra/db.ts'
import type { Metrics } from '../../infra/metrics.ts'
import type { Bus, BusMessage, WireEvent } from '../../bus/bus.ts'
import { ValidationError } from '../../errors.ts'
import { normalizeBatch, type EventBatch } from './batch.ts'
import { normalizeLifecycle, REJECT_CODES, type ItemResult, type RejectCode } from './events.ts'
import { SECRET_KINDS, type KindCounts, type SecretKind } from './redaction.ts'
import { recordAck } from './stats.ts'
import { knownKeys } from '../actions/ledger.ts'
import type { SessionLifecycle } from './lifecycle.ts'
import type { OrgRateLimiter } from './rate-limit.ts'

export interface IngestDeps {
  sql: Sql
  bus: Bus
  /** Per-org quota; each item of a batch costs one token (429 + Retry-After when exhausted). */
  limiter: OrgRateLimiter
  /** Ingest outcome counters (required: a forgotten wiring must not leave them at zero). */
  metrics: Pick<Metrics, 'ingestEvents' | 'ingestRejected' | 'ingestRedactions' | 'ingestEdgeDropped'>
}

export type Outcome =
  | { index: number; status: 'accepted' | 'duplicate'; event_id: string }
  | { index: number; status: 'rejected'; path: string; reason: string }

export interface BatchOutcome {
  results: Outcome[]
  accepted: number
  duplicates: number
  rejected: number
}

/** A scanned body: its items charged to the quota first, then normalised one by one, then accepted. */
export async function acceptBatch(
  deps: IngestDeps,
  orgId: string,
  batch: EventBatch,
  normalize: (raw: unknown, base: string) => ItemResult,
  machineId: string | null,
): Promise<BatchOutcome> {
  await deps.limiter.take(orgId, batch.items.length)
  return store(deps, orgId, await normalizeBatch(batch, normalize), machineId, batch.droppedEvents)
}

/** Items already normalised (by a caller that did not need the quota first). */
export async function acceptEvents(
  deps: IngestDeps,
  orgId: string,
  items: ItemResult[],
  machineId: string | null,
  droppedEvents = 0,
): Promise<BatchOutcome> {
  await deps.limiter.take(orgId, items.length)
  return store(deps, orgId, items, machineId, droppedEvents)
}

async function store(
  deps: IngestDeps,
  orgId: string,
  items: ItemResult[],
  machineId: string | null,
  droppedEvents: number,
): Promise<BatchOutcome> {
  // One receive time for the bus message and the statistics: the lag is measured from it.
  const receivedAt = new Date().toISOString()
  const results: Outcome[] = new Array(items.length)
  const fresh = new Map<string, { index: number; event: WireEvent; kinds: KindCounts | undefined }>()
  const rejectedBy: RejectCode[] = []
  items.forEach((item, index) => {
    if (!item.ok) {
      results[index] = { index, status: 'rejected', path: item.path, reason: item.reason }
      rejectedBy.push(item.code)
      return
    }
    const e = item.event
    // The same event twice in one batch: the first copy wins.
    if (fresh.has(e.eventKey)) {
      results[index] = { index, status: 'duplicate', event_id: e.eventId }
      return
    }
    // One copy, in the bus's form. Per-kind counts are for the metrics only: they do not travel
    // on the bus (an undefined member is left out of its JSON).
    const event: WireEvent = { ...e, occurredAt: e.occurredAt.toISOString(), redactionKinds: undefined }
    fresh.set(e.eventKey, { index, event, kinds: e.redactionKinds })
    results[index] = { index, status: 'accepted', event_id: e.eventId }
  })

  /** The answer's tallies once the ledger check has run (it turns some `accepted` into `duplicate`). */
  const tally = () => {
    let accepted = 0
    let duplicates = 0
    for (const r of results) {
      if (r.status === 'accepted') accepted++
      else if (r.status === 'duplicate') duplicates++
    }
    return { accepted, duplicates, rejected: rejectedBy.length }
  }
  const record = (tx: Tx) => {
    const t = tally()
    const rejected: Record<string, number> = {}
    for (const code of rejectedBy) rejected[code] = (rejected[code] ?? 0) + 1
    return recordAck(tx, {
      day: receivedAt.slice(0, 10),
      machineId,
      received: items.length,
      accepted: t.accepted,
      duplicates: t.duplicates,
      rejected,
      redactions: [...fresh.values()].reduce((n, f) => n + f.event.redactions, 0),
      edgeDropped: droppedEvents,
    })
  }

  if (fresh.size > 0) {
    const message = (): BusMessage => ({
      kind: 'events',
      receivedAt,
      machineId,
      events: [...fresh.values()].map((f) => f.event),
    })
    /** Events the ledger already holds are answered `duplicate` and not sent again. */
    const drop = (known: string[]) => {
      for (const event_key of known) {
        const f = fresh.get(event_key)!
        results[f.index] = { index: f.index, status: 'duplicate', event_id: f.event.eventId }
        fresh.delete(event_key)
      }
    }
    const known = (tx: Tx) => knownKeys(tx, [...fresh.keys()])
    if (deps.bus.transactional) {
      await withOrg(deps.sql, orgId, async (tx) => {
        drop(await known(tx))
        // Sent together (pipelined on the connection): one round trip less on the ack path.
        await Promise.all([fresh.size > 0 ? deps.bus.publish(message(), { orgId, tx }) : null, record(tx)])
      })
    } else {
      // The ledger check commits first: the publish then holds no pooled connection. The counts
      // ride on that transaction (no extra round trip); a publish failing after it (a 503 the
      // sender retries) leaves them counted once more than answered (docs/ingest-stats.md).
      await withOrg(deps.sql, orgId, async (tx) => {
        drop(await known(tx))
        await record(tx)
      })
      if (fresh.size > 0) await deps.bus.publish(message(), { orgId, tx: null })
    }
  } else if (items.length > 0 || droppedEvents > 0) {
    // Nothing to publish (every item rejected or repeated in the batch): the counts alone.
    await withOrg(deps.sql, orgId, record)
  }
  const { accepted, duplicates, rejected } = tally()
  countOutcomes(deps.metrics, { accepted, duplicates, rejectedBy, stored: [...fresh.values()].map((f) => f.kinds) })
  if (droppedEvents > 0) deps.metrics.ingestEdgeDropped.inc({ report: 'batch' }, droppedEvents)
  return { results, accepted, duplicates, rejected }
}

const initialised = new WeakSet<object>()

/** Every label value of the fixed sets starts at 0, so a rate() or an alert sees the series from the start. */
function countOutcomes(
  metrics: NonNullable<IngestDeps['metrics']>,
  o: { accepted: number; duplicates: number; rejectedBy: RejectCode[]; stored: (KindCounts | undefined)[] },
): void {
  if (!initialised.has(metrics.ingestEvents)) {
    initialised.add(metrics.ingestEvents)
    for (const outcome of ['accepted', 'duplicate', 'rejected']) metrics.ingestEvents.inc({ outcome }, 0)
    for (const reason of REJECT_CODES) metrics.ingestRejected.inc({ reason }, 0)
    for (const kind of SECRET_KINDS) metrics.ingestRedactions.inc({ kind }, 0)
    for (const report of ['batch', 'heartbeat']) metrics.ingestEdgeDropped.inc({ report }, 0)
  }
  if (o.accepted > 0) metrics.ingestEvents.inc({ outcome: 'accepted' }, o.accepted)
  if (o.duplicates > 0) metrics.ingestEvents.inc({ outcome: 'duplicate' }, o.duplicates)
  if (o.rejectedBy.length > 0) metrics.ingestEvents.inc({ outcome: 'rejected' }, o.rejectedBy.length)
  for (const reason of o.rejectedBy) metrics.ingestRejected.inc({ reason })
  // Redactions in the events accepted here (a duplicate's were counted when it was first accepted).
  for (const kinds of o.stored) {
    if (!kinds) continue
    for (const [kind, n] of Object.entries(kinds) as [SecretKind, number][]) if (n > 0) metrics.ingestRedactions.inc({ kind }, n)
  }
}

/**
 * One lifecycle report: quota first, then its free-form and unknown fields cleaned and redacted
 * like an event's content (issue 14; normalizeLifecycle), then published. Its redactions are
 * counted with the publish (the same transaction on the local bus): in `org_ingest_stats` and in
 * `quint_ingest_redactions_total`, as an event's are.
 */
export async function acceptLifecycle(deps: IngestDeps, orgId: string, body: SessionLifecycle): Promise<void> {
  await deps.limiter.take(orgId, 1)
  const r = normalizeLifecycle(body)
  if (!r.ok) throw new ValidationError([{ path: r.path, message: r.reason }])
  const message: BusMessage = { kind: 'lifecycle', receivedAt: new Date().toISOString(), lifecycle: r.lifecycle }
  const count = async (tx: Tx) => {
    if (r.redactions === 0) return
    await tx`
      insert into org_ingest_stats (org_id, day, stored, redactions)
      values (app_current_org(), (now() at time zone 'utc')::date, 0, ${r.redactions})
      on conflict (org_id, day) do update set redactions = org_ingest_stats.redactions + excluded.redactions`
  }
  if (deps.bus.transactional) {
    await withOrg(deps.sql, orgId, async (tx) => {
      await deps.bus.publish(message, { orgId, tx })
      await count(tx)
    })
  } else {
    await deps.bus.publish(message, { orgId, tx: null })
    // After the publish (the ack point): a count lost to a failure here is a statistic, not data.
    if (r.redactions > 0) await withOrg(deps.sql, orgId, count).catch(() => {})
  }
  countRedactions(deps.metrics, r.redactionKinds)
}

function countRedactions(metrics: IngestDeps['metrics'], kinds: KindCounts): void {
  for (const [kind, n] of Object.entries(kinds) as [SecretKind, number][]) if (n > 0) metrics.ingestRedactions.inc({ kind }, n)
}
