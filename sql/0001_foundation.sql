-- Foundation: the runtime role, tenant-context functions, organizations, credentials, admin audit.
--
-- Tenancy model (see README "Tenant isolation"): every tenant table has org_id, RLS ENABLED and
-- FORCED, and one policy comparing org_id with app_current_org(). The service connects as
-- quint_app, which owns nothing and is neither superuser nor BYPASSRLS; the schema owner runs
-- migrations only. The tenant is set per transaction with set_config(..., true) by the one helper
-- in src/infra/db.ts.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'quint_app') THEN
    CREATE ROLE quint_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
  END IF;
END $$;

GRANT USAGE ON SCHEMA public TO quint_app;

-- NULLIF: a pooled connection that once set the variable reports '' afterwards, not NULL; both
-- must mean "no tenant", which matches no row (fail closed, no error).
CREATE FUNCTION app_current_org() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT NULLIF(current_setting('app.current_org_id', true), '')::uuid $$;

-- Applies the standard tenant policy to a table; every tenant table goes through it so none can
-- be left half-protected. Not executable by quint_app.
CREATE FUNCTION quint_enable_tenant_rls(t regclass) RETURNS void
  LANGUAGE plpgsql
  SET search_path = pg_catalog, public
  AS $$
BEGIN
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
  EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
  EXECUTE format(
    'CREATE POLICY tenant_isolation ON %s USING (org_id = public.app_current_org()) WITH CHECK (org_id = public.app_current_org())',
    t);
END $$;
REVOKE ALL ON FUNCTION quint_enable_tenant_rls(regclass) FROM PUBLIC;

-- Process-wide facts that belong to no tenant (for example: has the first org been created).
CREATE TABLE quint_system (
  key        text PRIMARY KEY CHECK (key ~ '^[a-z_]{1,64}$'),
  value      jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON quint_system TO quint_app;

CREATE TABLE organizations (
  id         uuid PRIMARY KEY,
  name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  settings   jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations
  USING (id = app_current_org()) WITH CHECK (id = app_current_org());
GRANT SELECT, INSERT, UPDATE (name, settings, updated_at) ON organizations TO quint_app;

-- Opaque credentials (admin API keys qk_, deploy tokens qt_deploy_, service/personal tokens).
-- Only the SHA-256 of the raw value is stored. token_hash is unique across orgs on purpose: it is
-- computed from server-generated 128/256-bit secrets (no client value feeds it), and a credential
-- is resolved by hash before its org is known.
CREATE TABLE api_tokens (
  org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id           uuid NOT NULL DEFAULT gen_random_uuid(),
  kind         text NOT NULL CHECK (kind IN ('install', 'enrollment', 'service', 'personal', 'api_key')),
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  token_prefix text NOT NULL CHECK (length(token_prefix) <= 32),
  token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
  scopes       text[] NOT NULL DEFAULT '{}',
  machine_id   uuid,
  created_by   uuid,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  revoked_at   timestamptz,
  last_used_at timestamptz,
  PRIMARY KEY (org_id, id)
);
CREATE INDEX api_tokens_org_kind ON api_tokens (org_id, kind, created_at DESC, id DESC);
SELECT quint_enable_tenant_rls('api_tokens');
-- Resolving a presented credential: the caller sets app.lookup_token_hash to the hex SHA-256 of
-- the token it holds, and sees that one row and nothing else. Knowing the hash requires the token.
CREATE FUNCTION app_lookup_token_hash() RETURNS bytea
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT decode(NULLIF(current_setting('app.lookup_token_hash', true), ''), 'hex') $$;
CREATE POLICY token_lookup ON api_tokens FOR SELECT USING (token_hash = app_lookup_token_hash());
GRANT SELECT, INSERT, UPDATE (revoked_at, last_used_at, name, machine_id) ON api_tokens TO quint_app;

-- Append-only record of administrative actions: quint_app may add and read, never change.
CREATE TABLE audit_log (
  org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id          bigint GENERATED ALWAYS AS IDENTITY,
  occurred_at timestamptz NOT NULL DEFAULT now(),
  actor_type  text NOT NULL,
  actor_id    text,
  action      text NOT NULL,
  target_type text,
  target_id   text,
  request_id  text,
  details     jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (org_id, id)
);
CREATE INDEX audit_log_org_time ON audit_log (org_id, occurred_at DESC);
SELECT quint_enable_tenant_rls('audit_log');
GRANT SELECT, INSERT ON audit_log TO quint_app;
