/**
 * @module features/chain/lookups
 * The causal-chain linker's two set-based lookups (issue 9, docs/causal-chain.md): the best
 * stored candidate of each rule for a batch's OS events, and the stored events a batch's new
 * parents could adopt. Kept apart from the rule (./linker.ts) so the EXPLAIN test can inspect
 * exactly the statements the pipeline runs.
 *
 * Every comparison that should use an index is a plain column against a value: under forced RLS
 * only LEAKPROOF comparisons become index conditions (sql/0020_causal_chain.sql).
 */
import type { Tx } from '../../infra/db.ts'

/** How far apart a parent and its child may be (any rule): bounds every lookup so partitions prune. */
export const LINK_HORIZON_MS = 24 * 3600_000
/** Rule `time_window`: a process spawned by the agent at most this long after the tool call. */
export const TIME_WINDOW_MS = 30_000
/** Ingest clamps occurred_at to at most created_at + 10 min, so created_at ≥ occurred_at − 10 min. */
export const CLOCK_AHEAD_MS = 10 * 60_000

export const TOOL_CALL = 'tools/call'
export const PROCESS_EXEC = 'PROCESS_EXEC'
/** OS effects: SPEC §8.3's file and network types, and the Gen B daemon's `http:` events. */
export const EFFECT_TYPES = ['FILE_READ', 'FILE_WRITE', 'FILE_DELETE', 'NETWORK_CONNECT', 'http'] as const

/** One event as the rule sees it. `at` is epoch milliseconds; `key` the event key (tie-break). */
export interface Node {
  id: string
  root: string
  at: number
  key: string
  kind: string
  /** The process of the event: the exec'd one, the acting one, or (on a tool call) the agent's own. */
  pid: string | null
  ppid: string | null
  toolUseId: string | null
}

const H = LINK_HORIZON_MS
const W = TIME_WINDOW_MS

/**
 * `at + offsetMs` of each node, as timestamps. Every bound is computed here rather than in SQL:
 * under forced RLS only LEAKPROOF comparisons become index conditions, and `timestamptz -
 * interval` is not, so `occurred_at >= u.at - interval '…'` would be a row-by-row filter.
 */
const ts = (nodes: Node[], offsetMs: number) => nodes.map((n) => new Date(n.at + offsetMs).toISOString())

/** The candidate lookup: the best stored candidate per rule for each subject, by index probes. */
export function candidatesSql(tx: Tx, subjects: Node[]) {
  return tx<
    {
      i: number
      p_id: string | null
      p_at: number | null
      p_key: string | null
      t_id: string | null
      t_at: number | null
      t_key: string | null
      w_id: string | null
      w_at: number | null
      w_key: string | null
    }[]
  >`
    select u.i, p.id as p_id, p.at as p_at, p.key as p_key, t.id as t_id, t.at as t_at, t.key as t_key,
           w.id as w_id, w.at as w_at, w.key as w_key
      from unnest(${subjects.map((_, i) => String(i))}::text[]::int[], ${subjects.map((s) => s.root)}::text[],
                  ${ts(subjects, 0)}::timestamptz[], ${subjects.map((s) => s.key)}::text[],
                  ${subjects.map((s) => s.kind)}::text[], ${subjects.map((s) => s.pid)}::text[],
                  ${subjects.map((s) => s.ppid)}::text[], ${subjects.map((s) => s.toolUseId)}::text[],
                  ${ts(subjects, -H)}::timestamptz[], ${ts(subjects, H)}::timestamptz[],
                  ${ts(subjects, -H - CLOCK_AHEAD_MS)}::timestamptz[], ${ts(subjects, -W)}::timestamptz[],
                  ${ts(subjects, -W - CLOCK_AHEAD_MS)}::timestamptz[])
           as u(i, root, at, key, kind, pid, ppid, tuid, h_lo, h_hi, h_created, w_lo, w_created)
      left join lateral (
        select a.id, (extract(epoch from a.occurred_at) * 1000)::float8 as at, a.event_key as key
          from actions a
         where a.org_id = app_current_org() and a.action_type = 'PROCESS_EXEC'
           and a.chain_root = u.root
           and a.chain_pid = (case when u.kind = 'PROCESS_EXEC' then u.ppid else u.pid end)
           and a.occurred_at >= u.h_lo and a.occurred_at <= u.at
           and (u.kind <> 'PROCESS_EXEC' or (a.occurred_at, a.event_key collate "C") < (u.at, u.key collate "C"))
           and a.created_at >= u.h_created
         order by a.occurred_at desc, a.event_key collate "C" desc
         limit 1
      ) p on true
      left join lateral (
        select a.id, (extract(epoch from a.occurred_at) * 1000)::float8 as at, a.event_key as key
          from actions a
         where u.tuid is not null and a.org_id = app_current_org()
           and a.action_type = 'tools/call' and a.chain_root = u.root
           and a.chain_tool_use_id = u.tuid
           and a.occurred_at between u.h_lo and u.h_hi
           and a.created_at >= u.h_created
         order by (a.occurred_at <= u.at) desc, abs(extract(epoch from a.occurred_at - u.at)), a.event_key collate "C" desc
         limit 1
      ) t on true
      left join lateral (
        select a.id, (extract(epoch from a.occurred_at) * 1000)::float8 as at, a.event_key as key
          from actions a
         where u.kind = 'PROCESS_EXEC' and u.ppid is not null and a.org_id = app_current_org()
           and a.action_type = 'tools/call' and a.chain_root = u.root
           and a.chain_pid = u.ppid
           and a.occurred_at between u.w_lo and u.at
           and a.created_at >= u.w_created
         order by a.occurred_at desc, a.event_key collate "C" desc
         limit 1
      ) w on true`
}

