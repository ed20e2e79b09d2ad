/**
 * @module features/api-tokens/repo
 * The `api_tokens` table: minting (hash stored, raw value returned once), listing, revoking.
 * Every function runs inside `withOrg`; rows belong to the transaction's org.
 */
import type { RevokedToken } from '../../auth/credentials.ts'
import { mintToken, type FORMATS } from '../../auth/opaque/format.ts'
import type { Tx } from '../../infra/db.ts'
import type { Keyset } from '../../http/pagination.ts'

type Format = (typeof FORMATS)[keyof typeof FORMATS]

export interface TokenRow {
  id: string
  name: string
  token_prefix: string
  scopes: string[]
  created_at: Date
  expires_at: Date | null
  revoked_at: Date | null
  last_used_at: Date | null
}

export interface IssuedToken extends TokenRow {
  /** The raw credential: returned once, never stored. */
  token: string
}

export async function issueToken(
  tx: Tx,
  input: { format: Format; name: string; scopes: string[]; expiresAt?: Date | null; createdBy?: string | null },
): Promise<IssuedToken> {
  const minted = mintToken(input.format)
  const [row] = await tx<TokenRow[]>`
    insert into api_tokens (org_id, kind, name, token_prefix, token_hash, scopes, expires_at, created_by)
    values (app_current_org(), ${input.format.kind}, ${input.name}, ${minted.displayPrefix}, ${minted.hash},
            ${input.scopes}, ${input.expiresAt ?? null}, ${input.createdBy ?? null})
    returning id, name, token_prefix, scopes, created_at, expires_at, revoked_at, last_used_at`
  return { ...row!, token: minted.raw }
}

/** Newest first. `created_key` is created_at as Postgres prints it (microseconds), for cursors. */
export function listTokens(
  tx: Tx,
  kind: string,
  limit: number,
  after: Keyset | null,
): Promise<(TokenRow & { created_key: string })[]> {
  return tx<(TokenRow & { created_key: string })[]>`
    select id, name, token_prefix, scopes, created_at, expires_at, revoked_at, last_used_at,
           created_at::text as created_key
      from api_tokens
     where kind = ${kind}
       ${
         after
           ? // ::text first: a parameter typed timestamptz is sent through a JS Date (milliseconds).
             tx`and (created_at, id) < (${after.at}::text::timestamptz, ${after.id}::uuid)`
           : tx``
       }
     order by created_at desc, id desc
     limit ${limit}`
}

/** Which tokens to revoke: one by id, every live token of a kind bound to a machine, or a member's personal tokens. */
export type RevokeTarget =
  { kind: string; id: string } | { kind: string; machineId: string } | { kind: 'personal'; memberId: string }

/**
 * Every revocation's write to Postgres (the authority); the caller then hands the result to
 * `CredentialResolver.revoked` after its transaction commits, so that caches everywhere drop the
 * tokens. Returns each matching token with its hash and whether this call revoked it (false: it
 * was already revoked; revoked_at is kept). No row: no such token in this org.
 */
export async function revokeTokens(tx: Tx, target: RevokeTarget): Promise<(RevokedToken & { revokedNow: boolean })[]> {
  const match =
    'id' in target
      ? tx`id = ${target.id} and kind = ${target.kind}`
      : 'machineId' in target
        ? tx`machine_id = ${target.machineId} and kind = ${target.kind} and revoked_at is null`
        : tx`member_id = ${target.memberId} and kind = 'personal' and revoked_at is null`
  const rows = await tx<{ id: string; token_hash: Buffer; was_revoked: boolean }[]>`
    update api_tokens t set revoked_at = coalesce(t.revoked_at, now())
      from (select id, revoked_at is not null as was_revoked from api_tokens where ${match} for update) old
     where t.id = old.id
    returning t.id, t.token_hash, old.was_revoked`
  return rows.map((r) => ({ id: r.id, hash: r.token_hash, revokedNow: !r.was_revoked }))
}
