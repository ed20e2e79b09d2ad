-- Ingest tuning, measured with `bun run bench -- --only ingest`.

-- A bus payload is written once and read whole by each of the three consumers; nothing queries
-- inside it. json keeps the text as sent: no conversion to jsonb's binary form on the ack path,
-- none back to text for every consumer.
ALTER TABLE bus_batches ALTER COLUMN payload TYPE json;

-- The sessions consumer links children to a parent that arrives after them by parent_key.
CREATE INDEX sessions_org_parent_key ON sessions (org_id, parent_key) WHERE parent_key IS NOT NULL;
