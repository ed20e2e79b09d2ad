-- Ingest redesign (issue 13), measured with `bun run bench -- --only ingest` and
-- `bun bench/ingest-cpu.ts`.

-- A bus payload is now the message's JSON compressed with zstd by the application
-- (src/bus/bus.ts encodePayload): 180–260 KB of JSON per 500 events was a third of the WAL each
-- ack flushed, and `json` parsed all of it again on the ack path to validate it. Rows written
-- before keep their JSON text as bytes; readers tell the two apart by the first byte ('{').
ALTER TABLE bus_batches ALTER COLUMN payload TYPE bytea USING convert_to(payload::text, 'UTF8');

-- Already compressed: Postgres must not try again (sql/0010 kept it uncompressed already).
ALTER TABLE bus_batches ALTER COLUMN payload SET STORAGE EXTERNAL;

-- Sessions and alerts follow the pipeline on the local bus (issue 13): ingest publishes events
-- to the pipeline alone, and the pipeline's transaction hands each batch on to them with the
-- keys of its events that were not stored (already in the ledger; usually none). They derive
-- from newly stored actions only, with no ledger of their own (the sessions consumer's ledger
-- insert was 10.8 µs of backend time per event). NULL: not handed on (a batch published to
-- every consumer, as before this migration and for lifecycle reports).
ALTER TABLE bus_batches ADD COLUMN skip_keys text[];
GRANT UPDATE (skip_keys) ON bus_batches TO quint_app;

-- Acks and the pipeline count into different shards of `ingest_stats` (acks 0–7, the pipeline
-- 8–15, each by its backend pid): an ack never waits for a pipeline transaction that holds a
-- shard row, which a consumer thread of lower priority may keep open for a while (issue 13).
ALTER TABLE ingest_stats DROP CONSTRAINT ingest_stats_shard_check;
ALTER TABLE ingest_stats ADD CONSTRAINT ingest_stats_shard_check CHECK (shard BETWEEN 0 AND 15);
