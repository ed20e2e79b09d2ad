/**
 * @module features/ingest/pipeline
 * The pipeline consumer: stores events in `actions` through the `(org_id, event_key)` ledger.
 * The ledger insert answers which keys are new; only those become actions, so a retried event
 * (same key, any batch, any month) is stored once.
 *
 * One statement per claim, run by the server on the claimed payloads where they lie: the events
 * never travel back to this process, and nothing is parsed or re-encoded here. Within a claim the
 * first copy of a key wins (batch order). Types are cast by the server from the wire JSON, whose
 * shape is `WireEvent` (./bus.ts): a field renamed there must be renamed here.
 */
import type { Tx } from '../../infra/db.ts'
import type { Claimed } from '../../workers/consume.ts'

export async function storeEvents(tx: Tx, batches: Claimed[]): Promise<void> {
  if (batches.length === 0) return
  await tx`
    with ev as (
      select distinct on (e."eventKey") e.*, b.payload->>'receivedAt' as received_at, b.payload->>'machineId' as machine_id
        from bus_batches b
        cross join lateral json_to_recordset(b.payload->'events') as e(
          "eventKey" text, "eventId" text, "occurredAt" text, "clientTimestamp" text, "sessionKey" text,
          "agentKey" text, "schemaVersion" smallint, source text, platform text, "actionType" text, action text,
          "toolName" text, arguments jsonb, decision text, blocked boolean, "riskScore" smallint, labels jsonb,
          extra jsonb, redactions integer)
       where b.id = any(${batches.map((b) => b.batchId)}::bigint[]) and b.kind = 'events'
       order by e."eventKey", b.id
    ), fresh as (
      insert into event_keys (org_id, event_key, action_id, action_created_at)
      select app_current_org(), "eventKey", gen_random_uuid(), received_at::timestamptz from ev
      on conflict do nothing
      returning event_key, action_id, action_created_at
    ), stored as (
      -- Data-modifying CTEs always run, referenced or not.
      insert into actions (org_id, id, created_at, event_key, event_id, occurred_at, client_timestamp, machine_id,
                           session_key, agent_key, schema_version, source, platform, action_type, action, tool_name,
                           arguments, decision, blocked, risk_score, labels, extra, redacted)
      select app_current_org(), f.action_id, f.action_created_at, ev."eventKey", ev."eventId", ev."occurredAt"::timestamptz,
             ev."clientTimestamp", ev.machine_id::uuid, ev."sessionKey", ev."agentKey", ev."schemaVersion", ev.source,
             ev.platform, ev."actionType", ev.action, ev."toolName", nullif(ev.arguments, 'null'::jsonb), ev.decision,
             coalesce(ev.blocked, false), ev."riskScore", coalesce(ev.labels, '{}'), coalesce(ev.extra, '{}'),
             coalesce(ev.redactions, 0) > 0
        from ev join fresh f on f.event_key = ev."eventKey"
    ), counts as (
      select count(*) as stored, coalesce(sum(ev.redactions), 0) as redactions
        from ev join fresh f on f.event_key = ev."eventKey"
    )
    insert into org_ingest_stats (org_id, day, stored, redactions)
    select app_current_org(), (now() at time zone 'utc')::date, stored, redactions
      from counts where stored > 0
    on conflict (org_id, day) do update
      set stored = org_ingest_stats.stored + excluded.stored,
          redactions = org_ingest_stats.redactions + excluded.redactions`
}
