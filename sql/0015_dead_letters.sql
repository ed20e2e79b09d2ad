-- Dead letters (issue 14): a bus message that keeps failing in one consumer is set aside after
-- BUS_MAX_ATTEMPTS attempts, so that the org's later messages go on (docs/dead-letters.md).
--
-- Attempts of the local bus are counted on the consumer's pending row. They are written in their
-- own transaction after the failing one rolled back: a count kept inside the failing transaction
-- would roll back with it, and the batch would be retried forever. `created_at` gives the
-- consumer lag (age of the oldest pending message); existing rows get the migration's time.
ALTER TABLE bus_pending
  ADD COLUMN attempts        int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  ADD COLUMN first_failed_at timestamptz,
  ADD COLUMN last_failed_at  timestamptz,
  ADD COLUMN created_at      timestamptz NOT NULL DEFAULT now();
GRANT UPDATE (attempts, first_failed_at, last_failed_at) ON bus_pending TO quint_app;

-- One row per (consumer, message) set aside, in both bus modes: the local bus moves the
-- consumer's claim of a batch here; the SQS consumer moves the message here and deletes it from
-- its queue (the queue's own dead-letter queue stays the backstop for what cannot be attributed
-- to an org). The payload is the message as that consumer received it, so a redrive replays
-- exactly it, to that consumer only; the one exception is what jsonb cannot hold (a NUL or a lone
-- surrogate, which the bus's json payload accepts), stored as U+FFFD by the consumer, so that
-- every message can be set aside (issue 14). The column stays jsonb: the routes count a dead
-- letter's events with jsonb_array_length.
CREATE TABLE bus_dead_letters (
  org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  consumer        text NOT NULL CHECK (consumer IN ('pipeline', 'sessions', 'alerts')),
  -- 'local', or the URL of the SQS queue the message came from (where a redrive sends it back).
  source          text NOT NULL CHECK (length(source) BETWEEN 1 AND 2048),
  -- The local batch id or the SQS message id: with org_id and consumer, a move retried after a
  -- crash finds the row it already wrote.
  message_id      text NOT NULL CHECK (length(message_id) BETWEEN 1 AND 256),
  kind            text NOT NULL CHECK (kind IN ('events', 'lifecycle')),
  payload         jsonb NOT NULL,
  attempts        int NOT NULL CHECK (attempts >= 1),
  -- The last failure: the error's class and message (never a secret: handler and database
  -- errors, scrubbed and cut to 1000 characters by the consumer).
  error_class     text NOT NULL CHECK (length(error_class) BETWEEN 1 AND 200),
  error_message   text NOT NULL CHECK (length(error_message) <= 1000),
  first_failed_at timestamptz NOT NULL,
  last_failed_at  timestamptz NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, consumer, source, message_id)
);
CREATE INDEX bus_dead_letters_page ON bus_dead_letters (org_id, created_at DESC, id DESC);
SELECT quint_enable_tenant_rls('bus_dead_letters');
-- Operators (`quint-cloud dead-letters`) and the waiting gauge look across orgs: a transaction
-- that sets app.dead_letter_discovery to 'on' sees every org's dead letters. The service sets it
-- only to count them and to find which orgs have any; payloads are then read per org under
-- tenant_isolation.
CREATE POLICY dead_letter_discovery ON bus_dead_letters FOR SELECT
  USING (NULLIF(current_setting('app.dead_letter_discovery', true), '') = 'on');
GRANT SELECT, INSERT, DELETE ON bus_dead_letters TO quint_app;
