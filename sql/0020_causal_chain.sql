-- The causal chain (issue 9, docs/causal-chain.md): the pipeline links every OS-level event to
-- the tool call (or process) that caused it, at store time, in actions.parent_action_id /
-- parent_link (added by 0017).
--
-- The linking keys live in `labels` (the contract clients follow, documented in the doc). They
-- are copied into stored generated columns because under forced RLS an index can only serve a
-- comparison that is LEAKPROOF: `labels->>'pid' = $1` or `split_part(session_key, …) = $1`
-- would be filtered row by row after the tenant qual (checked with EXPLAIN as quint_app), while
-- `chain_pid = $1` is a plain text equality the index answers.
--
-- chain_root is the session family: a session and its sub-agents (`{root}:sub:{N}`, SPEC §10)
-- share the root's process tree, so their events may link to each other; distinct roots never do.
ALTER TABLE actions
  ADD COLUMN chain_root text GENERATED ALWAYS AS (split_part(session_key, ':sub:', 1)) STORED,
  -- The process of the event: the exec'd one of a PROCESS_EXEC, the acting one of a file or
  -- network event, the agent's own on a tool call.
  ADD COLUMN chain_pid text GENERATED ALWAYS AS (coalesce(labels->>'pid', labels->>'process_pid')) STORED,
  -- The parent of an exec'd process.
  ADD COLUMN chain_ppid text GENERATED ALWAYS AS (coalesce(labels->>'ppid', labels->>'parent_pid')) STORED,
  ADD COLUMN chain_tool_use_id text GENERATED ALWAYS AS (labels->>'tool_use_id') STORED;

-- Candidate parents and orphans are found by index probes, one per stored event and rule:
-- execs, tool calls and effects by process (rules `process`, `time_window`, adoption),
CREATE INDEX actions_chain_pid ON actions (org_id, chain_root, chain_pid, action_type, occurred_at)
  WHERE chain_pid IS NOT NULL;
-- execs by parent process (rule `process_tree`, adoption),
CREATE INDEX actions_chain_ppid ON actions (org_id, chain_root, chain_ppid, occurred_at)
  WHERE chain_ppid IS NOT NULL;
-- tool calls and the events naming them by tool_use_id (rule `tool_use_id`, adoption).
CREATE INDEX actions_chain_tool_use ON actions (org_id, chain_root, chain_tool_use_id)
  WHERE chain_tool_use_id IS NOT NULL;

-- Most links are written with the row (computed before the insert); only a late parent adopting
-- its already-stored children updates them, and only these two columns.
GRANT UPDATE (parent_action_id, parent_link) ON actions TO quint_app;
-- GET /v1/sessions/{id}/timeline: a session family's linked events in time order, read in one
-- range scan to nest a page's events (src/features/chain/repo.ts, timelineDescendants).
CREATE INDEX actions_chain_family ON actions (org_id, chain_root, occurred_at) WHERE parent_action_id IS NOT NULL;
