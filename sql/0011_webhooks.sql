-- Webhook delivery (docs/webhooks.md): secret rotation, the per-attempt log, and the cross-org
-- wake-up index the delivery loop uses to find orgs with due deliveries.

-- Rotation keeps the old secret signing beside the new one until previous_secret_expires_at.
-- Both are sealed under the same context (webhook:<org>:<id>), so neither opens on another row.
ALTER TABLE webhooks
  ADD COLUMN previous_secret_ciphertext bytea,
  ADD COLUMN previous_secret_expires_at timestamptz,
  ADD CONSTRAINT webhooks_previous_secret_pair
    CHECK ((previous_secret_ciphertext IS NULL) = (previous_secret_expires_at IS NULL));

-- Every attempt (time, duration, HTTP status, error) as a capped JSON array: the delivery log.
-- attempt_count counts the attempts of the current round (a redelivery starts a new round);
-- `attempts` keeps the whole history, newest last.
ALTER TABLE webhook_deliveries
  ADD COLUMN attempts jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(attempts) = 'array'),
  ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (org_id, webhook_id, created_at DESC, id DESC);

-- The delivery loop finds orgs with due work the way consumers find bus work (bus_discovery in
-- 0007): one row per org with its earliest due time, under the tenant policy like every tenant
-- table, plus a SELECT-only policy for a transaction that names itself the dispatcher. That
-- policy shows org ids and due times, nothing else; deliveries themselves are claimed under the
-- org's own context with FOR UPDATE SKIP LOCKED.
CREATE TABLE webhook_dispatch (
  org_id  uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
  due_at  timestamptz NOT NULL
);
CREATE INDEX webhook_dispatch_due ON webhook_dispatch (due_at);
SELECT quint_enable_tenant_rls('webhook_dispatch');
CREATE POLICY webhook_discovery ON webhook_dispatch FOR SELECT
  USING (NULLIF(current_setting('app.webhook_dispatcher', true), '') = 'on');
GRANT SELECT, INSERT, UPDATE ON webhook_dispatch TO quint_app;
