/**
 * @module features/audit-sync/repo
 * `signed_audit_entries` and `active_policy_config` (sql/0026_audit_sync.sql). Runs inside
 * `withOrg`.
 */
import type { Keyset } from '../../http/pagination.ts'
import type { Tx } from '../../infra/db.ts'

export interface NewEntry {
  keyFingerprint: string
  nonce: string
  signature: string
  chainVerified: boolean
  entry: Record<string, unknown>
}

/**
 * Serialises the org's syncs: nonces are unique per org and each chain is checked against the
 * last stored entry of its key, so two batches at once must see each other. One lock per batch,
 * whatever it holds (a lock per key would let one batch take hundreds from the shared table).
 */
export async function lockOrgSync(tx: Tx): Promise<void> {
  await tx`select pg_advisory_xact_lock(hashtext('audit-sync:' || app_current_org()::text))`
}

/** Of `nonces`, those already stored for this org. */
export async function storedNonces(tx: Tx, nonces: readonly string[]): Promise<Set<string>> {
  const rows = await tx<{ nonce: string }[]>`
    select nonce from signed_audit_entries where nonce = any(${nonces as string[]}::text[])`
  return new Set(rows.map((r) => r.nonce))
}

/** The signature of each key's last stored entry. */
export async function lastSignatures(tx: Tx, fingerprints: readonly string[]): Promise<Map<string, string>> {
  const rows = await tx<{ key_fingerprint: string; signature: string }[]>`
    select distinct on (key_fingerprint) key_fingerprint, signature from signed_audit_entries
     where key_fingerprint = any(${[...new Set(fingerprints)]}::text[])
     order by key_fingerprint, id desc`
  return new Map(rows.map((r) => [r.key_fingerprint, r.signature]))
}

/** Inserts the entries in order; their ids in the same order. */
export async function insertEntries(tx: Tx, entries: readonly NewEntry[], receivedBy: string | null): Promise<number[]> {
  const ids: number[] = []
  // One statement per entry keeps the identity order equal to the client's order; a batch is at
  // most 500 entries, sent to Postgres pipelined.
  const inserted = await Promise.all(
    entries.map(
      (e) => tx<{ id: string }[]>`
        insert into signed_audit_entries (org_id, key_fingerprint, nonce, signature, chain_verified, entry, received_by)
        values (app_current_org(), ${e.keyFingerprint}, ${e.nonce}, ${e.signature}, ${e.chainVerified},
                ${JSON.stringify(e.entry)}, ${receivedBy})
        returning id::text`,
    ),
  )
  for (const [row] of inserted) ids.push(Number(row!.id))
  return ids
}

export interface StoredRow {
  id: string
  key_fingerprint: string
  chain_verified: boolean
  /** JSON text, as sent. */
  entry: string
  received_at: Date
  received_key: string
}

export function listEntries(
  tx: Tx,
  f: { keyFingerprint?: string; chainVerified?: boolean },
  limit: number,
  after: Keyset | null,
): Promise<StoredRow[]> {
  return tx<StoredRow[]>`
    select id::text, key_fingerprint, chain_verified, entry, received_at, received_at::text as received_key
      from signed_audit_entries
     where true
       ${f.keyFingerprint ? tx`and key_fingerprint = ${f.keyFingerprint}` : tx``}
       ${f.chainVerified === undefined ? tx`` : tx`and chain_verified = ${f.chainVerified}`}
       ${after ? tx`and (received_at, id) < (${after.at}::text::timestamptz, ${after.id}::bigint)` : tx``}
     order by received_at desc, id desc
     limit ${limit}`
}

export interface ActiveConfigRow {
  name: string
  version: number
  config_json: Record<string, unknown>
  updated_at: Date
}

export async function getActiveConfig(tx: Tx, lock = false): Promise<ActiveConfigRow | null> {
  const [row] = await tx<ActiveConfigRow[]>`
    select name, version, config_json, updated_at from active_policy_config ${lock ? tx`for update` : tx``}`
  return row ?? null
}

export async function putActiveConfig(
  tx: Tx,
  name: string,
  config: Record<string, unknown>,
  by: string,
): Promise<ActiveConfigRow> {
  const [row] = await tx<ActiveConfigRow[]>`
    insert into active_policy_config (org_id, name, version, config_json, updated_by)
    values (app_current_org(), ${name}, 1, ${tx.json(config as never)}, ${by})
    on conflict (org_id) do update set
      name = excluded.name, version = active_policy_config.version + 1, config_json = excluded.config_json,
      updated_at = now(), updated_by = excluded.updated_by
    returning name, version, config_json, updated_at`
  return row!
}
