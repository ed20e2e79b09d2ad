-- Ingest tuning, measured with `bun run bench -- --only ingest`.

-- A bus payload lives for the moments between its ack and its last consumer. Compressing it
-- (pglz, the only method every supported build has) cost more on the ack path, and again on each
-- of the three reads, than writing the plain bytes: p99 of the ack at half load went from
-- 58–62 ms to 21–24 ms in the same runs.
ALTER TABLE bus_batches ALTER COLUMN payload SET STORAGE EXTERNAL;
