/**
 * @module features/signatures/repo
 * The `threat_signatures` table (sql/0004, sql/0027). Runs inside `withOrg`.
 */
import type { Keyset } from '../../http/pagination.ts'
import type { Tx } from '../../infra/db.ts'
import { recordFleetEvent } from '../fleet/repo.ts'
import type { StoredShape } from './flow-match.ts'

export interface SignatureRow {
  id: string
  signature_key: string
  name: string
  description: string | null
  kind: string
  value: string | null
  action: string
  severity: string
  status: string
  scope_machine_ids: string[]
  scope_tags: string[]
  expires_at: Date | null
  source: string
  source_alert_id: string | null
  created_at: Date
  updated_at: Date
  created_key: string
  /** status active and not past expires_at (Postgres' clock, as the document's query). */
  enforced: boolean
  /** Flow shapes: the target distribution and its scoping (./flow-match.ts `StoredShape`). */
  shape: StoredShape | null
  max_jsd: number | null
}

const COLUMNS = (tx: Tx) => tx`
  id, signature_key, name, description, kind, value, action, severity, status, scope_machine_ids, scope_tags,
  expires_at, source, source_alert_id, created_at, updated_at, created_at::text as created_key, shape, max_jsd,
  (status = 'active' and (expires_at is null or expires_at > now())) as enforced`

export function signatureView(s: SignatureRow) {
  return {
    id: s.id,
    key: s.signature_key,
    name: s.name,
    description: s.description,
    kind: s.kind,
    value: s.value,
    flow_shape:
      s.kind === 'flow_shape' && s.shape
        ? {
            shape: s.shape.shape,
            max_jsd: s.max_jsd,
            agent_types: s.shape.agent_types,
            min_transitions: s.shape.min_transitions,
          }
        : null,
    action: s.action,
    severity: s.severity,
    status: s.status === 'active' && s.expires_at && !s.enforced ? 'expired' : s.status,
    enforced: s.enforced,
    scope: {
      all: s.scope_machine_ids.length === 0 && s.scope_tags.length === 0,
      machine_ids: s.scope_machine_ids,
      tags: s.scope_tags,
    },
    expires_at: s.expires_at?.toISOString() ?? null,
    source: s.source,
    source_alert_id: s.source_alert_id,
    created_at: s.created_at.toISOString(),
    updated_at: s.updated_at.toISOString(),
  }
}

export interface SignatureFields {
  name: string
  description: string | null
  action: string
  severity: string
  status: string
  machineIds: string[]
  tags: string[]
  expiresAt: Date | null
}

/** Null when the org has a signature of that key already (one per kind and value). */
export async function insertSignature(
  tx: Tx,
  key: string,
  kind: string,
  /** The indicator, or for a flow shape its distribution (kind and either are fixed for life). */
  what: { value: string } | { shape: StoredShape; maxJsd: number },
  f: SignatureFields,
  createdBy: string | null,
  origin: { source: 'custom' | 'distilled'; sourceAlertId: string | null } = { source: 'custom', sourceAlertId: null },
): Promise<SignatureRow | null> {
  const value = 'value' in what ? what.value : null
  const shape = 'shape' in what ? tx.json(what.shape as never) : null
  const maxJsd = 'shape' in what ? what.maxJsd : null
  const [row] = await tx<SignatureRow[]>`
    insert into threat_signatures (org_id, signature_key, name, description, severity, kind, value, shape, max_jsd, action,
                                   status, scope_machine_ids, scope_tags, expires_at, created_by, source, source_alert_id)
    values (app_current_org(), ${key}, ${f.name}, ${f.description}, ${f.severity}, ${kind}, ${value}, ${shape}, ${maxJsd},
            ${f.action}, ${f.status}, ${f.machineIds}::uuid[], ${f.tags}::text[], ${f.expiresAt}, ${createdBy},
            ${origin.source}, ${origin.sourceAlertId})
    on conflict (org_id, signature_key) do nothing
    returning ${COLUMNS(tx)}`
  return row ?? null
}

export async function getSignature(tx: Tx, id: string, lock = false): Promise<SignatureRow | null> {
  const [row] = await tx<SignatureRow[]>`
    select ${COLUMNS(tx)} from threat_signatures where id = ${id} ${lock ? tx`for no key update` : tx``}`
  return row ?? null
}

export async function updateSignature(tx: Tx, id: string, f: SignatureFields): Promise<SignatureRow> {
  const [row] = await tx<SignatureRow[]>`
    update threat_signatures set
      name = ${f.name}, description = ${f.description}, action = ${f.action}, severity = ${f.severity},
      status = ${f.status}, scope_machine_ids = ${f.machineIds}::uuid[], scope_tags = ${f.tags}::text[],
      expires_at = ${f.expiresAt}, updated_at = now()
     where id = ${id}
    returning ${COLUMNS(tx)}`
  return row!
}

export function listSignatures(
  tx: Tx,
  q: { status?: string; kind?: string },
  limit: number,
  after: Keyset | null,
): Promise<SignatureRow[]> {
  const expired = tx`(status = 'expired' or (status = 'active' and expires_at is not null and expires_at <= now()))`
  return tx<SignatureRow[]>`
    select ${COLUMNS(tx)} from threat_signatures
     where true
       ${q.kind ? tx`and kind = ${q.kind}` : tx``}
       ${
         q.status === undefined
           ? tx``
           : q.status === 'expired'
             ? tx`and ${expired}`
             : q.status === 'active'
               ? tx`and status = 'active' and not ${expired}`
               : tx`and status = ${q.status}`
       }
       ${after ? tx`and (created_at, id) < (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by created_at desc, id desc
     limit ${limit}`
}

/**
 * Tells the fleet (inside the change's transaction): the signature goes to every stream in its
 * scope, and each of them checks its machine's policy hash (docs/fleet-stream.md).
 */
export async function announceSignature(tx: Tx, row: SignatureRow, before: SignatureRow | null = null): Promise<void> {
  const scopeOf = (r: SignatureRow) => ({ machine_ids: r.scope_machine_ids, tags: r.scope_tags })
  await recordFleetEvent(tx, {
    kind: 'signature',
    data: {
      signature: signatureView(row),
      // Sent to the machines of its scope; a machine in neither scope (before, after) is told nothing.
      scope: scopeOf(row),
      scopes: [before, row].filter((r) => r !== null).map(scopeOf),
    },
  })
}
