-- Idempotency-Key on management POSTs (issue 14; src/http/idempotency.ts). One row per key, per
-- credential, per org: the key is claimed (state 'in_flight') before the work runs, and the 2xx
-- answer is kept sealed under the master key (it may carry a secret shown once) so that a retry
-- gets it back instead of creating a duplicate. `claim` identifies the request holding the key, so
-- a request taken over after going stale cannot complete or release its successor's claim.
-- Rows live 24 hours; claims of the same org prune expired ones.
CREATE TABLE idempotency_keys (
  org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  -- The credential's id (api_tokens.id or the JWT's jti): keys of one credential are invisible to another.
  credential  text NOT NULL CHECK (length(credential) BETWEEN 1 AND 128),
  key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  method      text NOT NULL CHECK (length(method) BETWEEN 1 AND 16),
  path        text NOT NULL CHECK (length(path) BETWEEN 1 AND 4096),
  -- SHA-256 of method, path, query and body: the same key for another request is a 422.
  fingerprint bytea NOT NULL CHECK (length(fingerprint) = 32),
  claim       uuid NOT NULL,
  state       text NOT NULL DEFAULT 'in_flight' CHECK (state IN ('in_flight', 'done')),
  status      smallint CHECK (status BETWEEN 200 AND 299),
  response    bytea,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  PRIMARY KEY (org_id, credential, key),
  CHECK (state = 'in_flight' OR (status IS NOT NULL AND response IS NOT NULL))
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (org_id, expires_at);
SELECT quint_enable_tenant_rls('idempotency_keys');
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO quint_app;
