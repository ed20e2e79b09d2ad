-- Pending approvals (issue 12; docs/auth.md "Overrides", docs/live.md): an approval request is an
-- override token (`qt_override_`) not used, not expired and not revoked with its chain.
-- `GET /v1/overrides/pending` lists them for anyone who reads the org, and the live stream
-- announces each request and its end (`approval` on the `alerts` topic).
--
-- What the request carried beyond its claims, kept with the token rather than only in the audit
-- log (which people who only read the org may not read):
-- - `minted_by`: the opaque credential (api_tokens.id, e.g. the admin key) that minted the token;
--   null when a JWT minted it (an override's parent_jti is then the JWT that minted it), and for
--   tokens minted before this migration.
-- - `request_reason`: the reason given when minting an override (shown to whoever decides).
ALTER TABLE auth.issued_tokens
  ADD COLUMN minted_by      uuid,
  ADD COLUMN request_reason text CHECK (length(request_reason) <= 500);

-- The org's live requests: a range over expires_at reads only the unexpired ones (an override
-- lives 5 minutes at most), however many the org decided or let expire before.
CREATE INDEX issued_tokens_pending_overrides ON auth.issued_tokens (org_id, expires_at)
  WHERE token_type = 'override' AND used_at IS NULL AND revoked_at IS NULL;

-- Whether `p_jti` or any token above it is revoked (an override is pending only while nothing in
-- its chain is): up the parent_jti links, one primary-key lookup per level, at most 16 levels.
-- As the caller (row-level security applies: another org's token is never found). A function
-- rather than a subquery in each statement: the planner costs a correlated recursive subquery
-- per candidate row as if it read the org's whole token table, which makes a page of pending
-- requests look expensive enough to be JIT-compiled (half a second spent compiling a query
-- that runs in one millisecond); COST says what one call really costs.
CREATE FUNCTION auth.chain_revoked(p_jti uuid) RETURNS boolean
  LANGUAGE sql STABLE COST 10
  SET search_path = pg_catalog, public
  AS $$
WITH RECURSIVE up(jti, parent_jti, revoked, n) AS (
  SELECT t.jti, t.parent_jti, t.revoked_at IS NOT NULL, 0 FROM auth.issued_tokens t WHERE t.jti = p_jti
  UNION ALL
  SELECT q.jti, q.parent_jti, q.revoked_at IS NOT NULL, up.n + 1
    FROM up
    CROSS JOIN LATERAL (
      SELECT i.jti, i.parent_jti, i.revoked_at FROM auth.issued_tokens i WHERE i.jti = up.parent_jti LIMIT 1
    ) q
   WHERE up.n < 16 AND NOT up.revoked
)
SELECT coalesce(bool_or(revoked), false) FROM up
$$;
REVOKE ALL ON FUNCTION auth.chain_revoked(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.chain_revoked(uuid) TO quint_app;

-- The live log names override tokens too (ids: their jtis), read as they are when read.
ALTER TABLE live_log DROP CONSTRAINT live_log_kind_check;
ALTER TABLE live_log ADD CONSTRAINT live_log_kind_check CHECK (kind IN ('event', 'alert', 'delivery', 'approval'));
