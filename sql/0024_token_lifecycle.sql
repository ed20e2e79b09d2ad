-- Every credential's lifecycle (issue 10): where and how often each opaque token is used, and
-- rotation. use_count is added to in batches (at most one write per token per minute and
-- instance, src/auth/credentials.ts), so it can trail the truth by that minute.
ALTER TABLE api_tokens ADD COLUMN last_used_ip inet;
ALTER TABLE api_tokens ADD COLUMN use_count bigint NOT NULL DEFAULT 0 CHECK (use_count >= 0);
-- A rotated token names its successor; its expires_at is moved to the end of the overlap window.
ALTER TABLE api_tokens ADD COLUMN replaced_by uuid;
GRANT UPDATE (last_used_ip, use_count, expires_at, replaced_by) ON api_tokens TO quint_app;
-- Listing one member's personal tokens, and revoking them with the membership.
CREATE INDEX api_tokens_org_member ON api_tokens (org_id, member_id) WHERE member_id IS NOT NULL;
-- The operator's directory of orgs (`quint-cloud org list`, and `org create` refusing a name in
-- use): a transaction that sets app.org_directory sees every org's id, name and creation time.
-- Only the CLI sets it; no request path does (the same pattern as app.dead_letter_discovery).
CREATE POLICY org_directory ON organizations FOR SELECT
  USING (current_setting('app.org_directory', true) = 'on');
