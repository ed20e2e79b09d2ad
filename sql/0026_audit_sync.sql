-- The public CLI's audit sync (issue 11, SPEC §7.2, §8.5): entries its local proxy signed with an
-- Ed25519 key, kept per org exactly as sent, with what the server verified of them.
CREATE TABLE signed_audit_entries (
  org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id              bigint GENERATED ALWAYS AS IDENTITY,
  -- SHA-256 of the signing key (SPKI DER): the hash chain runs per key.
  key_fingerprint text NOT NULL CHECK (length(key_fingerprint) = 64),
  nonce           text NOT NULL CHECK (length(nonce) BETWEEN 1 AND 128),
  signature       text NOT NULL CHECK (length(signature) = 128),
  -- prev_hash is the SHA-256 of the previous entry's signature, and that entry is stored here
  -- (or it is the key's first entry, with prev_hash empty). False: a gap or a fork in the chain.
  chain_verified  boolean NOT NULL,
  -- The entry as the client sent it, as JSON text: jsonb cannot hold \u0000, which a signed
  -- arguments string may contain, and nothing of a signed entry may be altered.
  entry           text NOT NULL,
  received_at     timestamptz NOT NULL DEFAULT now(),
  received_by     uuid,
  PRIMARY KEY (org_id, id),
  -- Replay protection: a nonce is accepted once per org.
  UNIQUE (org_id, nonce)
);
CREATE INDEX signed_audit_entries_org_key ON signed_audit_entries (org_id, key_fingerprint, id DESC);
CREATE INDEX signed_audit_entries_org_received ON signed_audit_entries (org_id, received_at DESC, id DESC);
SELECT quint_enable_tenant_rls('signed_audit_entries');
GRANT SELECT, INSERT ON signed_audit_entries TO quint_app;

-- The local proxy's PolicyConfig the CLI pulls (`GET /v1/policies/active`, SPEC §7.2, §11.3).
CREATE TABLE active_policy_config (
  org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  version     integer NOT NULL CHECK (version >= 1),
  config_json jsonb NOT NULL CHECK (jsonb_typeof(config_json) = 'object'),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  updated_by  text CHECK (length(updated_by) <= 200),
  PRIMARY KEY (org_id)
);
SELECT quint_enable_tenant_rls('active_policy_config');
GRANT SELECT, INSERT, UPDATE ON active_policy_config TO quint_app;
