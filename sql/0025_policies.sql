-- Policies written through the API (issue 11): a scope (every machine, some machines, or machines
-- with a tag), a version bumped by every change, and every version kept, deletions included, so
-- that "what did the fleet enforce on Tuesday" has an answer.
ALTER TABLE enforcement_policies
  ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
  -- Empty both: every machine of the org. Otherwise the machines listed and those with a tag listed.
  ADD COLUMN scope_machine_ids uuid[] NOT NULL DEFAULT '{}' CHECK (cardinality(scope_machine_ids) <= 1000),
  ADD COLUMN scope_tags text[] NOT NULL DEFAULT '{}' CHECK (cardinality(scope_tags) <= 50);

CREATE TABLE policy_versions (
  org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  policy_id  uuid NOT NULL,
  version    integer NOT NULL CHECK (version >= 1),
  -- The policy as GET /v1/policies/{id} showed it after this change; null: this version deleted it.
  snapshot   jsonb,
  changed_by text CHECK (length(changed_by) <= 200),
  changed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, policy_id, version)
);
SELECT quint_enable_tenant_rls('policy_versions');
GRANT SELECT, INSERT ON policy_versions TO quint_app;
-- Policies that exist already start their history here, as version 1 (the migration runs as the
-- owner, whom the tables' forced RLS does not exempt: lifted for this one statement).
ALTER TABLE enforcement_policies NO FORCE ROW LEVEL SECURITY;
ALTER TABLE policy_versions NO FORCE ROW LEVEL SECURITY;
INSERT INTO policy_versions (org_id, policy_id, version, snapshot, changed_by, changed_at)
SELECT org_id, id, 1,
       jsonb_build_object('id', id, 'name', name, 'description', description, 'enabled', enabled, 'priority', priority,
                          'rules', rules, 'scope', jsonb_build_object('all', true, 'machine_ids', '[]'::jsonb, 'tags', '[]'::jsonb),
                          'version', 1, 'created_at', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                          'updated_at', to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
       NULL, updated_at
  FROM enforcement_policies;
ALTER TABLE enforcement_policies FORCE ROW LEVEL SECURITY;
ALTER TABLE policy_versions FORCE ROW LEVEL SECURITY;

-- Machine tags, for policy scopes (`PATCH /v1/machines/{id}`).
ALTER TABLE machines ADD COLUMN tags text[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 50);

-- Hosts the daemon routes through its proxy (the heartbeat's `domains`, SPEC §7.1), per org.
ALTER TABLE organizations ADD COLUMN proxy_domains text[] NOT NULL DEFAULT '{}' CHECK (cardinality(proxy_domains) <= 500);
GRANT UPDATE (proxy_domains) ON organizations TO quint_app;
