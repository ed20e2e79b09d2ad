/**
 * @module features/tokens/repo
 * The `api_tokens` table: minting (hash stored, raw value returned once), listing, revoking.
 * Every function runs inside `withOrg`; rows belong to the transaction's org.
 */
import { mintToken, type FORMATS } from '../../auth/opaque-tokens.ts'
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
export function listTokens(tx: Tx, kind: string, limit: number, after: Keyset | null): Promise<(TokenRow & { created_key: string })[]> {
  return tx<(TokenRow & { created_key: string })[]>`
    select id, name, token_prefix, scopes, created_at, expires_at, revoked_at, last_used_at,
           created_at::text as created_key
      from api_tokens
     where kind = ${kind}
       ${after
         ? // ::text first: a parameter typed timestamptz is sent through a JS Date (milliseconds).
           tx`and (created_at, id) < (${after.at}::text::timestamptz, ${after.id}::uuid)`
         : tx``}
     order by created_at desc, id desc
     limit ${limit}`
}

/**
 * Revokes a token of the given kind. Returns null when there is no such token in this org,
 * otherwise whether this call revoked it (false: it was already revoked).
 */
export async function revokeToken(tx: Tx, kind: string, id: string): Promise<{ id: string; revokedNow: boolean } | null> {
  const [row] = await tx<{ id: string; was_revoked: boolean }[]>`
    update api_tokens t set revoked_at = coalesce(t.revoked_at, now())
      from (select id, revoked_at is not null as was_revoked from api_tokens
             where id = ${id} and kind = ${kind} for update) old
     where t.id = old.id
    returning t.id, old.was_revoked`
  return row ? { id: row.id, revokedNow: !row.was_revoked } : null
}
