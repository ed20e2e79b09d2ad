/**
 * @module features/audit-sync/schema
 * Shapes of the public CLI's sync (SPEC §7.2, §8.5): `POST`/`GET /v1/audit/entries` and
 * `GET`/`PUT /v1/policies/active`. The entry body is read and checked item by item in the
 * handler, so that a bad entry is answered with its index as the client expects.
 */
import { Type } from '@sinclair/typebox'
import { NameSchema } from '../../lib/names.ts'
import { Nullable } from '../../lib/schema.ts'
import { PageQuery } from '../../http/pagination.ts'

const Str = (max: number) => Nullable(Type.String({ maxLength: max }))

/** One entry as the CLI (and the Go proxy, with agent_id and agent_name) sends it. */
export const AuditEntryPayload = Type.Object(
  {
    timestamp: Type.String({ minLength: 1, maxLength: 64 }),
    server_name: Str(256),
    direction: Type.String({ maxLength: 32 }),
    method: Str(256),
    message_id: Str(256),
    tool_name: Str(256),
    arguments_json: Str(1024 * 1024),
    response_json: Str(1024 * 1024),
    verdict: Type.String({ maxLength: 64, description: 'Not a closed set: `allow`, `deny`, `denied`, `passthrough`, …' }),
    risk_score: Type.Optional(Nullable(Type.Integer())),
    risk_level: Type.Optional(Str(32)),
    policy_hash: Type.String({ maxLength: 128 }),
    prev_hash: Type.String({ maxLength: 64, pattern: '^([0-9a-f]{64})?$' }),
    nonce: Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$', description: 'A UUID in practice; compared exactly.' }),
    signature: Type.String({ pattern: '^[0-9a-fA-F]{128}$' }),
    public_key: Type.String({ minLength: 1, maxLength: 1024 }),
    agent_id: Type.Optional(Str(256)),
    agent_name: Type.Optional(Str(256)),
  },
  { additionalProperties: true },
)

export const AuditEntriesBody = Type.Object(
  { entries: Type.Array(AuditEntryPayload, { maxItems: 500 }) },
  { description: 'At most 500 entries, in the order the client wrote them.' },
)

export const AuditEntriesAccepted = Type.Object({
  ingested: Type.Integer({ minimum: 0 }),
  ids: Type.Array(Type.Integer(), { description: 'The stored ids, in the order of the entries.' }),
})

/** The client's own error shapes (SPEC §7.2): it reads `index`, and `nonce` on a replay. */
export const AuditEntryRejected = Type.Object({
  error: Type.String(),
  index: Type.Integer({ minimum: 0 }),
  nonce: Type.Optional(Type.String()),
})

export const StoredAuditEntry = Type.Object(
  {
    id: Type.Integer(),
    received_at: Type.String({ format: 'date-time' }),
    key_fingerprint: Type.String({ description: 'SHA-256 of the signing key: the chain runs per key.' }),
    signature_verified: Type.Boolean({ description: 'Always true: an entry whose signature does not verify is refused.' }),
    chain_verified: Type.Boolean({
      description:
        "Its prev_hash is the hash of the key's previous entry stored here (or it is the key's first, with prev_hash empty).",
    }),
    entry: Type.Record(Type.String(), Type.Unknown(), { description: 'The entry exactly as the client sent it.' }),
  },
  { additionalProperties: false },
)

export const StoredAuditEntries = Type.Object({ entries: Type.Array(StoredAuditEntry), next_cursor: Nullable(Type.String()) })

export const StoredAuditQuery = Type.Object(
  {
    ...PageQuery.properties,
    key_fingerprint: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$', description: "One key's entries." })),
    chain_verified: Type.Optional(Type.Boolean({ description: 'Only entries whose chain verified (true) or did not (false).' })),
  },
  { additionalProperties: false },
)

export const ActivePolicy = Type.Object({
  name: Type.String(),
  version: Type.Integer({ minimum: 1 }),
  config_json: Type.Record(Type.String(), Type.Unknown(), { description: "The local proxy's PolicyConfig (SPEC §11.3)." }),
})

export const PutActivePolicyBody = Type.Object(
  { name: NameSchema, config_json: Type.Record(Type.String(), Type.Unknown()) },
  { additionalProperties: false },
)
