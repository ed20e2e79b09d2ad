-- Fleet: machines (registered daemons), agents (persistent identities), sessions (hierarchy).
-- Composite (org_id, id) keys let every foreign key carry org_id, so no row can point at another
-- tenant's row even through a bug that bypasses RLS.

CREATE TABLE machines (
  org_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id                uuid NOT NULL DEFAULT gen_random_uuid(),
  client_machine_id text NOT NULL CHECK (length(client_machine_id) BETWEEN 1 AND 128),
  hostname          text CHECK (length(hostname) <= 255),
  os                text CHECK (length(os) <= 64),
  arch              text CHECK (length(arch) <= 64),
  agent_version     text CHECK (length(agent_version) <= 64),
  token_id          uuid,
  status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  uptime_seconds    bigint,
  metadata          jsonb NOT NULL DEFAULT '{}',
  registered_at     timestamptz NOT NULL DEFAULT now(),
  last_seen_at      timestamptz,
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, client_machine_id),
  FOREIGN KEY (org_id, token_id) REFERENCES api_tokens (org_id, id) ON DELETE SET NULL (token_id)
);
SELECT quint_enable_tenant_rls('machines');

CREATE TABLE agents (
  org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id            uuid NOT NULL DEFAULT gen_random_uuid(),
  machine_id    uuid,
  agent_key     text NOT NULL CHECK (length(agent_key) BETWEEN 1 AND 256),
  name          text CHECK (length(name) <= 256),
  platform      text CHECK (length(platform) <= 64),
  metadata      jsonb NOT NULL DEFAULT '{}',
  event_count   bigint NOT NULL DEFAULT 0,
  session_count bigint NOT NULL DEFAULT 0,
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id),
  -- Agent ids like "ne-pid-59247" repeat across machines; NULLS NOT DISTINCT keeps one row for
  -- an agent seen without a machine.
  UNIQUE NULLS NOT DISTINCT (org_id, machine_id, agent_key),
  FOREIGN KEY (org_id, machine_id) REFERENCES machines (org_id, id) ON DELETE SET NULL (machine_id)
);
SELECT quint_enable_tenant_rls('agents');

CREATE TABLE sessions (
  org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id            uuid NOT NULL DEFAULT gen_random_uuid(),
  session_key   text NOT NULL CHECK (length(session_key) BETWEEN 1 AND 256),
  parent_key    text CHECK (length(parent_key) <= 256),
  parent_id     uuid,
  machine_id    uuid,
  agent_id      uuid,
  session_name  text CHECK (length(session_name) <= 512),
  model         text CHECK (length(model) <= 256),
  signing_id    text CHECK (length(signing_id) <= 256),
  platform      text CHECK (length(platform) <= 64),
  state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'idle', 'ended')),
  started_at    timestamptz NOT NULL DEFAULT now(),
  ended_at      timestamptz,
  last_event_at timestamptz,
  event_count   bigint NOT NULL DEFAULT 0,
  blocked_count bigint NOT NULL DEFAULT 0,
  risk_max      smallint,
  risk_sum      bigint NOT NULL DEFAULT 0,
  risk_count    bigint NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, session_key),
  FOREIGN KEY (org_id, parent_id) REFERENCES sessions (org_id, id) ON DELETE SET NULL (parent_id),
  FOREIGN KEY (org_id, machine_id) REFERENCES machines (org_id, id) ON DELETE SET NULL (machine_id),
  FOREIGN KEY (org_id, agent_id) REFERENCES agents (org_id, id) ON DELETE SET NULL (agent_id)
);
CREATE INDEX sessions_org_parent ON sessions (org_id, parent_id);
CREATE INDEX sessions_org_started ON sessions (org_id, started_at DESC);
SELECT quint_enable_tenant_rls('sessions');

GRANT SELECT, INSERT, UPDATE, DELETE ON machines, agents, sessions TO quint_app;
