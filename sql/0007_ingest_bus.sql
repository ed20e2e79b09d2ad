-- Ingest: the local bus (embedded mode), the sessions consumer's ledger, alert session state and
-- per-org ingest counters.
--
-- The local bus is durable because it is Postgres: an ingest request commits its batch here
-- before answering 2xx. Each consumer (pipeline, sessions, alerts) has one pending row per batch
-- and deletes it in the same transaction as its effects, so a message is applied exactly once
-- and a consumer that crashes resumes where it stopped. In cluster mode SNS/SQS replaces these
-- tables; the consumers are the same code.

CREATE TABLE bus_batches (
  org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id         bigint GENERATED ALWAYS AS IDENTITY,
  kind       text NOT NULL CHECK (kind IN ('events', 'lifecycle')),
  payload    jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id)
);
SELECT quint_enable_tenant_rls('bus_batches');

CREATE TABLE bus_pending (
  org_id   uuid NOT NULL,
  consumer text NOT NULL CHECK (consumer IN ('pipeline', 'sessions', 'alerts')),
  batch_id bigint NOT NULL,
  PRIMARY KEY (org_id, consumer, batch_id),
  FOREIGN KEY (org_id, batch_id) REFERENCES bus_batches (org_id, id) ON DELETE CASCADE
);
CREATE INDEX bus_pending_consumer ON bus_pending (consumer, batch_id);
SELECT quint_enable_tenant_rls('bus_pending');
-- A consumer finds which orgs have work without any tenant context: a transaction that names
-- itself that consumer sees that consumer's pending rows (ids only; payloads are read per org
-- under tenant_isolation).
CREATE POLICY bus_discovery ON bus_pending FOR SELECT
  USING (consumer = NULLIF(current_setting('app.bus_consumer', true), ''));

GRANT SELECT, INSERT, DELETE ON bus_batches, bus_pending TO quint_app;

-- Events the sessions consumer has counted: with fan-out each consumer sees every message, and
-- a retried event in a later batch must not be counted twice.
CREATE TABLE session_event_keys (
  org_id    uuid NOT NULL,
  event_key text NOT NULL CHECK (length(event_key) BETWEEN 1 AND 512),
  PRIMARY KEY (org_id, event_key)
);
SELECT quint_enable_tenant_rls('session_event_keys');
GRANT SELECT, INSERT ON session_event_keys TO quint_app;

-- State the alerts consumer keeps per session (a credential read, for the read-then-connect rule).
CREATE TABLE alert_session_state (
  org_id               uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  session_key          text NOT NULL CHECK (length(session_key) BETWEEN 1 AND 256),
  credential_read_at   timestamptz,
  credential_event_key text,
  PRIMARY KEY (org_id, session_key)
);
SELECT quint_enable_tenant_rls('alert_session_state');
GRANT SELECT, INSERT, UPDATE ON alert_session_state TO quint_app;

-- Per org and UTC day: events stored and secrets redacted (written by the pipeline consumer).
CREATE TABLE org_ingest_stats (
  org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  day        date NOT NULL,
  stored     bigint NOT NULL DEFAULT 0,
  redactions bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (org_id, day)
);
SELECT quint_enable_tenant_rls('org_ingest_stats');
GRANT SELECT, INSERT, UPDATE ON org_ingest_stats TO quint_app;
