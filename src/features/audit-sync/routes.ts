/**
 * @module features/audit-sync/routes
 * The public Quint CLI's `sync` (issue 11, SPEC §7.2, §8.5; docs/audit-sync.md):
 *
 * - `POST /v1/audit/entries`: entries its local proxy signed. Each must verify (Ed25519 from its
 *   own public key, either canonical variant) and carry a nonce never seen in the org. All or
 *   nothing: the first bad entry is a 400 `{error, index}`, a replayed nonce a 409
 *   `{error, index, nonce}`, and nothing of the batch is stored, because the client then posts
 *   the entries before `index` again, skips that one, and goes on with the rest. The hash chain
 *   is checked per key and recorded (`chain_verified`), not enforced: a skipped entry leaves a gap
 *   the next entry cannot close, and the entries after it are still worth keeping.
 * - `GET /v1/audit/entries`: what was stored, newest first, with what verified.
 * - `GET`/`PUT /v1/policies/active`: the local proxy's PolicyConfig the CLI pulls (304 on its
 *   ETag, 404 when there is none).
 */
import { createHash } from 'node:crypto'
import { Value } from '@sinclair/typebox/value'
import { allows } from '../../http/permissions.ts'
import { AppError, ForbiddenError, NotFoundError, ValidationError } from '../../errors.ts'
import type { RouteRegistry } from '../../http/openapi.ts'
import { decodeCursor, paginate } from '../../http/pagination.ts'
import { readJson } from '../../http/body.ts'
import { pgErrorCode, withOrg, type Sql } from '../../infra/db.ts'
import { auditActor, recordAudit } from '../audit/repo.ts'
import { notModified } from '../policies/document.ts'
import {
  getActiveConfig,
  insertEntries,
  lastSignatures,
  listEntries,
  lockOrgSync,
  putActiveConfig,
  storedNonces,
} from './repo.ts'
import {
  ActivePolicy,
  AuditEntriesAccepted,
  AuditEntriesBody,
  AuditEntryPayload,
  AuditEntryRejected,
  PutActivePolicyBody,
  StoredAuditEntries,
  StoredAuditQuery,
} from './schema.ts'
import { chainHash, ed25519Key, keyFingerprint, verifyEntry } from './verify.ts'

const MAX_BODY = 10 * 1024 * 1024
const ENTRY_FIELDS = Object.keys(AuditEntryPayload.properties)
const MAX_ENTRIES = 500
const BIGINT_ID = /^[1-9][0-9]{0,18}$/

/** The client's error shape, as a problem document carrying its members (SPEC §7.2). */
class EntryRejected extends AppError {
  override name = 'EntryRejected'
  constructor(status: 400 | 409, error: string, index: number, nonce?: string) {
    super(status, status === 409 ? 'nonce_replayed' : 'entry_rejected', `Entry ${index}: ${error}`, {
      extensions: { error, index, ...(nonce === undefined ? {} : { nonce }) },
    })
  }
}

