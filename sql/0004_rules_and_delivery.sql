-- Alerting, enforcement, threat signatures and outgoing webhooks.

CREATE TABLE alert_rules (
  org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description text CHECK (length(description) <= 2000),
  enabled     boolean NOT NULL DEFAULT true,
  severity    text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
  condition   jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id)
);
SELECT quint_enable_tenant_rls('alert_rules');

-- One alert per (rule, triggering event): rule_key is 'builtin:<name>' or 'rule:<uuid>'.
CREATE TABLE alerts (
  org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  rule_key    text NOT NULL CHECK (length(rule_key) BETWEEN 1 AND 128),
  rule_id     uuid,
  event_key   text NOT NULL CHECK (length(event_key) BETWEEN 1 AND 512),
  action_id   uuid,
  session_key text,
  machine_id  uuid,
  agent_key   text,
  severity    text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
  title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
  context     jsonb NOT NULL DEFAULT '{}',
  status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved', 'dismissed')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, rule_key, event_key),
  FOREIGN KEY (org_id, rule_id) REFERENCES alert_rules (org_id, id) ON DELETE SET NULL (rule_id)
);
CREATE INDEX alerts_org_created ON alerts (org_id, created_at DESC, id DESC);
SELECT quint_enable_tenant_rls('alerts');

-- Cloud-authored policies pushed to daemons (SPEC §11.1: rules [{tool, agent, action, conditions}]).
CREATE TABLE enforcement_policies (
  org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description text CHECK (length(description) <= 2000),
  enabled     boolean NOT NULL DEFAULT true,
  priority    integer NOT NULL DEFAULT 0,
  rules       jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(rules) = 'array'),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id)
);
SELECT quint_enable_tenant_rls('enforcement_policies');

CREATE TABLE threat_signatures (
  org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id            uuid NOT NULL DEFAULT gen_random_uuid(),
  signature_key text NOT NULL CHECK (length(signature_key) BETWEEN 1 AND 64),
  name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description   text CHECK (length(description) <= 2000),
  severity      text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
  agent_types   text[] NOT NULL DEFAULT '{}',
  shape         jsonb NOT NULL,
  max_jsd       real NOT NULL CHECK (max_jsd > 0 AND max_jsd <= 1),
  source        text NOT NULL DEFAULT 'custom' CHECK (source IN ('custom', 'distilled', 'imported')),
  enabled       boolean NOT NULL DEFAULT true,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, signature_key)
);
SELECT quint_enable_tenant_rls('threat_signatures');

-- The signing secret must be recoverable to sign deliveries, so it is stored encrypted
-- (AES-256-GCM under the master key, bound to org and webhook id), never in clear.
CREATE TABLE webhooks (
  org_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id                uuid NOT NULL DEFAULT gen_random_uuid(),
  url               text NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),
  description       text CHECK (length(description) <= 500),
  event_types       text[] NOT NULL DEFAULT '{}',
  secret_ciphertext bytea NOT NULL,
  enabled           boolean NOT NULL DEFAULT true,
  disabled_reason   text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id)
);
SELECT quint_enable_tenant_rls('webhooks');

CREATE TABLE webhook_deliveries (
  org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  webhook_id      uuid NOT NULL,
  message_id      text NOT NULL CHECK (length(message_id) BETWEEN 1 AND 128),
  event_type      text NOT NULL,
  payload         jsonb NOT NULL,
  status          text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'succeeded', 'failed', 'dead')),
  attempt_count   integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz,
  last_attempt_at timestamptz,
  last_status     integer,
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  delivered_at    timestamptz,
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, webhook_id, message_id),
  FOREIGN KEY (org_id, webhook_id) REFERENCES webhooks (org_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (org_id, next_attempt_at) WHERE status = 'pending';
SELECT quint_enable_tenant_rls('webhook_deliveries');

GRANT SELECT, INSERT, UPDATE, DELETE
  ON alert_rules, alerts, enforcement_policies, threat_signatures, webhooks, webhook_deliveries
  TO quint_app;
