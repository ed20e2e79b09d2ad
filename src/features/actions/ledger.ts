/**
 * @module features/actions/ledger
 * The `(org_id, event_key)` ledger as the ack reads it: which of a batch's keys are already
 * stored. The pipeline writes it (./store.ts, `insert … on conflict do nothing`); this answers a
 * retry `duplicate` before it is published again.
 */
import type { Tx } from '../../infra/db.ts'

/**
 * The keys among `keys` the org's ledger holds (inside `withOrg`). One probe of the primary key
 * per key, whatever the statistics say: as `event_key = any($1)` the planner, on a young ledger
 * not yet analysed (one org owning every row, estimated at 0.5 % of them), scanned all the org's
 * rows and compared each with the batch's 500 keys. Acks then took 1.5–5 s at half load once the
 * ledger held 100,000 rows (issue 13; test/integration/ledger-plan.test.ts).
 */
export async function knownKeys(tx: Tx, keys: readonly string[]): Promise<string[]> {
  const rows = await tx<{ event_key: string }[]>`
    select k.event_key from unnest(${keys as string[]}::text[]) as k(event_key)
     cross join lateral (select from event_keys e where e.event_key = k.event_key limit 1) as hit`
  return rows.map((r) => r.event_key)
}
