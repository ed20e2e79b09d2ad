/**
 * @module features/jwt-tokens/repo
 * `auth.issued_tokens` and `auth.revocation_log` inside tenant transactions: finding a parent,
 * single and cascade revocation, the session event budget.
 */
import type { ParentToken, TokenType } from '../../auth/jwt/hierarchy.ts'
import { withSettings, type Sql, type Tx } from '../../infra/db.ts'

export interface IssuedRow extends ParentToken {
  revoked: boolean
  /** The token or one of its ancestors is revoked. */
  chainRevoked: boolean
  expiresAt: Date
}

/**
 * An issued token of this org by jti (or by the SHA-256 of its string), with whether it or any
 * ancestor is revoked. Undefined when the org has no such token (RLS hides other orgs').
 */
export async function findIssued(tx: Tx, by: { jti: string } | { hash: Buffer }): Promise<IssuedRow | undefined> {
  const rows = await tx<
    {
      jti: string
      token_type: TokenType
      depth: number
      claims: Record<string, unknown>
      expires_at: Date
      revoked: boolean
      chain_revoked: boolean
    }[]
  >`
    with recursive me as (
      select jti, parent_jti, token_type, depth, claims, expires_at, revoked_at from auth.issued_tokens
       where ${'jti' in by ? tx`jti = ${by.jti}` : tx`token_hash = ${by.hash}`}
    ), chain(jti, parent_jti, revoked_at, n) as (
      select jti, parent_jti, revoked_at, 0 from me
      union all
      select t.jti, t.parent_jti, t.revoked_at, c.n + 1
        from auth.issued_tokens t join chain c on t.jti = c.parent_jti where c.n < 16
    )
    select me.jti::text as jti, me.token_type, me.depth, me.claims, me.expires_at,
           me.revoked_at is not null as revoked,
           exists (select 1 from chain where revoked_at is not null) as chain_revoked
      from me`
  const r = rows[0]
  if (!r) return undefined
  return {
    jti: r.jti,
    type: r.token_type,
    depth: r.depth,
    claims: r.claims,
    exp: Math.floor(r.expires_at.getTime() / 1000),
    expiresAt: r.expires_at,
    revoked: r.revoked,
    chainRevoked: r.chain_revoked,
  }
}

export interface Revoked {
  jti: string
  tokenType: TokenType
  /** False when it was already revoked before this call (idempotent repeat). */
  revokedNow: boolean
}

/**
 * Revokes `jti` and, with `cascade`, every descendant (recursive over parent_jti), logging each
 * newly revoked token in auth.revocation_log. Empty when the org has no such token.
 * Already-revoked tokens are returned (so caches are evicted again) but not logged twice.
 */
export async function revokeTree(
  tx: Tx,
  jti: string,
  options: { cascade: boolean; reason: string | null; revokedBy: string },
): Promise<Revoked[]> {
  const rows = options.cascade
    ? await tx<{ jti: string; token_type: TokenType; revoked_at: Date | null }[]>`
        with recursive tree(jti, n) as (
          select jti, 0 from auth.issued_tokens where jti = ${jti}
          union all
          select t.jti, tree.n + 1 from auth.issued_tokens t join tree on t.parent_jti = tree.jti where tree.n < 64
        )
        select i.jti::text as jti, i.token_type, i.revoked_at
          from auth.issued_tokens i join tree using (jti)
         for update of i`
    : await tx<{ jti: string; token_type: TokenType; revoked_at: Date | null }[]>`
        select jti::text as jti, token_type, revoked_at from auth.issued_tokens where jti = ${jti} for update`
  if (rows.length === 0) return []
  const fresh = rows.filter((r) => r.revoked_at === null).map((r) => r.jti)
  if (fresh.length > 0) {
    await tx`update auth.issued_tokens set revoked_at = now() where jti = any(${fresh}::uuid[]) and revoked_at is null`
    const types = rows.filter((r) => r.revoked_at === null).map((r) => r.token_type)
    await tx`
      insert into auth.revocation_log (org_id, jti, token_type, reason, revoked_by, cascade_root)
      select app_current_org(), u.j, u.t, ${options.reason}, ${options.revokedBy}, ${options.cascade ? jti : null}::uuid
        from unnest(${fresh}::uuid[], ${types}::text[]) as u(j, t)`
  }
  return rows.map((r) => ({ jti: r.jti, tokenType: r.token_type, revokedNow: r.revoked_at === null }))
}

/**
 * Takes `n` events from a session token's budget; false (nothing taken) when that would pass
 * `max_events`. One atomic UPDATE, so every instance shares the same budget.
 */
export async function takeSessionEvents(tx: Tx, jti: string, n: number, maxEvents: number): Promise<boolean> {
  const rows = await tx`
    update auth.issued_tokens set events_used = events_used + ${n}
     where jti = ${jti} and token_type = 'session' and events_used + ${n} <= ${maxEvents}
     returning 1`
  return rows.length > 0
}

/**
 * Every org's revoked jtis whose tokens could still be presented (not expired beyond the clock
 * skew), for filling the revocation filter. Reads through the `revocation_filter_read` policy
 * (sql/0012_auth_tokens.sql).
 */
export async function revokedForFilter(sql: Sql, skewS: number): Promise<{ orgId: string; jti: string }[]> {
  const rows = await withSettings(
    sql,
    { 'app.revocation_filter_read': 'on' },
    (tx) => tx<{ org_id: string; jti: string }[]>`
    select org_id::text as org_id, jti::text as jti from auth.issued_tokens
     where revoked_at is not null and expires_at > now() - ${skewS} * interval '1 second'`,
  )
  return rows.map((r) => ({ orgId: r.org_id, jti: r.jti }))
}

/**
 * Revocations committed at or after `since` (minus nothing: the caller overlaps its windows),
 * with their time, for instances without Redis to learn other instances' revocations
 * (src/features/jwt-tokens/revocation-poll.ts). Uses the same read policy as `revokedForFilter`.
 */
export async function revokedSince(sql: Sql, since: Date): Promise<{ orgId: string; jti: string; at: number; ageMs: number }[]> {
  // age_ms: how long ago each was revoked, on the database's clock alone (the revocation SLO
  // metric, issue 14), so that this host's clock skew does not enter it.
  type Row = { org_id: string; jti: string; at: Date; age_ms: number }
  const rows = await withSettings(
    sql,
    { 'app.revocation_filter_read': 'on' },
    (tx) => tx<Row[]>`
    select org_id::text as org_id, jti::text as jti, revoked_at as at,
           (extract(epoch from clock_timestamp() - revoked_at) * 1000)::float8 as age_ms
      from auth.issued_tokens
     where revoked_at is not null and revoked_at >= ${since.toISOString()}::timestamptz
     order by revoked_at`,
  )
  return rows.map((r) => ({ orgId: r.org_id, jti: r.jti, at: r.at.getTime(), ageMs: Number(r.age_ms) }))
}

/** The database's clock, so that a poll cursor never depends on this host's. */
export async function databaseNow(sql: Sql): Promise<Date> {
  const [row] = await sql<{ now: Date }[]>`select now() as now`
  return row!.now
}
