/**
 * @module console/ui/pages/overrides-data
 * Approval requests (docs/auth.md "Overrides"). An agent asks a human to decide one event by
 * minting a one-shot override token for it, then waits until someone decides or the request
 * expires (5 minutes by default). `GET /v1/overrides/pending` lists the requests waiting (to
 * anyone who reads the org), and the live stream's `approval` events (topic `alerts`,
 * docs/live.md) tell when one is asked for and when one ends: decided, revoked, or found expired.
 * Expiry itself is not announced: each request carries `expires_at` and leaves the list then.
 *
 * Deciding needs a management credential or an admin or owner (`canDecideOverrides`, ../session.ts); the Overrides
 * page and the alert queue both show the requests, only the first offers the decision.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import { api, type Ok, type Schema } from '../api/client.ts'
import { useLoad } from '../hooks.ts'

export type Approval = Schema<'PendingApproval'>
type Decision = Ok<'/overrides/{event_id}', 'get'>['decisions'][number]

/** An `approval` event of the live stream (docs/live.md). */
export type ApprovalEvent =
  | ({ state: 'pending' } & Approval)
  | ({ state: 'decided' } & Decision)
  | { state: 'revoked' | 'expired'; override_jti: string; event_id: string }

/** A decision heard while the page is open (`decided_by` null: this console's own, not heard back yet). */
export interface Decided {
  override_jti: string
  event_id: string
  decision: string
  reason: string | null
  decided_at: string
  decided_by: string | null
}

const PAGE = 200
/** Requests live minutes: a thousand waiting at once is far past what anyone works through. */
const PAGES = 5

/** Every pending request (newest first), page after page. */
export async function loadPending(signal?: AbortSignal): Promise<Approval[]> {
  const out: Approval[] = []
  let cursor: string | undefined
  for (let i = 0; i < PAGES; i++) {
    const page = await api.get('/v1/overrides/pending', {
      query: { limit: PAGE, ...(cursor ? { cursor } : {}) },
      ...(signal ? { signal } : {}),
    })
    out.push(...page.pending)
    if (!page.next_cursor) break
    cursor = page.next_cursor
  }
  return out
}

const STATES = new Set(['pending', 'decided', 'revoked', 'expired'])

export function isApprovalEvent(data: unknown): data is ApprovalEvent {
  if (!data || typeof data !== 'object') return false
  const e = data as { state?: unknown; override_jti?: unknown }
  return typeof e.state === 'string' && STATES.has(e.state) && typeof e.override_jti === 'string'
}

/** Decides with the management credential naming the token; the reason is kept with the decision. */
export async function decide(a: Approval, decision: string, reason: string): Promise<Ok<'/overrides/{event_id}/decide', 'post'>> {
  return api.post('/overrides/{event_id}/decide', {
    path: { event_id: a.event_id },
    body: { override_jti: a.override_jti, decision, reason },
  })
}

export interface Approvals {
  /** Waiting now, newest first; undefined until first fetched. */
  pending: Approval[] | undefined
  /** Decided while the page is open, newest first. */
  decided: Decided[]
  error: Error | null
  loading: boolean
  /** Fetch the list again (on the stream's `gap` for `alerts`, and each time it is live again). */
  reload(): void
  /** A live event of the `alerts` topic: `approval` events are applied, a `gap` refetches. */
  onLive(type: string, data: unknown): void
  /** This console decided: out of the list at once, into the history (the stream confirms). */
  decidedHere(a: Approval, d: { decision: string; reason: string | null; decided_at: string }): void
}

/**
 * The pending requests, kept current by the live stream: the fetched list, plus the requests
 * heard since that fetch began, minus every request heard to end (an end is final), minus those
 * past `expires_at` (a timer re-renders at the next expiry). `enabled` false: nothing is fetched.
 */
export function useApprovals(enabled: boolean): Approvals {
  const fetchedFrom = useRef(0)
  const list = useLoad(
    (signal) => {
      fetchedFrom.current = Date.now()
      return enabled ? loadPending(signal) : Promise.resolve([])
    },
    [enabled],
  )
  const [heard, setHeard] = useState<ReadonlyMap<string, { approval: Approval; at: number }>>(new Map())
  const [ended, setEnded] = useState<ReadonlySet<string>>(new Set())
  const [decided, setDecided] = useState<Decided[]>([])
  const [now, setNow] = useState(Date.now())

  // A fetch answered: what was heard before it began is in its answer (or has ended since).
  useEffect(() => {
    if (!list.data) return
    setHeard((m) => new Map([...m].filter(([, h]) => h.at >= fetchedFrom.current)))
  }, [list.data])

  const end = (jti: string) => setEnded((s) => (s.has(jti) ? s : new Set(s).add(jti)))
  const remember = (d: Decided) => setDecided((list) => [d, ...list.filter((x) => x.override_jti !== d.override_jti)])

  const merged = new Map<string, Approval>()
  for (const a of list.data ?? []) merged.set(a.override_jti, a)
  for (const [jti, h] of heard) merged.set(jti, h.approval)
  const pending = list.data
    ? [...merged.values()]
        .filter((a) => !ended.has(a.override_jti) && Date.parse(a.expires_at) > now)
        .sort((x, y) => y.requested_at.localeCompare(x.requested_at) || y.override_jti.localeCompare(x.override_jti))
    : undefined

  // Re-render when the next request expires (no request to the API: expiry is known ahead).
  const nextExpiry = Math.min(...(pending ?? []).map((a) => Date.parse(a.expires_at)))
  useEffect(() => {
    if (!Number.isFinite(nextExpiry)) return
    const t = setTimeout(() => setNow(Date.now()), Math.max(0, nextExpiry - Date.now()) + 50)
    return () => clearTimeout(t)
  }, [nextExpiry])

  return {
    pending,
    decided,
    error: list.error,
    loading: list.loading,
    reload: list.reload,
    onLive(type, data) {
      if (type === 'gap' && (data as { topic?: unknown } | null)?.topic === 'alerts') list.reload()
      if (type !== 'approval' || !isApprovalEvent(data)) return
      if (data.state === 'pending') {
        const { state: _state, ...approval } = data
        setHeard((m) => new Map(m).set(approval.override_jti, { approval, at: Date.now() }))
        return
      }
      end(data.override_jti)
      if (data.state === 'decided') {
        remember({
          override_jti: data.override_jti,
          event_id: data.event_id,
          decision: data.decision,
          reason: data.reason,
          decided_at: data.decided_at,
          decided_by: data.decided_by,
        })
      }
    },
    decidedHere(a, d) {
      end(a.override_jti)
      setDecided((list) =>
        // The stream may have told it already (with who decided): that one stays.
        list.some((x) => x.override_jti === a.override_jti)
          ? list
          : [{ override_jti: a.override_jti, event_id: a.event_id, ...d, decided_by: null }, ...list],
      )
    },
  }
}
