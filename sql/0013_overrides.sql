-- Human override decisions (SPEC §16.7; docs/auth.md "Overrides"): one row per used qt_override_
-- token. `auth.issued_tokens.used_at` is the single-use switch (set atomically when the decision is
-- taken); this table is the durable record of what was decided, by whom, with the cosignature
-- returned to the caller. The unique key on (org_id, override_jti) makes a second decision under
-- one token impossible even if the used_at check were bypassed.
CREATE TABLE auth.override_decisions (
  org_id       uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
  id           bigint GENERATED ALWAYS AS IDENTITY,
  event_id     text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 256),
  override_jti uuid NOT NULL,
  decision     text NOT NULL CHECK (length(decision) BETWEEN 1 AND 64),
  reason       text CHECK (length(reason) <= 500),
  -- HMAC-SHA256 hex (src/auth/override-cosign.ts): proof, not a secret.
  cosignature  text NOT NULL CHECK (cosignature ~ '^[0-9a-f]{64}$'),
  -- Who presented the decision: `jwt:override:<jti>` (the token itself) or the management credential.
  decided_by   text NOT NULL,
  decided_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, override_jti),
  FOREIGN KEY (org_id, override_jti) REFERENCES auth.issued_tokens (org_id, jti)
);
CREATE INDEX override_decisions_event ON auth.override_decisions (org_id, event_id, decided_at);
SELECT public.quint_enable_tenant_rls('auth.override_decisions');
GRANT SELECT, INSERT ON auth.override_decisions TO quint_app;
