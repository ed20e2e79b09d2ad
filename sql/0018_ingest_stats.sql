-- Ingest completeness per UTC day and machine (issue 9; docs/ingest-stats.md): what arrived,
-- what was acknowledged as new, duplicates, rejections by reason, redactions, what the edge says
-- it dropped before sending, what the pipeline stored and how long that took.
--
-- One (org, day, machine) row would be updated by every ingest request of that machine's org
-- and serialise them on its row lock, so each logical row is split into SHARDS rows: a writer
-- picks a shard at random and reads sum over them. `machine_id` is null for events sent without
-- a machine-bound credential; NULLS NOT DISTINCT makes that a key value like any other.
CREATE TABLE ingest_stats (
  org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  day          date NOT NULL,
  machine_id   uuid,
  shard        smallint NOT NULL CHECK (shard BETWEEN 0 AND 7),
  received     bigint NOT NULL DEFAULT 0 CHECK (received >= 0),
  accepted     bigint NOT NULL DEFAULT 0 CHECK (accepted >= 0),
  duplicates   bigint NOT NULL DEFAULT 0 CHECK (duplicates >= 0),
  -- {"<RejectCode>": n}: a fixed set of reasons (src/features/ingest/events.ts), summed per key.
  rejected     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(rejected) = 'object'),
  redactions   bigint NOT NULL DEFAULT 0 CHECK (redactions >= 0),
  edge_dropped bigint NOT NULL DEFAULT 0 CHECK (edge_dropped >= 0),
  stored       bigint NOT NULL DEFAULT 0 CHECK (stored >= 0),
  -- Receive → queryable lag: counts per fixed bucket (LAG_BUCKETS_MS in src/features/ingest/stats.ts).
  lag_buckets  bigint[] NOT NULL DEFAULT '{}',
  lag_max_ms   bigint,
  UNIQUE NULLS NOT DISTINCT (org_id, day, machine_id, shard)
);
SELECT quint_enable_tenant_rls('ingest_stats');
GRANT SELECT, INSERT, UPDATE ON ingest_stats TO quint_app;

-- Element-wise sum of two histograms (the shorter one padded with zeros).
CREATE FUNCTION quint_add_buckets(a bigint[], b bigint[]) RETURNS bigint[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  SET search_path = pg_catalog
  AS $$
    SELECT coalesce(array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i), '{}')
      FROM unnest(coalesce(a, '{}'), coalesce(b, '{}')) WITH ORDINALITY AS u(x, y, i)
  $$;

-- Key-wise sum of two {"key": n} objects.
CREATE FUNCTION quint_add_counts(a jsonb, b jsonb) RETURNS jsonb
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  SET search_path = pg_catalog
  AS $$
    SELECT coalesce(jsonb_object_agg(k, n), '{}')
      FROM (SELECT k, sum(v::bigint) AS n
              FROM (SELECT * FROM jsonb_each_text(coalesce(a, '{}'))
                    UNION ALL
                    SELECT * FROM jsonb_each_text(coalesce(b, '{}'))) e(k, v)
             GROUP BY k) s
  $$;

-- The same sums as aggregates, for the read side (shards, days, machines).
CREATE AGGREGATE quint_sum_buckets(bigint[]) (SFUNC = quint_add_buckets, STYPE = bigint[], INITCOND = '{}');
CREATE AGGREGATE quint_sum_counts(jsonb) (SFUNC = quint_add_counts, STYPE = jsonb, INITCOND = '{}');
