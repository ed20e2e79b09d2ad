-- Which machines hold the policy hash (issue 12; docs/machines.md "Policy delivery"): the last
-- policy hash this server handed each machine, when and how. The console's Policies page shows,
-- after a save, which machines already hold the new hash. Written only when the hash changes
-- (`is distinct from`): a heartbeat in the steady state writes nothing it did not write before.
ALTER TABLE machines
  ADD COLUMN policy_delivered_hash text CHECK (length(policy_delivered_hash) <= 128),
  ADD COLUMN policy_delivered_at   timestamptz,
  ADD COLUMN policy_delivered_via  text CHECK (policy_delivered_via IN ('heartbeat', 'policies', 'stream'));
