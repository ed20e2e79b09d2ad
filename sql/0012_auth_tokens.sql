-- JWT tokens: the SHA-256 of each issued token string, so a parent app token can be named by its
-- hash (`POST /tokens/bearer` with `app_token_hash`, SPEC §7.5). Unique per org only: the value
-- is derived from a server-signed token, but every unique key a client value feeds includes org_id.
ALTER TABLE auth.issued_tokens ADD COLUMN token_hash bytea CHECK (token_hash IS NULL OR length(token_hash) = 32);
CREATE UNIQUE INDEX issued_tokens_hash ON auth.issued_tokens (org_id, token_hash) WHERE token_hash IS NOT NULL;

-- Session tokens carry `max_events`: events accepted under each session token, counted
-- atomically (`events_used + n <= max_events`) so every instance enforces the same budget.
ALTER TABLE auth.issued_tokens ADD COLUMN events_used integer NOT NULL DEFAULT 0 CHECK (events_used >= 0);
GRANT UPDATE (events_used) ON auth.issued_tokens TO quint_app;

-- Filling the revocation filter (src/auth/revocation-filter.ts) needs every org's revoked,
-- unexpired jtis at once. A transaction that sets app.revocation_filter_read = 'on' may read
-- revoked rows of any org, and only revoked ones (the same pattern as api_tokens.token_lookup);
-- src/features/auth-tokens/repo.ts selects (org_id, jti) only.
CREATE POLICY revocation_filter_read ON auth.issued_tokens FOR SELECT
  USING (revoked_at IS NOT NULL AND current_setting('app.revocation_filter_read', true) = 'on');
