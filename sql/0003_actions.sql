-- Actions: every accepted event, RANGE-partitioned by the server's created_at month, plus the
-- (org_id, event_key) dedupe ledger. The client's timestamp is only a column (occurred_at,
-- validated and clamped by ingest), so no client value can pick a partition.
--
-- No foreign keys here: these are the ingest hot path and org_id is stamped from a verified
-- credential. Partitions carry the tenant policy too and quint_app has no privilege on them:
-- the parent is the only way in.

CREATE TABLE actions (
  org_id           uuid NOT NULL,
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  created_at       timestamptz NOT NULL DEFAULT now(),
  event_key        text NOT NULL CHECK (length(event_key) BETWEEN 1 AND 512),
  event_id         text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 256),
  occurred_at      timestamptz NOT NULL,
  client_timestamp text CHECK (length(client_timestamp) <= 64),
  machine_id       uuid,
  session_key      text CHECK (length(session_key) <= 256),
  agent_key        text CHECK (length(agent_key) <= 256),
  schema_version   smallint,
  source           text,
  platform         text,
  action_type      text,
  action           text,
  tool_name        text,
  arguments        jsonb,
  decision         text,
  blocked          boolean NOT NULL DEFAULT false,
  risk_score       smallint CHECK (risk_score BETWEEN 0 AND 100),
  labels           jsonb NOT NULL DEFAULT '{}',
  extra            jsonb NOT NULL DEFAULT '{}',
  redacted         boolean NOT NULL DEFAULT false,
  PRIMARY KEY (org_id, created_at, id)
) PARTITION BY RANGE (created_at);
CREATE INDEX actions_org_occurred ON actions (org_id, occurred_at DESC);
CREATE INDEX actions_org_session ON actions (org_id, session_key, occurred_at);
SELECT quint_enable_tenant_rls('actions');
GRANT SELECT, INSERT ON actions TO quint_app;

-- Dedupe ledger: unpartitioned so that a retry is recognised whatever month it arrives in.
CREATE TABLE event_keys (
  org_id            uuid NOT NULL,
  event_key         text NOT NULL CHECK (length(event_key) BETWEEN 1 AND 512),
  action_id         uuid NOT NULL,
  action_created_at timestamptz NOT NULL,
  PRIMARY KEY (org_id, event_key)
);
SELECT quint_enable_tenant_rls('event_keys');
GRANT SELECT, INSERT ON event_keys TO quint_app;

-- Creates the monthly partitions for the current UTC month and `months_ahead` after it; returns
-- the names it created. SECURITY DEFINER so any instance can keep partitions ahead without owner
-- credentials; the new partitions belong to the owner and quint_app gets no privilege on them.
CREATE FUNCTION quint_ensure_actions_partitions(months_ahead int) RETURNS SETOF text
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, public
  AS $$
DECLARE
  first_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
  m timestamp;
  part text;
BEGIN
  IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 36 THEN
    RAISE EXCEPTION 'months_ahead must be between 0 and 36';
  END IF;
  -- One creator at a time across instances; others wait, then find the partitions present.
  PERFORM pg_advisory_xact_lock(hashtext('quint_ensure_actions_partitions'));
  FOR i IN 0..months_ahead LOOP
    m := first_month + make_interval(months => i);
    part := 'actions_' || to_char(m, 'YYYYMM');
    CONTINUE WHEN to_regclass('public.' || part) IS NOT NULL;
    EXECUTE format(
      'CREATE TABLE public.%I PARTITION OF public.actions FOR VALUES FROM (%L) TO (%L)',
      part, (m AT TIME ZONE 'UTC'), ((m + interval '1 month') AT TIME ZONE 'UTC'));
    EXECUTE format('REVOKE ALL ON public.%I FROM PUBLIC, quint_app', part);
    PERFORM quint_enable_tenant_rls(format('public.%I', part)::regclass);
    RETURN NEXT part;
  END LOOP;
END $$;
REVOKE ALL ON FUNCTION quint_ensure_actions_partitions(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quint_ensure_actions_partitions(int) TO quint_app;
