-- Least privilege for machines (issue 9): a laptop's credential sends events and fetches its own
-- policies; it must not read the org's events and alerts (colleagues' command lines included).
-- Deploy and enrollment tokens, and service tokens bound to a machine, lose `read`.
--
-- api_tokens forces RLS even on its owner: lifted for this one statement, inside the migration's
-- transaction, so no other session ever sees it lifted.
ALTER TABLE api_tokens NO FORCE ROW LEVEL SECURITY;
UPDATE api_tokens SET scopes = array_remove(scopes, 'read')
 WHERE 'read' = ANY (scopes)
   AND (kind IN ('install', 'enrollment') OR (kind = 'service' AND machine_id IS NOT NULL));
ALTER TABLE api_tokens FORCE ROW LEVEL SECURITY;
