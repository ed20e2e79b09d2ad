-- Ingest redesign (issue 13), measured with `bun run bench -- --only ingest`.

-- A bus payload is now the message's JSON compressed with zstd by the application
-- (src/bus/bus.ts encodePayload): 180–260 KB of JSON per 500 events was a third of the WAL each
-- ack flushed, and `json` parsed all of it again on the ack path to validate it. Rows written
-- before keep their JSON text as bytes; readers tell the two apart by the first byte ('{').
ALTER TABLE bus_batches ALTER COLUMN payload TYPE bytea USING convert_to(payload::text, 'UTF8');

-- Already compressed: Postgres must not try again (sql/0010 kept it uncompressed already).
ALTER TABLE bus_batches ALTER COLUMN payload SET STORAGE EXTERNAL;
