-- Threat signatures as the fleet's prevention (issue 11, SPEC §13): an indicator (a domain, a URL,
-- a command or file path pattern, an MCP tool, a prompt-injection string) with the action daemons
-- take on it, a scope, an expiry, its source and a status. Active ones are compiled into the
-- managed policy every daemon in scope is served (src/features/signatures). The flow-shape
-- columns of 0004 (shape, max_jsd) stay for the shapes matched by Jensen-Shannon divergence.
ALTER TABLE threat_signatures
  ALTER COLUMN shape DROP NOT NULL,
  ALTER COLUMN max_jsd DROP NOT NULL,
  ADD COLUMN kind text NOT NULL DEFAULT 'flow_shape'
    CHECK (kind IN ('domain', 'url', 'command', 'file_path', 'mcp_tool', 'prompt_injection', 'flow_shape')),
  ADD COLUMN value text CHECK (length(value) BETWEEN 1 AND 512),
  ADD COLUMN action text NOT NULL DEFAULT 'alert' CHECK (action IN ('block', 'flag', 'require_approval', 'alert')),
  -- proposed: distilled from an alert that was not critical, enforced once an admin accepts it.
  ADD COLUMN status text NOT NULL DEFAULT 'active' CHECK (status IN ('proposed', 'active', 'expired', 'resolved', 'false_positive')),
  ADD COLUMN scope_machine_ids uuid[] NOT NULL DEFAULT '{}' CHECK (cardinality(scope_machine_ids) <= 1000),
  ADD COLUMN scope_tags text[] NOT NULL DEFAULT '{}' CHECK (cardinality(scope_tags) <= 50),
  ADD COLUMN expires_at timestamptz,
  ADD COLUMN source_alert_id uuid,
  ADD COLUMN created_by text CHECK (length(created_by) <= 200),
  ADD CONSTRAINT threat_signatures_indicator CHECK (kind = 'flow_shape' OR value IS NOT NULL),
  ADD CONSTRAINT threat_signatures_shape CHECK (kind <> 'flow_shape' OR (shape IS NOT NULL AND max_jsd IS NOT NULL));
CREATE INDEX threat_signatures_org_created ON threat_signatures (org_id, created_at DESC, id DESC);
