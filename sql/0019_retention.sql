-- Retention (issue 9; docs/retention.md): each org keeps its data `retention_days` (default 90),
-- counted from when the server received it. A purge job deletes what is older in bounded batches,
-- drops a whole month partition of `actions` once no org needs it, and prunes the dedupe ledgers
-- a margin after the window.
--
-- Least privilege: quint_app gets no DELETE on actions or on the ledgers. It purges through
-- quint_purge_expired, a SECURITY DEFINER function that reads the org's own retention and deletes
-- only rows past it, never later than the database's clock allows. So the runtime role, whatever
-- SQL it runs, cannot remove an event the org's retention still covers; the only lever is
-- retention_days itself, changed through an audited admin route.

ALTER TABLE organizations
  ADD COLUMN retention_days integer NOT NULL DEFAULT 90
  CONSTRAINT organizations_retention_days CHECK (retention_days BETWEEN 1 AND 3650);
GRANT UPDATE (retention_days) ON organizations TO quint_app;

-- The purge job walks every org: a transaction that sets app.retention_discovery to 'on' sees all
-- organizations (SELECT only; the same pattern as webhook_discovery in 0011). It reads ids and
-- retention_days; each org's rows are then purged under its own tenant context.
CREATE POLICY retention_discovery ON organizations FOR SELECT
  USING (NULLIF(current_setting('app.retention_discovery', true), '') = 'on');

