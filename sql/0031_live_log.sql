-- The console's live stream (issue 12; docs/live.md): what each org stored or changed that a
-- console watching it must hear, as one ordered log per org. Each row names the rows of one
-- commit (stored actions, new or triaged alerts, machines whose policy delivery changed); the
-- reader fetches them by id. The rows themselves carry no timestamp that orders commits (an
-- action's `created_at` is when ingest received it, an alert's `updated_at` when its transaction
-- began), so they cannot be followed by time without missing a late commit or re-reading a window.
--
-- `seq` is per org and comes from live_cursors under a row lock, written last in each writer's
-- transaction: within an org, sequence numbers commit in order, so a reader that saw seq N never
-- later finds a smaller one committed. The log is a delivery log, pruned as it is written
-- (src/features/live/repo.ts); the data stays in its own tables.
CREATE TABLE live_cursors (
  org_id uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
  seq    bigint NOT NULL
);
SELECT quint_enable_tenant_rls('live_cursors');
GRANT SELECT, INSERT, UPDATE ON live_cursors TO quint_app;

CREATE TABLE live_log (
  org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  seq        bigint NOT NULL,
  kind       text NOT NULL CHECK (kind IN ('event', 'alert', 'delivery')),
  ids        uuid[] NOT NULL CHECK (cardinality(ids) >= 1),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, seq)
);
SELECT quint_enable_tenant_rls('live_log');
GRANT SELECT, INSERT, DELETE ON live_log TO quint_app;
