/**
 * @module features/chain/linker
 * The causal chain at write time (issue 9; the rule is docs/causal-chain.md): every OS-level
 * event the pipeline stores gets the action that caused it, the tool call or the process, as a
 * stored parent link.
 *
 * The links of a batch are planned BEFORE the actions insert (`planLinks`), so nearly every link
 * is written with its row: one set-based query finds the best stored candidate per event for each
 * rule, and the batch itself supplies the rest (ids are generated in JS before the insert). When a
 * parent arrives after its children (`adoptLinks`), one query finds the stored events the new
 * rows could be parents of, they are planned again with the same rule, and only those whose
 * answer changed are updated. So the stored links do not depend on the order or the batching in
 * which events arrived: the same events give the same links (tested on shuffled deliveries).
 *
 * Candidates are always of the same session family (a session and its `:sub:N` sub-agents share
 * one process tree, SPEC §10) and of the same org (RLS). Tool calls never get a parent, and a
 * process parent always sorts strictly before its child, so the links form no cycle.
 */
import type { Tx } from '../../infra/db.ts'
import type { StoredAction } from '../actions/store.ts'
import {
  candidatesSql,
  EFFECT_TYPES,
  LINK_HORIZON_MS,
  orphansSql,
  PROCESS_EXEC,
  TIME_WINDOW_MS,
  TOOL_CALL,
  type Node,
} from './lookups.ts'

export type LinkRule = 'process' | 'process_tree' | 'tool_use_id' | 'time_window'
export interface Link {
  parentId: string
  rule: LinkRule
}

const EFFECTS = new Set<string>(EFFECT_TYPES)

interface Candidate {
  id: string
  at: number
  key: string
}

/** The best stored candidate of each rule for one subject. */
interface Stored {
  process: Candidate | null
  toolUse: Candidate | null
  window: Candidate | null
}

/** As the generated columns of sql/0020 compute them; an empty value never links. */
const label = (...vs: (string | undefined)[]): string | null => {
  const v = vs.find((x) => x !== undefined)
  return v === undefined || v === '' ? null : v
}

/** The session family (docs/causal-chain.md), as `actions.chain_root` computes it. */
export function rootOf(sessionKey: string): string {
  return sessionKey.split(':sub:')[0]!
}

function nodeOf(
  id: string,
  sessionKey: string | null,
  kind: string | null,
  at: number,
  key: string,
  labels: Record<string, string>,
): Node | null {
  if (sessionKey === null || kind === null) return null
  return {
    id,
    root: rootOf(sessionKey),
    at,
    key,
    kind,
    pid: label(labels.pid, labels.process_pid),
    ppid: label(labels.ppid, labels.parent_pid),
    toolUseId: label(labels.tool_use_id),
  }
}

const isSubject = (n: Node) => n.kind === PROCESS_EXEC || EFFECTS.has(n.kind)
const isParent = (n: Node) => n.kind === PROCESS_EXEC || n.kind === TOOL_CALL

/** (at, key) order; keys compare by code unit, as `collate "C"` does in the queries. */
function cmp(a: Candidate, b: Candidate): number {
  if (a.at !== b.at) return a.at - b.at
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0
}

function latest(cands: (Candidate | null)[]): Candidate | null {
  let best: Candidate | null = null
  for (const c of cands) if (c && (!best || cmp(c, best) > 0)) best = c
  return best
}

/** Rule `tool_use_id`: the latest match at or before the event, else the earliest after it. */
function nearest(s: Node, cands: (Candidate | null)[]): Candidate | null {
  const present = cands.filter((c): c is Candidate => c !== null)
  const before = latest(present.filter((c) => c.at <= s.at))
  if (before) return before
  let best: Candidate | null = null
  for (const c of present) if (!best || c.at < best.at || (c.at === best.at && c.key > best.key)) best = c
  return best
}

/** The batch's own candidate parents, by family and key. */
class Local {
  readonly execByPid = new Map<string, Node[]>()
  readonly toolByUseId = new Map<string, Node[]>()
  readonly toolByAgentPid = new Map<string, Node[]>()

  constructor(nodes: Node[]) {
    const put = (m: Map<string, Node[]>, k: string, n: Node) => (m.get(k) ?? m.set(k, []).get(k)!).push(n)
    for (const n of nodes) {
      if (n.kind === PROCESS_EXEC && n.pid) put(this.execByPid, `${n.root}\u0000${n.pid}`, n)
      if (n.kind === TOOL_CALL && n.toolUseId) put(this.toolByUseId, `${n.root}\u0000${n.toolUseId}`, n)
      if (n.kind === TOOL_CALL && n.pid) put(this.toolByAgentPid, `${n.root}\u0000${n.pid}`, n)
    }
  }

  get(m: Map<string, Node[]>, root: string, k: string | null): Node[] {
    return k === null ? [] : (m.get(`${root}\u0000${k}`) ?? [])
  }
}

/** The rule (docs/causal-chain.md): process ancestry, then tool_use_id, then the time window. */
function choose(s: Node, stored: Stored, local: Local): Link | null {
  const horizon = (c: Node) => c.at >= s.at - LINK_HORIZON_MS
  if (s.kind === PROCESS_EXEC) {
    const mine = local.get(local.execByPid, s.root, s.ppid).filter((c) => c.id !== s.id && horizon(c) && cmp(c, s) < 0)
    const p = latest([stored.process, ...mine])
    if (p) return { parentId: p.id, rule: 'process_tree' }
  } else {
    const mine = local.get(local.execByPid, s.root, s.pid).filter((c) => horizon(c) && c.at <= s.at)
    const p = latest([stored.process, ...mine])
    if (p) return { parentId: p.id, rule: 'process' }
  }
  if (s.toolUseId) {
    const mine = local.get(local.toolByUseId, s.root, s.toolUseId).filter((c) => Math.abs(c.at - s.at) <= LINK_HORIZON_MS)
    const t = nearest(s, [stored.toolUse, ...mine])
    if (t) return { parentId: t.id, rule: 'tool_use_id' }
  }
  if (s.kind === PROCESS_EXEC && s.ppid) {
    const mine = local.get(local.toolByAgentPid, s.root, s.ppid).filter((c) => c.at <= s.at && c.at >= s.at - TIME_WINDOW_MS)
    const w = latest([stored.window, ...mine])
    if (w) return { parentId: w.id, rule: 'time_window' }
  }
  return null
}

