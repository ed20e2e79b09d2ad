/**
 * @module features/sessions/repo
 * SQL of the sessions read API (issue 9). Every function runs inside `withOrg`: RLS scopes each
 * statement to the transaction's org, so another org's session is simply not found. Sessions come
 * back as `SessionRow` (./view.ts) and events as `EventRow` (../events/view.ts), so every read
 * shares one shape.
 */
import type { Tx } from '../../infra/db.ts'
import type { Keyset } from '../../http/pagination.ts'
import { EVENT_COLUMNS, type EventRow } from '../events/view.ts'
import { SESSION_COLUMNS, type SessionRow } from './view.ts'

export interface SessionFilters {
  state?: 'active' | 'idle' | 'ended'
  platform?: string
  root_only?: boolean
  since?: string
  machine_id?: string
  agent_id?: string
}

/** Newest first, keyset on (started_at, id) over `sessions_org_started` (or `sessions_org_machine`). */
export function listSessions(tx: Tx, f: SessionFilters, limit: number, after: Keyset | null): Promise<SessionRow[]> {
  return tx<SessionRow[]>`
    select ${SESSION_COLUMNS(tx)} from sessions s
     where true
       ${f.state !== undefined ? tx`and s.state = ${f.state}` : tx``}
       ${f.platform !== undefined ? tx`and s.platform = ${f.platform}` : tx``}
       ${f.root_only ? tx`and s.parent_id is null` : tx``}
       ${f.since !== undefined ? tx`and s.started_at >= ${f.since}::text::timestamptz` : tx``}
       ${f.machine_id !== undefined ? tx`and s.machine_id = ${f.machine_id}::uuid` : tx``}
       ${
         // The API's agent id is the key, stored once per machine: any of its rows matches.
         f.agent_id !== undefined
           ? tx`and s.agent_id in (select g.id from agents g where g.org_id = s.org_id and g.agent_key = ${f.agent_id})`
           : tx``
       }
       ${after ? tx`and (s.started_at, s.id) < (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by s.started_at desc, s.id desc
     limit ${limit}`
}

/**
 * Direct children, oldest first (the order they were delegated), keyset on (started_at, id) over
 * `sessions_org_parent`. A session named as its own parent (possible only in damaged
 * data) is not its own child.
 */
export function childrenOf(tx: Tx, parentId: string, limit: number, after: Keyset | null): Promise<SessionRow[]> {
  return tx<SessionRow[]>`
    select ${SESSION_COLUMNS(tx)} from sessions s
     where s.parent_id = ${parentId}::uuid and s.id <> ${parentId}::uuid
       ${after ? tx`and (s.started_at, s.id) > (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by s.started_at, s.id
     limit ${limit}`
}

export async function countChildren(tx: Tx, parentId: string): Promise<number> {
  const [row] = await tx<{ n: string }[]>`
    select count(*) as n from sessions s where s.parent_id = ${parentId}::uuid and s.id <> ${parentId}::uuid`
  return Number(row!.n)
}

/**
 * A session's events in timestamp order (oldest first), keyset on (occurred_at, id): a range scan
 * of `actions_org_session (org_id, session_key, occurred_at, id)` in every monthly partition.
 */
export function sessionEvents(tx: Tx, sessionKey: string, limit: number, after: Keyset | null): Promise<EventRow[]> {
  return tx<EventRow[]>`
    select ${EVENT_COLUMNS(tx)} from actions a
     where a.session_key = ${sessionKey}
       ${after ? tx`and (a.occurred_at, a.id) > (${after.at}::text::timestamptz, ${after.id}::uuid)` : tx``}
     order by a.occurred_at, a.id
     limit ${limit}`
}

export type TreeRow = SessionRow & { depth: number }

/**
 * The sessions below `rootId`, to any depth, the root included: at most `maxNodes + 1` rows, so the
 * caller can tell a tree that was cut. Breadth first, so a cut drops the deepest sessions; returned
 * level by level, siblings oldest first.
 *
 * Why `c.id <> root` is the whole cycle guard: a session has one parent, so a session is below
 * the root only if the root is on its chain of parents. A loop among the descendants would be a
 * chain of parents that never reaches the root, so the only loop a walk down can enter is one
 * through the root itself, and refusing to step back onto the root ends it. The outer LIMIT
 * stops the recursive walk early (Postgres evaluates it lazily), so a huge tree costs no more
 * than `maxNodes` rows; the depth bound is a second belt.
 */
export function treeOf(tx: Tx, rootId: string, maxNodes: number): Promise<TreeRow[]> {
  return tx<TreeRow[]>`
    with recursive walk(id, depth) as (
      select s.id, 0 from sessions s where s.id = ${rootId}::uuid
      union all
      select c.id, w.depth + 1
        from walk w join sessions c on c.org_id = app_current_org() and c.parent_id = w.id
       where c.id <> ${rootId}::uuid and w.depth < ${maxNodes}
    ),
    cut as (select id, depth from walk limit ${maxNodes + 1})
    select ${SESSION_COLUMNS(tx)}, cut.depth from cut join sessions s on s.org_id = app_current_org() and s.id = cut.id
     order by cut.depth, s.started_at, s.id`
}

/**
 * The parents of a session up to its top-level ancestor, nearest first, at most `max + 1` (so the
 * caller can tell the chain was cut). A parent loop that does not pass through the session itself
 * is possible in damaged data, so the walk keeps the ids it has visited and stops on a repeat.
 */
export function ancestorsOf(tx: Tx, id: string, max: number): Promise<TreeRow[]> {
  return tx<TreeRow[]>`
    with recursive up(id, depth, seen) as (
      select s.parent_id, 1, array[s.id, s.parent_id]
        from sessions s where s.id = ${id}::uuid and s.parent_id is not null and s.parent_id <> s.id
      union all
      select p.parent_id, u.depth + 1, u.seen || p.parent_id
        from up u join sessions p on p.org_id = app_current_org() and p.id = u.id
       where p.parent_id is not null and not p.parent_id = any(u.seen) and u.depth <= ${max}
    )
    select ${SESSION_COLUMNS(tx)}, up.depth from up join sessions s on s.org_id = app_current_org() and s.id = up.id
     order by up.depth
     limit ${max + 1}`
}
