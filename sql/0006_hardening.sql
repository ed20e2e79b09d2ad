-- Hardening after review (forward-only: 0001 and 0003 are not edited).
--
-- Databases created before Postgres 15 still let PUBLIC create objects in schema public; the
-- runtime role could then pre-create a table named like next month's partition. Nobody but the
-- owner creates objects here.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- pg_temp last in every function's search_path, so a temporary object can never shadow ours.
ALTER FUNCTION quint_enable_tenant_rls(regclass) SET search_path = pg_catalog, public, pg_temp;

-- As 0003, and an existing relation with a partition's name must really be a partition of
-- actions (owned by the owner), not something else that happens to carry the name.
CREATE OR REPLACE FUNCTION quint_ensure_actions_partitions(months_ahead int) RETURNS SETOF text
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, public, pg_temp
  AS $$
DECLARE
  first_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
  m timestamp;
  part text;
  existing regclass;
BEGIN
  IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 36 THEN
    RAISE EXCEPTION 'months_ahead must be between 0 and 36';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('quint_ensure_actions_partitions'));
  FOR i IN 0..months_ahead LOOP
    m := first_month + make_interval(months => i);
    part := 'actions_' || to_char(m, 'YYYYMM');
    existing := to_regclass('public.' || part);
    IF existing IS NOT NULL THEN
      IF NOT EXISTS (SELECT 1 FROM pg_inherits
                      WHERE inhrelid = existing AND inhparent = 'public.actions'::regclass) THEN
        RAISE EXCEPTION '% exists but is not a partition of actions', part;
      END IF;
      CONTINUE;
    END IF;
    EXECUTE format(
      'CREATE TABLE public.%I PARTITION OF public.actions FOR VALUES FROM (%L) TO (%L)',
      part, (m AT TIME ZONE 'UTC'), ((m + interval '1 month') AT TIME ZONE 'UTC'));
    EXECUTE format('REVOKE ALL ON public.%I FROM PUBLIC, quint_app', part);
    PERFORM quint_enable_tenant_rls(format('public.%I', part)::regclass);
    RETURN NEXT part;
  END LOOP;
END $$;