/** Best stored candidate per rule for each subject: one statement. */
async function storedCandidates(tx: Tx, subjects: Node[]): Promise<Stored[]> {
  if (subjects.length === 0) return []
  const rows = await candidatesSql(tx, subjects)
  const out: Stored[] = subjects.map(() => ({ process: null, toolUse: null, window: null }))
  const cand = (id: string | null, at: number | null, key: string | null) => (id && at !== null && key ? { id, at, key } : null)
  for (const r of rows) {
    out[r.i] = {
      process: cand(r.p_id, r.p_at, r.p_key),
      toolUse: cand(r.t_id, r.t_at, r.t_key),
      window: cand(r.w_id, r.w_at, r.w_key),
    }
  }
  return out
}

function nodesOf(stored: StoredAction[]): Node[] {
  const nodes: Node[] = []
  for (const r of stored) {
    const e = r.event
    const n = nodeOf(r.id, e.sessionKey, e.actionType, Date.parse(e.occurredAt), e.eventKey, e.labels)
    if (n) nodes.push(n)
  }
  return nodes
}

/**
 * The org's chain lock, held until commit. Pipeline transactions of one org run side by side
 * (issue 13: one at a time left a core idle while the serial pipeline set the pace); only the
 * part that reads the chain is serial. Taken before the first read of stored candidates or
 * orphans: a transaction that links its own events takes it before planning, one that only
 * brings parents takes it to adopt, after its rows are in. Either way the later of two sees the
 * other's rows committed: a parent whose transaction commits after a child was planned without it
 * adopts the child, and a child planned after the parent committed finds it. A batch with
 * neither never takes it. Re-entrant: a second call in the same transaction costs nothing more.
 */
async function lockChain(tx: Tx): Promise<void> {
  await tx`select pg_advisory_xact_lock(hashtextextended('quint_chain:' || app_current_org()::text, 0))`
}

/**
 * The parent of each OS event of a batch about to be stored (by action id), from the stored
 * actions and the batch itself. Call before inserting the batch, in the same transaction.
 */
export async function planLinks(tx: Tx, batch: StoredAction[]): Promise<Map<string, Link>> {
  const nodes = nodesOf(batch)
  const subjects = nodes.filter(isSubject)
  const links = new Map<string, Link>()
  if (subjects.length === 0) return links
  await lockChain(tx)
  const local = new Local(nodes.filter(isParent))
  const stored = await storedCandidates(tx, subjects)
  subjects.forEach((s, i) => {
    const link = choose(s, stored[i]!, local)
    if (link) links.set(s.id, link)
  })
  return links
}

/**
 * After the batch is inserted: stored events that one of its tool calls or processes is a
 * better parent for (it arrived late, or out of order) are linked again by the same rule.
 */
export async function adoptLinks(tx: Tx, batch: StoredAction[]): Promise<number> {
  const parents = nodesOf(batch).filter((n) => isParent(n) && (n.pid !== null || n.toolUseId !== null))
  if (parents.length === 0) return 0
  await lockChain(tx)
  const rows = await orphansSql(tx, parents)
  const inBatch = new Set(batch.map((r) => r.id))
  const subjects: Node[] = []
  const current = new Map<string, { created: string; parent: string | null; link: string | null }>()
  for (const r of rows) {
    if (inBatch.has(r.id)) continue
    const n = nodeOf(r.id, r.session_key, r.action_type, r.at, r.event_key, r.labels)
    if (!n) continue
    subjects.push(n)
    current.set(r.id, { created: r.created, parent: r.parent_action_id, link: r.parent_link })
  }
  if (subjects.length === 0) return 0
  // The batch is stored now: the stored candidates include it.
  const stored = await storedCandidates(tx, subjects)
  const empty = new Local([])
  const changed: { id: string; created: string; link: Link }[] = []
  subjects.forEach((s, i) => {
    const link = choose(s, stored[i]!, empty)
    const now = current.get(s.id)!
    // A later parent only ever improves a link: the rule's answer with more events present.
    if (link && (link.parentId !== now.parent || link.rule !== now.link)) changed.push({ id: s.id, created: now.created, link })
  })
  if (changed.length === 0) return 0
  await tx`
    update actions a set parent_action_id = u.p::uuid, parent_link = u.l
      from unnest(${changed.map((c) => c.id)}::text[]::uuid[], ${changed.map((c) => c.created)}::text[]::timestamptz[],
                  ${changed.map((c) => c.link.parentId)}::text[], ${changed.map((c) => c.link.rule)}::text[]) as u(id, c, p, l)
     where a.org_id = app_current_org() and a.created_at = u.c and a.id = u.id`
  return changed.length
}

/**
 * The two lookups a batch makes, as query fragments: for the EXPLAIN check that they are index
 * probes under the tenant's RLS (test/integration/chain.test.ts), never scans.
 */
export function linkLookups(tx: Tx, batch: StoredAction[]) {
  const nodes = nodesOf(batch)
  return { candidates: candidatesSql(tx, nodes.filter(isSubject)), orphans: orphansSql(tx, nodes.filter(isParent)) }
}
