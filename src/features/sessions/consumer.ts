/**
 * @module features/sessions/consumer
 * The sessions consumer: derives `sessions` and `agents` from the bus. A `ledgered` message (the
 * local bus, issue 13) holds only events the pipeline has just stored, each handed on once: they
 * are counted as they are. On SNS every consumer gets what ingest published, so a retried event
 * arrives again in a later message: its events are first entered in this consumer's own ledger
 * (`session_event_keys`) and only keys new to it are counted. The counts (and that ledger) commit
 * together with the claim (src/bus/consume-local.ts), so a crash neither loses nor double-counts.
 *
 * Hierarchy: a session's parent is named by a lifecycle `parent_id`, by an event's
 * `parent_session_id` (kept in `extra`), or by the edge's sub-agent key form `{parent}:sub:{N}`.
 * `parent_id` is resolved whichever of the two arrives first.
 */
import type { Tx } from '../../infra/db.ts'
import type { WireEvent } from '../../bus/bus.ts'
import { normalizeLifecycle } from '../ingest/events.ts'
import { lifecycleTime, type SessionLifecycle } from '../ingest/lifecycle.ts'
import type { Claimed } from '../../bus/consume-local.ts'

interface SessionDelta {
  key: string
  parentKey: string | null
  machineId: string | null
  agentKey: string | null
  platform: string | null
  first: string
  last: string
  events: number
  blocked: number
  riskMax: number | null
  riskSum: number
  riskCount: number
}

interface AgentDelta {
  machineId: string | null
  agentKey: string
  platform: string | null
  first: string
  last: string
  events: number
}

const SUB_AGENT = /^(.+):sub:\d+$/

/**
 * Column limits of `sessions` and `agents` (sql/0002_fleet.sql CHECKs) that ingest does not
 * enforce on what reaches them: an event's `platform` is descriptive text of up to 1024
 * characters (the daemon's `metadata.platform` is a label, unbounded), a lifecycle's free-form
 * fields may grow when redacted (`DB_PASSWORD=x` → `DB_PASSWORD=[REDACTED:…]`), and messages
 * already on the bus or in dead letters predate any rule. A CHECK violation fails the whole
 * batch, which is retried and dead-lettered with every other event of the org in it, so these
 * values are clamped here, as the alerts consumer clamps alert titles; `actions` keeps them as
 * sent (its columns have no limit).
 */
export const SESSION_LIMITS = { platform: 64, sessionName: 512, model: 256, signingId: 256, key: 256 } as const

