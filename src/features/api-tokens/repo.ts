/**
 * @module features/api-tokens/repo
 * The `api_tokens` table: minting (hash stored, raw value returned once), listing, rotating,
 * revoking. Every function runs inside `withOrg`; rows belong to the transaction's org.
 */
import type { RevokedToken } from '../../auth/credentials.ts'
import { mintToken, type OpaqueFormat } from '../../auth/opaque/format.ts'
import type { Tx } from '../../infra/db.ts'
import type { Keyset } from '../../http/pagination.ts'

export interface TokenRow {
  id: string
  /** The stored kind: api_key, install (deploy), enrollment, service, personal. */
  kind: string
  name: string
  token_prefix: string
  scopes: string[]
  member_id: string | null
  machine_id: string | null
  created_by: string | null
  created_at: Date
  expires_at: Date | null
  revoked_at: Date | null
  last_used_at: Date | null
  last_used_ip: string | null
  use_count: string
  replaced_by: string | null
  /** created_at as Postgres prints it (microseconds), for cursors. */
  created_key: string
}

export interface IssuedToken extends TokenRow {
  /** The raw credential: returned once, never stored. */
  token: string
}

const COLUMNS = (tx: Tx) => tx`
  id, kind, name, token_prefix, scopes, member_id, machine_id, created_by, created_at, expires_at, revoked_at,
  last_used_at, host(last_used_ip) as last_used_ip, use_count::text, replaced_by, created_at::text as created_key`

export interface IssueInput {
  format: OpaqueFormat
  name: string
  scopes: readonly string[]
  expiresAt?: Date | null
  /** The credential or member that created it. */
  createdBy?: string | null
  /** A personal token's owner. */
  memberId?: string | null
  /** The machine a service token minted at registration is bound to. */
  machineId?: string | null
}

export async function issueToken(tx: Tx, input: IssueInput): Promise<IssuedToken> {
  const minted = mintToken(input.format)
  const [row] = await tx<TokenRow[]>`
    insert into api_tokens (org_id, kind, name, token_prefix, token_hash, scopes, expires_at, created_by, member_id, machine_id)
    values (app_current_org(), ${input.format.kind}, ${input.name}, ${minted.displayPrefix}, ${minted.hash},
            ${input.scopes as string[]}, ${input.expiresAt ?? null}, ${input.createdBy ?? null}, ${input.memberId ?? null},
            ${input.machineId ?? null})
    returning ${COLUMNS(tx)}`
  return { ...row!, token: minted.raw }
}

export interface TokenFilter {
  kinds?: readonly string[]
  memberId?: string
  /** Only tokens neither revoked nor expired. */
  active?: boolean
}

/** Newest first. */
export function listTokens(tx: Tx, filter: TokenFilter, limit: number, after: Keyset | null): Promise<TokenRow[]> {
  return tx<TokenRow[]>`
    select ${COLUMNS(tx)}
      from api_tokens
     where true
       ${filter.kinds ? tx`and kind = any(${filter.kinds as string[]})` : tx``}
       ${filter.memberId ? tx`and member_id = ${filter.memberId}` : tx``}
       ${filter.active ? tx`and revoked_at is null and (expires_at is null or expires_at > now())` : tx``}
       ${
         after
           ? // ::text first: a parameter typed timestamptz is sent through a JS Date (milliseconds).
             tx`and (created_at, id) < (${after.at}::text::timestamptz, ${after.id}::uuid)`
           : tx``
       }
     order by created_at desc, id desc
     limit ${limit}`
}

/**
 * One token, locked for a change (rotation, revocation), or null. The locks here are FOR NO KEY
 * UPDATE: machines registering with a token hold FOR KEY SHARE on it (their foreign key), and a
 * FOR UPDATE would deadlock with them.
 */
export async function getToken(tx: Tx, id: string, lock = false): Promise<TokenRow | null> {
  const [row] = await tx<
    TokenRow[]
  >`select ${COLUMNS(tx)} from api_tokens where id = ${id} ${lock ? tx`for no key update` : tx``}`
  return row ?? null
}

/**
 * Rotation's end of the old token: it stays valid until `until` (never later than it already
 * expired) and names its successor.
 */
export async function retireAt(tx: Tx, id: string, until: Date, successor: string): Promise<TokenRow & { token_hash: Buffer }> {
  const [row] = await tx<(TokenRow & { token_hash: Buffer })[]>`
    update api_tokens set expires_at = least(coalesce(expires_at, ${until}), ${until}), replaced_by = ${successor}
     where id = ${id}
    returning ${COLUMNS(tx)}, token_hash`
  return row!
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
      from (select id, revoked_at is not null as was_revoked from api_tokens where ${match} for no key update) old
     where t.id = old.id
    returning t.id, t.token_hash, old.was_revoked`
  return rows.map((r) => ({ id: r.id, hash: r.token_hash, revokedNow: !r.was_revoked }))
}