export function mountAuditSync(routes: RouteRegistry, deps: { sql: Sql }): void {
  const { sql } = deps
  const tags = ['audit sync']

  routes.add(
    {
      method: 'post',
      path: '/v1/audit/entries',
      operationId: 'syncAuditEntries',
      summary: "The CLI's signed audit entries (at most 500): verified, chained per key, stored all or nothing",
      tags,
      permission: 'ingest',
      rawBody: AuditEntriesBody,
      bodyLimit: MAX_BODY,
      responses: {
        200: { description: 'Every entry stored', schema: AuditEntriesAccepted },
        400: {
          description: 'Entry `index` is malformed or its signature does not verify; nothing stored',
          schema: AuditEntryRejected,
        },
        409: { description: "Entry `index`'s nonce was seen before; nothing stored", schema: AuditEntryRejected },
      },
    },
    async (c) => {
      const body = await readJson(c.req.raw, MAX_BODY)
      const raw = (body as { entries?: unknown } | null)?.entries
      if (!Array.isArray(raw)) throw new ValidationError([{ path: '/entries', message: 'must be an array of entries' }])
      if (raw.length > MAX_ENTRIES) {
        throw new ValidationError([{ path: '/entries', message: `at most ${MAX_ENTRIES} entries per request` }])
      }
      const checked = raw.map((entry, index) => checkEntry(entry, index))
      const seen = new Map<string, number>()
      checked.forEach((e, index) => {
        if (seen.has(e.nonce)) throw new EntryRejected(409, 'duplicate nonce in this batch', index, e.nonce)
        seen.set(e.nonce, index)
      })
      const p = c.get('principal')
      const ids = await withOrg(sql, p.orgId, async (tx) => {
        await lockOrgSync(tx)
        const replayed = await storedNonces(
          tx,
          checked.map((e) => e.nonce),
        )
        const first = checked.findIndex((e) => replayed.has(e.nonce))
        if (first >= 0) throw new EntryRejected(409, 'nonce already used', first, checked[first]!.nonce)
        const last = await lastSignatures(
          tx,
          checked.map((e) => e.keyFingerprint),
        )
        const rows = checked.map((e) => {
          const before = last.get(e.keyFingerprint)
          last.set(e.keyFingerprint, e.signature)
          return { ...e, chainVerified: e.entry.prev_hash === (before === undefined ? '' : chainHash(before)) }
        })
        return insertEntries(tx, rows, p.tokenId).catch((err: unknown) => {
          // Unreachable under the org's lock; kept so that a nonce stored meanwhile would still be
          // the client's 409, never a 500.
          if (pgErrorCode(err) !== '23505') throw err
          throw new EntryRejected(409, 'nonce already used', 0, checked[0]!.nonce)
        })
      })
      return c.json({ ingested: ids.length, ids }, 200)
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/audit/entries',
      operationId: 'listSyncedAuditEntries',
      summary: "The CLI's synced entries, newest first, with whether each one's chain verified",
      tags,
      permission: 'read',
      query: StoredAuditQuery,
      responses: { 200: { description: 'A page of entries', schema: StoredAuditEntries } },
    },
    async (c, { query }) => {
      const limit = query.limit ?? 50
      const rows = await withOrg(sql, c.get('principal').orgId, (tx) =>
        listEntries(
          tx,
          { keyFingerprint: query.key_fingerprint, chainVerified: query.chain_verified },
          limit + 1,
          decodeCursor(query.cursor, (id) => BIGINT_ID.test(id)),
        ),
      )
      const { page, next } = paginate(rows, limit, (r) => r.received_key)
      return c.json({
        entries: page.map((r) => ({
          id: Number(r.id),
          received_at: r.received_at.toISOString(),
          key_fingerprint: r.key_fingerprint,
          signature_verified: true,
          chain_verified: r.chain_verified,
          entry: JSON.parse(r.entry) as Record<string, unknown>,
        })),
        next_cursor: next,
      })
    },
  )

  routes.add(
    {
      method: 'get',
      path: '/v1/policies/active',
      operationId: 'getActivePolicyConfig',
      summary: "The local proxy's PolicyConfig the CLI pulls; 304 on If-None-Match, 404 when none is set",
      tags,
      permission: 'authenticated',
      responses: {
        200: { description: 'The active config; `ETag` (unquoted) to send back', schema: ActivePolicy },
        304: { description: 'Unchanged since the ETag the client holds' },
        404: { description: 'No active config: not an error for the client' },
      },
    },
    async (c) => {
      const p = c.get('principal')
      if (!allows(p, 'ingest') && !allows(p, 'read')) {
        throw new ForbiddenError('Reading the active policy needs the "ingest" or "read" permission.')
      }
      const row = await withOrg(sql, p.orgId, (tx) => getActiveConfig(tx))
      if (!row) throw new NotFoundError('No active policy is set for this organization (PUT /v1/policies/active).')
      const text = JSON.stringify({ name: row.name, version: row.version, config_json: row.config_json })
      const etag = createHash('sha256').update(text).digest('hex')
      if (notModified(c.req.header('if-none-match'), etag)) return c.body(null, 304, { ETag: etag })
      return c.body(text, 200, { 'content-type': 'application/json', ETag: etag })
    },
  )

  routes.add(
    {
      method: 'put',
      path: '/v1/policies/active',
      operationId: 'putActivePolicyConfig',
      summary: "Set the local proxy's PolicyConfig every CLI pulls: a new version, audited",
      tags,
      permission: 'manage',
      body: PutActivePolicyBody,
      bodyLimit: 1024 * 1024,
      responses: { 200: { description: 'The active config after the change', schema: ActivePolicy } },
    },
    async (c, { body }) => {
      const p = c.get('principal')
      const bad = unstorable(body.config_json, '/config_json')
      if (bad) throw new ValidationError([bad])
      const row = await withOrg(sql, p.orgId, async (tx) => {
        const before = await getActiveConfig(tx, true)
        const after = await putActiveConfig(tx, body.name.trim(), body.config_json, p.tokenId)
        const view = (r: typeof after) => ({ name: r.name, version: r.version, config_json: r.config_json })
        await recordAudit(tx, {
          ...auditActor(p),
          action: 'policy_config.update',
          targetType: 'policy_config',
          request: c.get('request'),
          details: { before: before && view(before), after: view(after) },
        })
        return after
      })
      return c.json({ name: row.name, version: row.version, config_json: row.config_json })
    },
  )
}

/**
 * A value Postgres jsonb cannot hold as sent (NUL, a lone surrogate), or that JSON cannot carry
 * (a number parsed to Infinity, stored as null): the first, by its pointer, or null.
 */
function unstorable(v: unknown, at: string): { path: string; message: string } | null {
  if (typeof v === 'string') {
    // eslint-disable-next-line no-control-regex
    return /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(v)
      ? { path: at, message: 'must not contain NUL or lone surrogates' }
      : null
  }
  if (typeof v === 'number') return Number.isFinite(v) ? null : { path: at, message: 'must be a finite number' }
  if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      const keyBad = unstorable(k, at)
      if (keyBad) return keyBad
      const bad = unstorable(x, `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`)
      if (bad) return bad
    }
  }
  return null
}

interface CheckedEntry {
  entry: Record<string, unknown>
  nonce: string
  signature: string
  keyFingerprint: string
}

/** Shape, key and signature of entry `index` (400 with its index when any fails). */
function checkEntry(raw: unknown, index: number): CheckedEntry {
  if (!Value.Check(AuditEntryPayload, raw)) {
    const first = Value.Errors(AuditEntryPayload, raw).First()
    throw new EntryRejected(400, `malformed entry: ${first ? `${first.path || '/'} ${first.message}` : 'not an object'}`, index)
  }
  // Only what the schema names is kept: a field the client did not sign must not be served as
  // part of an entry marked verified.
  const sent = raw as Record<string, unknown>
  const entry = Object.fromEntries(ENTRY_FIELDS.filter((k) => k in sent).map((k) => [k, sent[k]])) as Record<string, unknown> & {
    public_key: string
    signature: string
    nonce: string
  }
  const key = ed25519Key(entry.public_key)
  if (!key) throw new EntryRejected(400, 'public_key is not an Ed25519 public key (SPKI PEM)', index)
  const signature = entry.signature.toLowerCase()
  if (!verifyEntry(entry, key, signature)) throw new EntryRejected(400, 'invalid signature', index)
  return { entry, nonce: entry.nonce, signature, keyFingerprint: keyFingerprint(key) }
}
