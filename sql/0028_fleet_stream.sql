-- The fleet stream (issue 11; docs/fleet-stream.md): what each daemon must hear at once (a policy
-- or signature change, an override decision, its machine being disabled), as one ordered log per
-- org. A daemon resumes with Last-Event-ID = the last `seq` it saw, so nothing is lost between
-- connections; `machine_id` null = every machine of the org.
--
-- `seq` is per org and comes from fleet_cursors under a row lock, so within an org sequence
-- numbers commit in order: a reader that saw seq N can never later find a smaller one committed.
CREATE TABLE fleet_cursors (
  org_id uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
  seq    bigint NOT NULL
);
SELECT quint_enable_tenant_rls('fleet_cursors');
GRANT SELECT, INSERT, UPDATE ON fleet_cursors TO quint_app;

CREATE TABLE fleet_events (
  org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  seq        bigint NOT NULL,
  machine_id uuid,
  kind       text NOT NULL CHECK (kind IN ('policy', 'signature', 'domains', 'machine', 'override')),
  data       jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, seq)
);
CREATE INDEX fleet_events_org_created ON fleet_events (org_id, created_at);
SELECT quint_enable_tenant_rls('fleet_events');
-- DELETE: the log is pruned past its window as it is written (src/features/fleet/repo.ts); it
-- is a delivery log, not evidence (the audit log keeps what was changed and by whom).
GRANT SELECT, INSERT, DELETE ON fleet_events TO quint_app;
