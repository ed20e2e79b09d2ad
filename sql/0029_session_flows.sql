-- Flow-shape signatures (issue 11; docs/flow-shapes.md): each session's capability-flow matrix,
-- kept by the alerts consumer, the shapes the session already matched (an alert fires once per
-- session and shape), and the keys of its latest events (a retried event steps it once).
-- Its own table, purged by its own clock: a flow is alive while its session is.
CREATE TABLE session_flows (
  org_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  session_key    text NOT NULL CHECK (length(session_key) BETWEEN 1 AND 256),
  flow           jsonb NOT NULL,
  shapes_matched text[] NOT NULL DEFAULT '{}',
  recent_keys    text[] NOT NULL DEFAULT '{}' CHECK (cardinality(recent_keys) <= 32),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, session_key)
);
CREATE INDEX session_flows_org_updated ON session_flows (org_id, updated_at);
SELECT quint_enable_tenant_rls('session_flows');
GRANT SELECT, INSERT, UPDATE ON session_flows TO quint_app;

-- Retention (docs/retention.md): `session_flows` rows not stepped since the org's cutoff. The
-- other targets are 0019's, unchanged.
ALTER FUNCTION quint_purge_expired(text, timestamptz, int) RENAME TO quint_purge_expired_0019;
REVOKE ALL ON FUNCTION quint_purge_expired_0019(text, timestamptz, int) FROM quint_app;
CREATE FUNCTION quint_purge_expired(p_target text, p_now timestamptz, p_limit int) RETURNS int
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, public, pg_temp
  AS $$
DECLARE
  org uuid := public.app_current_org();
  days int;
  cutoff timestamptz;
  n int := 0;
BEGIN
  IF p_target <> 'session_flows' THEN
    RETURN quint_purge_expired_0019(p_target, p_now, p_limit);
  END IF;
  IF org IS NULL THEN
    RAISE EXCEPTION 'quint_purge_expired needs a tenant context' USING ERRCODE = '42501';
  END IF;
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 50000 THEN
    RAISE EXCEPTION 'p_limit must be between 1 and 50000' USING ERRCODE = '22023';
  END IF;
  PERFORM quint_retention_check_now(p_now);
  SELECT o.retention_days INTO days FROM organizations o WHERE o.id = org;
  IF days IS NULL THEN
    RETURN 0;
  END IF;
  cutoff := p_now - make_interval(days => days);
  DELETE FROM session_flows f
   WHERE f.ctid = ANY (ARRAY(SELECT x.ctid FROM session_flows x
                              WHERE x.org_id = org AND x.updated_at < cutoff LIMIT p_limit))
     AND f.org_id = org AND f.updated_at < cutoff;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;
REVOKE ALL ON FUNCTION quint_purge_expired(text, timestamptz, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quint_purge_expired(text, timestamptz, int) TO quint_app;
