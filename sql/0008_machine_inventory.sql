-- Machine inventory pushed by daemons (SPEC §7.1): the agent process snapshot
-- (`POST /v1/machines/{id}/agents`) and agent graphs (`POST /v1/machines/{id}/graphs`).
-- Both hang off machines through (org_id, machine_id), so no row can point at another tenant's
-- machine, and disappear with the machine.

-- The latest process snapshot of a machine: each push replaces all of that machine's rows.
-- One row per (platform, pid): the daemon detects changes on that pair.
CREATE TABLE machine_processes (
  org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  machine_id  uuid NOT NULL,
  platform    text NOT NULL CHECK (length(platform) BETWEEN 1 AND 64),
  pid         bigint NOT NULL CHECK (pid BETWEEN 0 AND 4294967295),
  binary_path text CHECK (length(binary_path) <= 4096),
  state       text NOT NULL CHECK (length(state) BETWEEN 1 AND 32),
  cpu_percent double precision CHECK (cpu_percent >= 0),
  memory_mb   double precision CHECK (memory_mb >= 0),
  started_at  timestamptz,
  reported_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, machine_id, platform, pid),
  FOREIGN KEY (org_id, machine_id) REFERENCES machines (org_id, id) ON DELETE CASCADE
);
SELECT quint_enable_tenant_rls('machine_processes');

-- Agent graphs, upserted per (machine, daemon graph id). `graph` is the daemon's whole raw graph
-- object (its `nodes` field), kept as sent after NUL/lone-surrogate cleaning and redaction.
CREATE TABLE machine_graphs (
  org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  machine_id      uuid NOT NULL,
  graph_id        text NOT NULL CHECK (length(graph_id) BETWEEN 1 AND 256),
  root_agent_id   text CHECK (length(root_agent_id) <= 256),
  root_agent_name text CHECK (length(root_agent_name) <= 512),
  status          text CHECK (length(status) <= 64),
  total_nodes     integer CHECK (total_nodes >= 0),
  graph           jsonb NOT NULL DEFAULT '{}',
  started_at      timestamptz,
  completed_at    timestamptz,
  first_seen_at   timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, machine_id, graph_id),
  FOREIGN KEY (org_id, machine_id) REFERENCES machines (org_id, id) ON DELETE CASCADE
);
CREATE INDEX machine_graphs_org_updated ON machine_graphs (org_id, updated_at DESC);
SELECT quint_enable_tenant_rls('machine_graphs');

-- Snapshot replace is delete + insert; graphs are upserted and never deleted by the service.
GRANT SELECT, INSERT, DELETE ON machine_processes TO quint_app;
GRANT SELECT, INSERT ON machine_graphs TO quint_app;
GRANT UPDATE (root_agent_id, root_agent_name, status, total_nodes, graph, started_at, completed_at, updated_at)
  ON machine_graphs TO quint_app;
