-- Where an administrative change came from (issue 10: "the actor, source IP, user agent"): the
-- client address as seen by this service (or by the outermost trusted proxy, TRUST_PROXY_HOPS)
-- and the User-Agent header. Null for changes no request made (CLI, system).
ALTER TABLE audit_log ADD COLUMN source_ip inet;
ALTER TABLE audit_log ADD COLUMN user_agent text CHECK (length(user_agent) <= 512);
-- The log is read newest first, filtered by actor or target.
CREATE INDEX audit_log_org_actor ON audit_log (org_id, actor_id, occurred_at DESC, id DESC);
CREATE INDEX audit_log_org_target ON audit_log (org_id, target_id, occurred_at DESC, id DESC);
