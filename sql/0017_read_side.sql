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
