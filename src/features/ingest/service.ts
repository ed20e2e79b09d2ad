/**
 * @module features/ingest/service
 * Accepting a batch: per-item outcomes, then one tenant transaction that finds events already
 * stored (answered `duplicate`, not sent again) and publishes the rest: inside that transaction
 * for a transactional bus (the local one), after its commit for one that is not (SNS). When this
 * resolves the accepted events are durable (the bus's ack point); the caller may answer 2xx.
 */
import { withOrg, type Sql, type Tx } from '../../infra/db.ts'
import type { Bus, BusMessage, WireEvent } from './bus.ts'
import type { ItemResult } from './events.ts'
import type { SessionLifecycle } from './lifecycle.ts'
import type { OrgRateLimiter } from './rate-limit.ts'

export interface IngestDeps {
  sql: Sql
  bus: Bus
  /** Per-org quota; each item of a batch costs one token (429 + Retry-After when exhausted). */
  limiter: OrgRateLimiter
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

export async function acceptEvents(
  deps: IngestDeps,
  orgId: string,
  items: ItemResult[],
  machineId: string | null,
): Promise<BatchOutcome> {
  await deps.limiter.take(orgId, items.length)
  const results: Outcome[] = new Array(items.length)
  const fresh = new Map<string, { index: number; event: WireEvent }>()
  items.forEach((item, index) => {
    if (!item.ok) {
      results[index] = { index, status: 'rejected', path: item.path, reason: item.reason }
      return
    }
    const e = item.event
    // The same event twice in one batch: the first copy wins.
    if (fresh.has(e.eventKey)) {
      results[index] = { index, status: 'duplicate', event_id: e.eventId }
      return
    }
    fresh.set(e.eventKey, { index, event: { ...e, occurredAt: e.occurredAt.toISOString() } })
    results[index] = { index, status: 'accepted', event_id: e.eventId }
  })

  if (fresh.size > 0) {
    // Events the ledger already holds are answered `duplicate` and not sent again.
    const dropKnown = async (tx: Tx) => {
      const known = await tx<{ event_key: string }[]>`
        select event_key from event_keys where event_key = any(${[...fresh.keys()]}::text[])`
      for (const { event_key } of known) {
        const f = fresh.get(event_key)!
        results[f.index] = { index: f.index, status: 'duplicate', event_id: f.event.eventId }
        fresh.delete(event_key)
      }
    }
    const message = (): BusMessage => ({
      kind: 'events',
      receivedAt: new Date().toISOString(),
      machineId,
      events: [...fresh.values()].map((f) => f.event),
    })
    if (deps.bus.transactional) {
      await withOrg(deps.sql, orgId, async (tx) => {
        await dropKnown(tx)
        if (fresh.size > 0) await deps.bus.publish(message(), { orgId, tx })
      })
    } else {
      // The ledger check commits first: the publish then holds no pooled connection.
      await withOrg(deps.sql, orgId, dropKnown)
      if (fresh.size > 0) await deps.bus.publish(message(), { orgId, tx: null })
    }
  }
  let accepted = 0
  let duplicates = 0
  let rejected = 0
  for (const r of results) {
    if (r.status === 'accepted') accepted++
    else if (r.status === 'duplicate') duplicates++
    else rejected++
  }
  return { results, accepted, duplicates, rejected }
}

export async function acceptLifecycle(deps: IngestDeps, orgId: string, lifecycle: SessionLifecycle): Promise<void> {
  await deps.limiter.take(orgId, 1)
  const message: BusMessage = { kind: 'lifecycle', receivedAt: new Date().toISOString(), lifecycle }
  if (!deps.bus.transactional) return deps.bus.publish(message, { orgId, tx: null })
  return withOrg(deps.sql, orgId, (tx) => deps.bus.publish(message, { orgId, tx }))
}