interface Probe {
  kind: 'exec' | 'tool' | 'use'
  root: string
  key: string
  lo: number
  hi: number
}

/**
 * What the batch's new parents could adopt, as few index probes as possible: one per process
 * (its effects and child processes), one per agent process (its spawns within the window) and
 * one per tool_use_id, each over the time range the batch's events of that key span. A superset:
 * the rule, applied again to what is found, decides.
 */
function probesOf(parents: Node[]): Probe[] {
  const probes = new Map<string, Probe>()
  const add = (kind: Probe['kind'], n: Node, key: string | null, before: number, after: number) => {
    if (key === null) return
    const id = `${kind}\u0000${n.root}\u0000${key}`
    const p = probes.get(id)
    if (!p) probes.set(id, { kind, root: n.root, key, lo: n.at - before, hi: n.at + after })
    else {
      p.lo = Math.min(p.lo, n.at - before)
      p.hi = Math.max(p.hi, n.at + after)
    }
  }
  for (const n of parents) {
    if (n.kind === PROCESS_EXEC) add('exec', n, n.pid, 0, H)
    if (n.kind === TOOL_CALL) {
      add('tool', n, n.pid, 0, W)
      add('use', n, n.toolUseId, H, H)
    }
  }
  return [...probes.values()]
}

/** The stored events the batch's new tool calls and processes could be parents of. */
export function orphansSql(tx: Tx, parents: Node[]) {
  const probes = probesOf(parents)
  const iso = (ms: number) => new Date(ms).toISOString()
  const COLS = tx`x.id, x.created_at, x.session_key, x.action_type, x.occurred_at, x.event_key, x.labels, x.parent_action_id, x.parent_link`
  return tx<
    {
      id: string
      created: string
      session_key: string
      action_type: string
      at: number
      event_key: string
      labels: Record<string, string>
      parent_action_id: string | null
      parent_link: string | null
    }[]
  >`
    select distinct on (a.id) a.id, a.created_at::text as created, a.session_key, a.action_type,
           (extract(epoch from a.occurred_at) * 1000)::float8 as at, a.event_key, a.labels, a.parent_action_id, a.parent_link
      from unnest(${probes.map((p) => p.kind)}::text[], ${probes.map((p) => p.root)}::text[], ${probes.map((p) => p.key)}::text[],
                  ${probes.map((p) => iso(p.lo))}::timestamptz[], ${probes.map((p) => iso(p.hi))}::timestamptz[],
                  ${probes.map((p) => iso(p.lo - CLOCK_AHEAD_MS))}::timestamptz[])
           as n(kind, root, key, lo, hi, created)
      cross join lateral (
        select ${COLS} from actions x
         where n.kind = 'exec' and x.org_id = app_current_org()
           and x.chain_root = n.root and x.chain_pid = n.key
           and x.action_type in ('FILE_READ', 'FILE_WRITE', 'FILE_DELETE', 'NETWORK_CONNECT', 'http')
           and x.occurred_at between n.lo and n.hi and x.created_at >= n.created
        union all
        select ${COLS} from actions x
         where n.kind in ('exec', 'tool') and x.org_id = app_current_org()
           and x.chain_root = n.root and x.chain_ppid = n.key and x.action_type = 'PROCESS_EXEC'
           and x.occurred_at between n.lo and n.hi and x.created_at >= n.created
        union all
        select ${COLS} from actions x
         where n.kind = 'use' and x.org_id = app_current_org()
           and x.chain_root = n.root and x.chain_tool_use_id = n.key
           and x.action_type in ('PROCESS_EXEC', 'FILE_READ', 'FILE_WRITE', 'FILE_DELETE', 'NETWORK_CONNECT', 'http')
           and x.occurred_at between n.lo and n.hi and x.created_at >= n.created
      ) a
     order by a.id`
}