-- The ledgers are pruned by age. event_keys already carries the action's receive time;
-- session_event_keys gets the time the sessions consumer counted the event (existing rows: the
-- migration's time, which only keeps them longer).
CREATE INDEX event_keys_org_created ON event_keys (org_id, action_created_at);
ALTER TABLE session_event_keys ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX session_event_keys_org_created ON session_event_keys (org_id, created_at);

-- Ledger keys outlive the actions they name by this margin (days): a client retrying an event
-- within retention + margin of its first delivery is still answered `duplicate`.
CREATE FUNCTION quint_retention_ledger_margin_days() RETURNS int
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT 30 $$;

-- `p_now` is the caller's clock (tests move it), but never later than the database's own clock
-- (plus 5 minutes of skew between hosts): a later one would let the caller delete data the
-- retention setting still covers.
CREATE FUNCTION quint_retention_check_now(p_now timestamptz) RETURNS void
  LANGUAGE plpgsql STABLE
  SET search_path = pg_catalog, public, pg_temp
  AS $$
BEGIN
  IF p_now IS NULL OR p_now > now() + interval '5 minutes' THEN
    RAISE EXCEPTION 'retention clock % is later than the database clock %', p_now, now()
      USING ERRCODE = '22023';
  END IF;
END $$;
REVOKE ALL ON FUNCTION quint_retention_check_now(timestamptz) FROM PUBLIC;

-- One bounded batch of the current org's expired rows of one table; returns how many were
-- deleted (fewer than p_limit: nothing more is due). Short statements, no lock beyond the rows
-- deleted: ingest goes on meanwhile.
--   actions             created_at (server receive time) before the cutoff
--   alerts              created_at before the cutoff
--   sessions            no activity (start, last event, end, last update) since the cutoff;
--                       a child of a purged parent keeps its parent_key, its parent_id becomes NULL
--   webhook_deliveries  settled deliveries (not pending) created before the cutoff: they carry
--                       copies of alerts
--   alert_session_state credential reads before the cutoff
--   event_hourly(_top)  the stats' hourly counts of hours 30 days and an hour before the cutoff
--                       (an event may be dated up to 30 days before its receipt); the counts of
--                       purged actions leave with them
--   ingest_stats        per-day ingest counters of UTC days before the cutoff's day
--   event_keys          ledger keys of actions received before cutoff − margin
--   session_event_keys  sessions-consumer keys counted before cutoff − margin
CREATE FUNCTION quint_purge_expired(p_target text, p_now timestamptz, p_limit int) RETURNS int
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, public, pg_temp
  AS $$
DECLARE
  org uuid := public.app_current_org();
  days int;
  cutoff timestamptz;
  ledger_cutoff timestamptz;
  rollup_cutoff timestamptz;
  n int := 0;
BEGIN
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
  ledger_cutoff := cutoff - make_interval(days => quint_retention_ledger_margin_days());
  rollup_cutoff := cutoff - interval '30 days 1 hour';
  -- Each statement: the ids (or ctids) of at most p_limit expired rows, found through the table's
  -- (org_id, time) index, computed once; then an index or TID scan deletes exactly those, the
  -- expiry re-checked in case a row changed in between. A join here would scan all of the org's
  -- rows on every batch.
  CASE p_target
    WHEN 'actions' THEN
      -- Partitioned: ctids repeat across partitions, so by (org_id, id), whose index every
      -- partition has (sql/0017_read_side.sql). The stats' hourly counts lose what is deleted in
      -- the same statement, so they always count exactly the stored actions (the band cut-offs
      -- are those of src/features/events/view.ts). Floored at 0: rows stored by a build without
      -- the counts were never counted.
      WITH gone AS (
        DELETE FROM actions a
         WHERE a.org_id = org AND a.created_at < cutoff
           AND a.id = ANY (ARRAY(SELECT x.id FROM actions x
                                  WHERE x.org_id = org AND x.created_at < cutoff LIMIT p_limit))
        RETURNING date_bin('1 hour', a.occurred_at, '2000-01-01T00:00:00Z') AS hour, a.decision, a.blocked,
                  a.risk_score, a.tool_name, a.agent_key, a.machine_id
      ), hourly AS (
        UPDATE event_hourly e SET n = greatest(e.n - g.n, 0)
          FROM (SELECT hour, coalesce(decision, '') AS decision, blocked,
                       CASE WHEN risk_score IS NULL THEN 'unscored' WHEN risk_score <= 10 THEN 'none'
                            WHEN risk_score <= 30 THEN 'low' WHEN risk_score <= 60 THEN 'medium'
                            WHEN risk_score <= 80 THEN 'high' ELSE 'critical' END AS band,
                       count(*) AS n
                  FROM gone GROUP BY 1, 2, 3, 4) g
         WHERE e.org_id = org AND e.hour = g.hour AND e.decision = g.decision AND e.blocked = g.blocked
           AND e.band = g.band
      ), tops AS (
        UPDATE event_hourly_top e SET n = greatest(e.n - g.n, 0)
          FROM (SELECT gone.hour, d.dim, d.key, count(*) AS n
                  FROM gone, LATERAL (VALUES ('tool', gone.tool_name), ('agent', gone.agent_key),
                                             ('machine', gone.machine_id::text)) AS d (dim, key)
                 WHERE d.key IS NOT NULL GROUP BY 1, 2, 3) g
         WHERE e.org_id = org AND e.hour = g.hour AND e.dim = g.dim AND e.key = g.key
      )
      SELECT count(*)::int INTO n FROM gone;
      RETURN n;
    WHEN 'alerts' THEN
      DELETE FROM alerts a
       WHERE a.ctid = ANY (ARRAY(SELECT x.ctid FROM alerts x
                                  WHERE x.org_id = org AND x.created_at < cutoff LIMIT p_limit))
         AND a.org_id = org AND a.created_at < cutoff;
    WHEN 'sessions' THEN
      DELETE FROM sessions s
       WHERE s.ctid = ANY (ARRAY(SELECT x.ctid FROM sessions x
                                  WHERE x.org_id = org AND x.started_at < cutoff
                                    AND greatest(x.started_at, x.last_event_at, x.ended_at, x.updated_at) < cutoff
                                  LIMIT p_limit))
         AND s.org_id = org AND greatest(s.started_at, s.last_event_at, s.ended_at, s.updated_at) < cutoff;
    WHEN 'webhook_deliveries' THEN
      DELETE FROM webhook_deliveries w
       WHERE w.ctid = ANY (ARRAY(SELECT x.ctid FROM webhook_deliveries x
                                  WHERE x.org_id = org AND x.status <> 'pending' AND x.created_at < cutoff
                                  LIMIT p_limit))
         AND w.org_id = org AND w.status <> 'pending' AND w.created_at < cutoff;
    WHEN 'alert_session_state' THEN
      DELETE FROM alert_session_state s
       WHERE s.ctid = ANY (ARRAY(SELECT x.ctid FROM alert_session_state x
                                  WHERE x.org_id = org AND (x.credential_read_at IS NULL OR x.credential_read_at < cutoff)
                                  LIMIT p_limit))
         AND s.org_id = org AND (s.credential_read_at IS NULL OR s.credential_read_at < cutoff);
    WHEN 'event_hourly' THEN
      -- Counts are keyed by the event's own hour, which ingest allows up to 30 days before its
      -- receipt: an hour that early before the cutoff holds no action still kept. Later hours
      -- lose their purged actions with them (above).
      DELETE FROM event_hourly h
       WHERE h.ctid = ANY (ARRAY(SELECT x.ctid FROM event_hourly x
                                  WHERE x.org_id = org AND x.hour < rollup_cutoff LIMIT p_limit))
         AND h.org_id = org AND h.hour < rollup_cutoff;
    WHEN 'event_hourly_top' THEN
      DELETE FROM event_hourly_top h
       WHERE h.ctid = ANY (ARRAY(SELECT x.ctid FROM event_hourly_top x
                                  WHERE x.org_id = org AND x.hour < rollup_cutoff LIMIT p_limit))
         AND h.org_id = org AND h.hour < rollup_cutoff;
    WHEN 'ingest_stats' THEN
      -- Days are UTC days, whatever the caller's TimeZone.
      DELETE FROM ingest_stats i
       WHERE i.ctid = ANY (ARRAY(SELECT x.ctid FROM ingest_stats x
                                  WHERE x.org_id = org AND x.day < (cutoff AT TIME ZONE 'UTC')::date LIMIT p_limit))
         AND i.org_id = org AND i.day < (cutoff AT TIME ZONE 'UTC')::date;
    WHEN 'event_keys' THEN
      DELETE FROM event_keys k
       WHERE k.ctid = ANY (ARRAY(SELECT x.ctid FROM event_keys x
                                  WHERE x.org_id = org AND x.action_created_at < ledger_cutoff LIMIT p_limit))
         AND k.org_id = org AND k.action_created_at < ledger_cutoff;
    WHEN 'session_event_keys' THEN
      DELETE FROM session_event_keys k
       WHERE k.ctid = ANY (ARRAY(SELECT x.ctid FROM session_event_keys x
                                  WHERE x.org_id = org AND x.created_at < ledger_cutoff LIMIT p_limit))
         AND k.org_id = org AND k.created_at < ledger_cutoff;
    ELSE
      RAISE EXCEPTION 'unknown purge target %', p_target USING ERRCODE = '22023';
  END CASE;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;
REVOKE ALL ON FUNCTION quint_purge_expired(text, timestamptz, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quint_purge_expired(text, timestamptz, int) TO quint_app;

-- Drops the monthly `actions` partitions that end before p_now − the LONGEST retention of any
-- org: no org can need a row in them. Returns the names dropped. Dropping a partition locks its
-- parent for a moment, so the lock is waited for at most lock_timeout; a partition whose lock was
-- not had in time is left for the next run rather than holding ingest up. The ledger keeps the
-- keys of the dropped rows for the margin, as for rows deleted one by one.
CREATE FUNCTION quint_drop_expired_actions_partitions(p_now timestamptz) RETURNS SETOF text
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, public, pg_temp
  SET lock_timeout = '1s'
  AS $$
DECLARE
  longest int;
  keep_from timestamptz;
  part record;
  ends_at timestamptz;
BEGIN
  PERFORM quint_retention_check_now(p_now);
  -- One partition DDL at a time across instances (creation takes the same lock).
  PERFORM pg_advisory_xact_lock(hashtext('quint_ensure_actions_partitions'));
  PERFORM set_config('app.retention_discovery', 'on', true);
  SELECT max(o.retention_days) INTO longest FROM organizations o;
  PERFORM set_config('app.retention_discovery', '', true);
  -- No org at all: nothing is known to be unneeded, keep everything.
  IF longest IS NULL THEN
    RETURN;
  END IF;
  keep_from := p_now - make_interval(days => longest);
  FOR part IN
    SELECT c.relname::text AS name
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'public.actions'::regclass AND c.relname ~ '^actions_[0-9]{6}$'
     ORDER BY c.relname
  LOOP
    -- Partitions are named after their UTC month (quint_ensure_actions_partitions).
    ends_at := (to_date(substr(part.name, 9), 'YYYYMM')::timestamp + interval '1 month') AT TIME ZONE 'UTC';
    CONTINUE WHEN ends_at > keep_from;
    BEGIN
      EXECUTE format('DROP TABLE public.%I', part.name);
      RETURN NEXT part.name;
    EXCEPTION WHEN lock_not_available THEN
      RAISE NOTICE 'partition % busy; left for the next purge', part.name;
    END;
  END LOOP;
END $$;
REVOKE ALL ON FUNCTION quint_drop_expired_actions_partitions(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quint_drop_expired_actions_partitions(timestamptz) TO quint_app;
