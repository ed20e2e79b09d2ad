-- The auth schema: per-org ES256 signing keys (private key encrypted at rest), every issued JWT
-- (parent_jti links the derivation tree for cascade revocation) and the append-only revocation log.

CREATE SCHEMA auth;
GRANT USAGE ON SCHEMA auth TO quint_app;

CREATE TABLE auth.signing_keys (
  org_id                 uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
  kid                    text NOT NULL CHECK (kid ~ '^[A-Za-z0-9_-]{8,64}$'),
  algorithm              text NOT NULL DEFAULT 'ES256' CHECK (algorithm = 'ES256'),
  public_jwk             jsonb NOT NULL,
  public_pem             text NOT NULL,
  -- AES-256-GCM: nonce || ciphertext || tag, with (org_id, kid) as associated data.
  private_key_ciphertext bytea NOT NULL,
  status                 text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
  created_at             timestamptz NOT NULL DEFAULT now(),
  retired_at             timestamptz,
  -- A retired key keeps verifying until the last token it signed has expired.
  verify_until           timestamptz,
  PRIMARY KEY (org_id, kid)
);
-- At most one active key per org.
CREATE UNIQUE INDEX signing_keys_one_active ON auth.signing_keys (org_id) WHERE status = 'active';
SELECT public.quint_enable_tenant_rls('auth.signing_keys');

CREATE TABLE auth.issued_tokens (
  org_id            uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
  jti               uuid NOT NULL,
  token_type        text NOT NULL CHECK (token_type IN ('app', 'bearer', 'agent', 'subagent', 'session', 'override')),
  parent_jti        uuid,
  depth             smallint NOT NULL DEFAULT 0,
  kid               text NOT NULL,
  name              text,
  agent_id          text,
  session_id        text,
  event_id          text,
  claims            jsonb NOT NULL,
  issued_at         timestamptz NOT NULL DEFAULT now(),
  expires_at        timestamptz NOT NULL,
  revoked_at        timestamptz,
  -- Overrides are single use: set once, atomically, when the decision is recorded.
  used_at           timestamptz,
  PRIMARY KEY (org_id, jti),
  FOREIGN KEY (org_id, parent_jti) REFERENCES auth.issued_tokens (org_id, jti)
);
CREATE INDEX issued_tokens_parent ON auth.issued_tokens (org_id, parent_jti);
SELECT public.quint_enable_tenant_rls('auth.issued_tokens');

CREATE TABLE auth.revocation_log (
  org_id       uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
  id           bigint GENERATED ALWAYS AS IDENTITY,
  jti          uuid NOT NULL,
  token_type   text NOT NULL,
  reason       text CHECK (length(reason) <= 500),
  revoked_by   text,
  cascade_root uuid,
  revoked_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id)
);
CREATE INDEX revocation_log_jti ON auth.revocation_log (org_id, jti);
SELECT public.quint_enable_tenant_rls('auth.revocation_log');

GRANT SELECT, INSERT, UPDATE (status, retired_at, verify_until) ON auth.signing_keys TO quint_app;
GRANT SELECT, INSERT, UPDATE (revoked_at, used_at) ON auth.issued_tokens TO quint_app;
GRANT SELECT, INSERT ON auth.revocation_log TO quint_app;