/** `v` cut to at most `max` characters (Postgres counts code points; never splits a surrogate pair). */
export function clampText<T extends string | null | undefined>(v: T, max: number): T {
  if (typeof v !== 'string' || v.length <= max) return v
  const cut = v.slice(0, max)
  return (/[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut) as T
}

export function parentKeyOf(sessionKey: string, explicit: unknown): string | null {
  // A parent named by more than 256 characters can name no session (session keys are 1–256):
  // ignored, rather than breaking parent_key's CHECK (an event's `parent_session_id` is an
  // unknown field, kept as sent).
  const named = typeof explicit === 'string' && explicit !== '' && explicit.length <= SESSION_LIMITS.key ? explicit : null
  const parent = named ?? SUB_AGENT.exec(sessionKey)?.[1] ?? null
  return parent === sessionKey ? null : parent
}

export async function applySessions(tx: Tx, batches: Claimed[]): Promise<void> {
  const events = new Map<string, { event: WireEvent; machineId: string | null; ledgered: boolean }>()
  const lifecycles: { l: SessionLifecycle; at: string }[] = []
  for (const { message } of batches) {
    // Clamped to the clock window (issue 14): an impossible or absurd time, such as year 0,
    // which Postgres cannot store, used to fail this batch forever.
    if (message.kind === 'lifecycle') {
      // Cleaned and redacted again (idempotent): a report published before ingest did it (issue
      // 14), or redriven from a dead letter, must not store a secret or a NUL either.
      const r = normalizeLifecycle(message.lifecycle)
      const l = r.ok ? r.lifecycle : message.lifecycle
      lifecycles.push({ l, at: lifecycleTime(l, message.receivedAt) })
    } else {
      for (const event of message.events) {
        events.set(event.eventKey, { event, machineId: message.machineId, ledgered: message.ledgered === true })
      }
    }
  }
  const touched = new Set<string>()
  if (events.size > 0) await countEvents(tx, events, touched)
  // Lifecycle after events: a batch of both leaves the session in its reported state.
  lifecycles.sort((a, b) => Date.parse(a.at) - Date.parse(b.at))
  for (const { l, at } of lifecycles) {
    await applyLifecycle(tx, l, at)
    touched.add(l.session_id)
  }
  if (touched.size > 0) await linkParents(tx, [...touched])
}

async function countEvents(
  tx: Tx,
  all: Map<string, { event: WireEvent; machineId: string | null; ledgered: boolean }>,
  touched: Set<string>,
) {
  const fresh: { event_key: string }[] = []
  const unledgered: string[] = []
  for (const [key, e] of all) {
    if (e.ledgered) fresh.push({ event_key: key })
    else unledgered.push(key)
  }
  if (unledgered.length > 0) {
    fresh.push(
      ...(await tx<{ event_key: string }[]>`
        insert into session_event_keys (org_id, event_key)
        select app_current_org(), k from unnest(${unledgered}::text[]) k
        on conflict do nothing
        returning event_key`),
    )
  }
  if (fresh.length === 0) return
  // A machine deleted since ingest must not make the batch fail on its foreign key.
  const machineIds = [...new Set(fresh.map((f) => all.get(f.event_key)!.machineId).filter((m) => m !== null))]
  const live = new Set(
    machineIds.length === 0
      ? []
      : (await tx<{ id: string }[]>`select id from machines where id = any(${machineIds}::uuid[])`).map((r) => r.id),
  )

  const sessions = new Map<string, SessionDelta>()
  const agents = new Map<string, AgentDelta>()
  for (const { event_key } of fresh) {
    const { event: e, machineId: m } = all.get(event_key)!
    const machineId = m !== null && live.has(m) ? m : null
    const at = e.occurredAt
    const platform = clampText(e.platform, SESSION_LIMITS.platform)
    if (e.agentKey !== null) {
      const id = `${machineId ?? ''}\u0000${e.agentKey}`
      const a = agents.get(id) ?? { machineId, agentKey: e.agentKey, platform: null, first: at, last: at, events: 0 }
      a.events++
      a.platform ??= platform
      if (at < a.first) a.first = at
      if (at > a.last) a.last = at
      agents.set(id, a)
    }
    if (e.sessionKey === null) continue
    let s = sessions.get(e.sessionKey)
    if (!s) {
      s = {
        key: e.sessionKey,
        parentKey: parentKeyOf(e.sessionKey, e.extra.parent_session_id),
        machineId,
        agentKey: e.agentKey,
        platform,
        first: at,
        last: at,
        events: 0,
        blocked: 0,
        riskMax: null,
        riskSum: 0,
        riskCount: 0,
      }
      sessions.set(e.sessionKey, s)
    }
    s.events++
    if (e.blocked) s.blocked++
    if (e.riskScore !== null) {
      s.riskMax = Math.max(s.riskMax ?? 0, e.riskScore)
      s.riskSum += e.riskScore
      s.riskCount++
    }
    s.agentKey ??= e.agentKey
    s.machineId ??= machineId
    s.platform ??= platform
    if (at < s.first) s.first = at
    if (at > s.last) s.last = at
  }

  const agentIds = new Map<string, string>()
  if (agents.size > 0) {
    const rows = [...agents.values()]
    const upserted = await tx<{ id: string; machine_id: string | null; agent_key: string }[]>`
      insert into agents (org_id, machine_id, agent_key, platform, event_count, first_seen_at, last_seen_at)
      select app_current_org(), m::uuid, k, p, n::bigint, f::timestamptz, l::timestamptz
        from unnest(${rows.map((a) => a.machineId)}::text[], ${rows.map((a) => a.agentKey)}::text[],
                    ${rows.map((a) => a.platform)}::text[], ${rows.map((a) => String(a.events))}::text[],
                    ${rows.map((a) => a.first)}::text[], ${rows.map((a) => a.last)}::text[]) as u(m, k, p, n, f, l)
      on conflict (org_id, machine_id, agent_key) do update
        set event_count = agents.event_count + excluded.event_count,
            platform = coalesce(agents.platform, excluded.platform),
            first_seen_at = least(agents.first_seen_at, excluded.first_seen_at),
            last_seen_at = greatest(agents.last_seen_at, excluded.last_seen_at)
      returning id, machine_id, agent_key`
    for (const r of upserted) agentIds.set(`${r.machine_id ?? ''}\u0000${r.agent_key}`, r.id)
  }

  if (sessions.size === 0) return
  const rows = [...sessions.values()]
  const text = (f: (s: SessionDelta) => string | number | null) =>
    rows.map((s) => {
      const v = f(s)
      return v === null ? null : String(v)
    })
  const upserted = await tx<{ inserted: boolean; agent_id: string | null }[]>`
    insert into sessions (org_id, session_key, parent_key, machine_id, agent_id, platform, started_at, last_event_at,
                          event_count, blocked_count, risk_max, risk_sum, risk_count)
    select app_current_org(), k, pk, m::uuid, a::uuid, p, f::timestamptz, l::timestamptz, n::bigint, b::bigint,
           rmax::smallint, rsum::bigint, rcount::bigint
      from unnest(${text((s) => s.key)}::text[], ${text((s) => s.parentKey)}::text[], ${text((s) => s.machineId)}::text[],
                  ${text((s) => (s.agentKey === null ? null : (agentIds.get(`${s.machineId ?? ''}\u0000${s.agentKey}`) ?? null)))}::text[],
                  ${text((s) => s.platform)}::text[], ${text((s) => s.first)}::text[], ${text((s) => s.last)}::text[],
                  ${text((s) => s.events)}::text[], ${text((s) => s.blocked)}::text[], ${text((s) => s.riskMax)}::text[],
                  ${text((s) => s.riskSum)}::text[], ${text((s) => s.riskCount)}::text[])
           as u(k, pk, m, a, p, f, l, n, b, rmax, rsum, rcount)
    on conflict (org_id, session_key) do update
      set event_count = sessions.event_count + excluded.event_count,
          blocked_count = sessions.blocked_count + excluded.blocked_count,
          risk_max = greatest(sessions.risk_max, excluded.risk_max),
          risk_sum = sessions.risk_sum + excluded.risk_sum,
          risk_count = sessions.risk_count + excluded.risk_count,
          started_at = least(sessions.started_at, excluded.started_at),
          last_event_at = greatest(sessions.last_event_at, excluded.last_event_at),
          parent_key = coalesce(sessions.parent_key, excluded.parent_key),
          machine_id = coalesce(sessions.machine_id, excluded.machine_id),
          agent_id = coalesce(sessions.agent_id, excluded.agent_id),
          platform = coalesce(sessions.platform, excluded.platform),
          updated_at = now()
    returning (xmax = 0) as inserted, agent_id`
  // New sessions count towards their agent's session_count.
  const created = upserted.filter((r) => r.inserted && r.agent_id !== null)
  for (const s of rows) touched.add(s.key)
  if (created.length > 0) {
    await tx`
      update agents set session_count = session_count + n
        from (select a::uuid as id, count(*) as n from unnest(${created.map((c) => c.agent_id)}::text[]) a group by a) c
       where agents.id = c.id`
  }
}

/**
 * One lifecycle event. Out-of-order delivery is expected (SPEC §9.3): an `ended` session is only
 * reopened by a report newer than its end.
 */
async function applyLifecycle(tx: Tx, l: SessionLifecycle, at: string) {
  await tx`
    insert into sessions (org_id, session_key, parent_key, session_name, model, signing_id, platform, state,
                          started_at, ended_at)
    values (app_current_org(), ${l.session_id}, ${parentKeyOf(l.session_id, l.parent_id)},
            ${clampText(l.session_name ?? null, SESSION_LIMITS.sessionName)}, ${clampText(l.model ?? null, SESSION_LIMITS.model)},
            ${clampText(l.signing_id ?? null, SESSION_LIMITS.signingId)}, ${clampText(l.platform ?? null, SESSION_LIMITS.platform)}, ${l.state}, ${at}::text::timestamptz,
            ${l.state === 'ended' ? at : null}::text::timestamptz)
    on conflict (org_id, session_key) do update
      set session_name = coalesce(excluded.session_name, sessions.session_name),
          model = coalesce(excluded.model, sessions.model),
          signing_id = coalesce(excluded.signing_id, sessions.signing_id),
          platform = coalesce(excluded.platform, sessions.platform),
          parent_key = coalesce(excluded.parent_key, sessions.parent_key),
          started_at = least(sessions.started_at, excluded.started_at),
          state = case when sessions.state = 'ended' and sessions.ended_at >= ${at}::text::timestamptz
                       then sessions.state else excluded.state end,
          ended_at = case when sessions.state = 'ended' and sessions.ended_at >= ${at}::text::timestamptz
                          then sessions.ended_at else excluded.ended_at end,
          updated_at = now()`
}

/** Links children to parents among the sessions just touched, in both directions. */
async function linkParents(tx: Tx, keys: string[]) {
  await tx`
    update sessions c set parent_id = p.id, updated_at = now()
      from sessions p
     where c.parent_key = p.session_key and p.id <> c.id and c.parent_id is distinct from p.id
       and (c.session_key = any(${keys}::text[]) or p.session_key = any(${keys}::text[]))`
}
