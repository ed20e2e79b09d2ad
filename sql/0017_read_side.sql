-- The read side (issue 9): indexes for the investigation API and the stored causal link.
--
-- Every list is keyset-paginated newest first on (occurred_at, id) or (started_at, id), so each
-- index ends with both, and the filters an analyst uses most lead it. Indexes on the partitioned
-- parent cascade to every monthly partition, present and future.

DROP INDEX actions_org_occurred;
CREATE INDEX actions_org_occurred ON actions (org_id, occurred_at DESC, id DESC);
DROP INDEX actions_org_session;
CREATE INDEX actions_org_session ON actions (org_id, session_key, occurred_at, id);
-- GET /v1/events/{id}: the primary key leads with created_at, which a caller does not know.
CREATE INDEX actions_org_id ON actions (org_id, id);
CREATE INDEX actions_org_agent ON actions (org_id, agent_key, occurred_at DESC, id DESC);
CREATE INDEX actions_org_machine ON actions (org_id, machine_id, occurred_at DESC, id DESC);
CREATE INDEX actions_org_tool ON actions (org_id, tool_name, occurred_at DESC, id DESC);

-- The causal chain (docs/causal-chain.md): the action this one was caused by, and which rule
-- linked it. Written by the pipeline at store time, never by a client.
ALTER TABLE actions ADD COLUMN parent_action_id uuid, ADD COLUMN parent_link text
  CHECK (parent_link IN ('tool_use_id', 'process', 'process_tree', 'time_window'));
CREATE INDEX actions_org_parent ON actions (org_id, parent_action_id) WHERE parent_action_id IS NOT NULL;

DROP INDEX sessions_org_started;
CREATE INDEX sessions_org_started ON sessions (org_id, started_at DESC, id DESC);
CREATE INDEX sessions_org_agent ON sessions (org_id, agent_id);
CREATE INDEX sessions_org_machine ON sessions (org_id, machine_id, started_at DESC, id DESC);
CREATE INDEX agents_org_key ON agents (org_id, agent_key);
CREATE INDEX alerts_org_machine ON alerts (org_id, machine_id, created_at DESC, id DESC);
CREATE INDEX alerts_org_agent ON alerts (org_id, agent_key, created_at DESC, id DESC);
-- A session's children oldest first, keyset on (started_at, id) (GET /v1/sessions/{id}/children,
-- the detail's first 200, the tree walk); it also serves the parent foreign key's lookups.
DROP INDEX sessions_org_parent;
CREATE INDEX sessions_org_parent ON sessions (org_id, parent_id, started_at, id);
-- GET /v1/machines: newest registered first (issue 9).
CREATE INDEX machines_org_registered ON machines (org_id, registered_at DESC, id DESC);

-- GET /v1/events/stats over an org's whole traffic (issue 9: ≤ 100 ms p99 for the last 24 h of
-- an org holding 200k events): hourly counts the pipeline keeps in the transaction that stores
-- the actions, so they never disagree with them. Keyed by the UTC hour of occurred_at, like the
-- stats; a late event updates its own hour. `decision` is '' for an event without one. A stats
-- request with a machine or agent filter reads the actions themselves (their indexes are narrow).
-- No foreign keys: ingest hot path, org_id stamped from a verified credential (as on actions).
CREATE TABLE event_hourly (
  org_id   uuid NOT NULL,
  hour     timestamptz NOT NULL,
  decision text NOT NULL,
  blocked  boolean NOT NULL,
  band     text NOT NULL CHECK (band IN ('none', 'low', 'medium', 'high', 'critical', 'unscored')),
  n        bigint NOT NULL CHECK (n >= 0),
  PRIMARY KEY (org_id, hour, decision, blocked, band)
);
-- Per hour, the events of each tool, agent and machine (the stats' top-10 rankings).
CREATE TABLE event_hourly_top (
  org_id uuid NOT NULL,
  hour   timestamptz NOT NULL,
  dim    text NOT NULL CHECK (dim IN ('tool', 'agent', 'machine')),
  key    text NOT NULL,
  n      bigint NOT NULL CHECK (n >= 0),
  PRIMARY KEY (org_id, hour, dim, key)
);

-- What is already stored, counted once. actions forces RLS even on its owner: lifted for these
-- statements, inside the migration's transaction, so no other session ever sees it lifted. The
-- band cut-offs are those of src/features/events/view.ts (SPEC §16.1).
ALTER TABLE actions NO FORCE ROW LEVEL SECURITY;
INSERT INTO event_hourly (org_id, hour, decision, blocked, band, n)
SELECT org_id, date_bin('1 hour', occurred_at, '2000-01-01T00:00:00Z'), coalesce(decision, ''), blocked,
       CASE WHEN risk_score IS NULL THEN 'unscored' WHEN risk_score <= 10 THEN 'none' WHEN risk_score <= 30 THEN 'low'
            WHEN risk_score <= 60 THEN 'medium' WHEN risk_score <= 80 THEN 'high' ELSE 'critical' END,
       count(*)
  FROM actions GROUP BY 1, 2, 3, 4, 5;
INSERT INTO event_hourly_top (org_id, hour, dim, key, n)
SELECT org_id, hour, dim, key, count(*)
  FROM (SELECT org_id, date_bin('1 hour', occurred_at, '2000-01-01T00:00:00Z') AS hour, d.dim, d.key
          FROM actions,
               LATERAL (VALUES ('tool', tool_name), ('agent', agent_key), ('machine', machine_id::text)) AS d (dim, key)
         WHERE d.key IS NOT NULL) x
 GROUP BY 1, 2, 3, 4;
ALTER TABLE actions FORCE ROW LEVEL SECURITY;

SELECT quint_enable_tenant_rls('event_hourly');
SELECT quint_enable_tenant_rls('event_hourly_top');
GRANT SELECT, INSERT, UPDATE ON event_hourly, event_hourly_top TO quint_app;
