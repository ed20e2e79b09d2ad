/**
 * @module console/ui/pages/events-parts
 * What the Events and Sessions pages both show of an event: its decision and risk as badges, a
 * one-line summary of its arguments, the arguments pretty-printed, machine names, and a causal
 * chain drawn as a nested list (tool call → process → files and connections, docs/causal-chain.md).
 */
import type { ComponentChildren } from 'preact'
import { useCallback, useRef } from 'preact/hooks'
import { api, type Ok, type Schema } from '../api/client.ts'
import { Badge } from '../components/common.tsx'
import { useLoad } from '../hooks.ts'
import { href } from '../router.ts'

export type EventView = Ok<'/v1/events', 'get'>['events'][number]
export type ChainNode = Schema<'ChainNode'>
type Machine = Ok<'/v1/machines', 'get'>['machines'][number]

const stampFormat = new Intl.DateTimeFormat(undefined, {
  month: 'short',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hourCycle: 'h23',
})
/** A table's time: "Dec 07, 04:06:12" (local time; the full instant is in the title and the detail). */
export const stamp = (iso: string): string => stampFormat.format(new Date(iso))

const fullFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: 'short',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hourCycle: 'h23',
})
/** "Dec 07, 2026, 04:06:12": the 24-hour clock everywhere on these pages, as in the tables. */
export const fullTime = (iso: string | null | undefined): string => (iso ? fullFormat.format(new Date(iso)) : '—')

/** Decisions are free text from clients: only the ones we know get a colour (and a safe class). */
const DECISION_KIND: Record<string, string> = { allow: 'allow', block: 'block', deny: 'block', denied: 'block', blocked: 'block' }

export function DecisionBadge({ decision, blocked }: { decision: string | null; blocked?: boolean }) {
  if (!decision && !blocked) return <span class="hint">—</span>
  const text = decision ?? 'blocked'
  return <Badge kind={DECISION_KIND[text.toLowerCase()] ?? (blocked ? 'block' : 'muted')}>{text}</Badge>
}

export function RiskBadge({ score, band }: { score: number | null; band: string | null }) {
  if (score === null) return <span class="hint">unscored</span>
  return (
    <Badge kind={band ?? 'muted'}>
      {score} {band}
    </Badge>
  )
}

/** The argument object a client sent, parsed when it came as a JSON string. */
export function argumentsOf(args: unknown): unknown {
  if (typeof args === 'string') {
    const t = args.trim()
    if (t.startsWith('{') || t.startsWith('[')) {
      try {
        return JSON.parse(t)
      } catch {
        return args
      }
    }
  }
  return args
}

/** The fields that say most about a call, first: what a responder scans the table for. */
const TELLING = ['command', 'file_path', 'path', 'url', 'pattern', 'query', 'description', 'prompt']

/** One line: `rm -rf /`, `/Users/dev/.aws/credentials`, `pattern=**\/*.tf`. */
export function argSummary(args: unknown, max = 240): string {
  const a = argumentsOf(args)
  let s: string
  if (a === null || a === undefined) s = ''
  else if (typeof a === 'string') s = a
  else if (Array.isArray(a)) s = a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' ')
  else if (typeof a === 'object') {
    const o = a as Record<string, unknown>
    const key = TELLING.find((k) => typeof o[k] === 'string')
    const rest = Object.entries(o).filter(([k]) => k !== key)
    s = [key ? String(o[key]) : '', ...rest.map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)]
      .filter(Boolean)
      .join('  ')
  } else s = String(a)
  s = s.replace(/\s+/g, ' ').trim()
  return s.length > max ? `${s.slice(0, max - 1)}…` : s
}

export function prettyArguments(args: unknown): string {
  const a = argumentsOf(args)
  if (a === null || a === undefined) return '(none)'
  return typeof a === 'string' ? a : JSON.stringify(a, null, 2)
}

/** What a causal link means, in words (docs/causal-chain.md, "The rule"). */
export const LINK_TEXT: Record<string, string> = {
  process: 'done by this process',
  process_tree: 'started by this process',
  tool_use_id: 'same tool-use id',
  time_window: 'started just after this call',
}

/** "Bash", or for OS events "PROCESS_EXEC curl". */
export function actionTitle(e: { action_type: string | null; tool_name: string | null }): string {
  if (e.action_type === 'tools/call' || !e.action_type) return e.tool_name ?? e.action_type ?? 'event'
  return e.tool_name ? `${e.action_type} ${e.tool_name}` : e.action_type
}

/**
 * Hostnames by machine id, from the first page of `/v1/machines` (200, the API's page). An id the
 * list does not know (a machine enrolled after the page opened) asks again, at most every 30 s.
 */
export function useMachines() {
  const loaded = useLoad(async (signal) => {
    const r = await api.get('/v1/machines', { query: { limit: 200 }, signal })
    return r.machines
  }, [])
  const asked = useRef(0)
  const byId = new Map<string, Machine>((loaded.data ?? []).map((m) => [m.id, m]))
  const hostname = useCallback(
    (id: string | null): string | null => {
      if (!id) return null
      const m = byId.get(id)
      if (!m && loaded.data && Date.now() - asked.current > 30_000) {
        asked.current = Date.now()
        // Called while rendering: the reload (a state change) waits for the render to end.
        setTimeout(loaded.reload, 0)
      }
      return m?.hostname ?? null
    },
    // byId is rebuilt from loaded.data on each render; the data is the real dependency.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [loaded.data],
  )
  return { machines: loaded.data ?? [], hostname }
}

export function MachineLink({ id, hostname }: { id: string | null; hostname: string | null }) {
  if (!id) return <span class="hint">no machine</span>
  return (
    <a href={href(['fleet', id])} title={id}>
      {hostname ?? `${id.slice(0, 8)}…`}
    </a>
  )
}

export interface ChainProps {
  nodes: readonly ChainNode[]
  /** The event to mark (the one a page is about, or `?at=`). */
  current?: string | null
  /** The session whose timeline this is: events of other sessions say which they belong to. */
  session?: string | null
  /** Where an event's own link goes. */
  link(id: string): string
  /** Extra content per node (e.g. an "open" link). */
  extra?(n: ChainNode): ComponentChildren
  /** The outermost list (not indented). */
  root?: boolean
  label?: string
}

/** A causal tree as nested lists: each event with what it caused beneath it. */
export function ChainTree(p: ChainProps) {
  if (p.nodes.length === 0) return null
  return (
    <ul class={p.root ? 'chain chain-root' : 'chain'} aria-label={p.label}>
      {p.nodes.map((n) => (
        <ChainItem key={n.id} {...p} n={n} />
      ))}
    </ul>
  )
}

function ChainItem(p: ChainProps & { n: ChainNode }) {
  const { n } = p
  const isCurrent = p.current === n.id
  return (
    <li id={`ev-${n.id}`} class={isCurrent ? 'chain-current' : undefined} tabIndex={isCurrent ? -1 : undefined}>
      <ChainLine e={n} current={isCurrent} session={p.session} link={p.link} />
      {p.extra?.(n)}
      <ChainTree {...p} root={false} label={undefined} nodes={n.children} />
    </li>
  )
}

type LineEvent = Pick<
  EventView,
  | 'id'
  | 'action_type'
  | 'tool_name'
  | 'arguments'
  | 'decision'
  | 'blocked'
  | 'risk_score'
  | 'risk_band'
  | 'timestamp'
  | 'session_id'
  | 'parent_link'
>

/** One event of a chain: when, what, with what, how it links to its parent, decision and risk. */
export function ChainLine(p: { e: LineEvent; current?: boolean; session?: string | null | undefined; link(id: string): string }) {
  const { e } = p
  const summary = argSummary(e.arguments, 160)
  return (
    <div class={`chain-line${e.blocked ? ' chain-blocked' : ''}`}>
      <time dateTime={e.timestamp} class="chain-time" title={e.timestamp}>
        {stamp(e.timestamp)}
      </time>
      <a href={p.link(e.id)} class="chain-what" aria-current={p.current ? 'true' : undefined}>
        {actionTitle(e)}
      </a>
      {summary && <code class="chain-args">{summary}</code>}
      {e.parent_link && <span class="hint chain-link">{LINK_TEXT[e.parent_link] ?? e.parent_link}</span>}
      {p.session && e.session_id && e.session_id !== p.session && (
        <span class="hint">
          in <a href={href(['sessions', e.session_id])}>{e.session_id}</a>
        </span>
      )}
      <DecisionBadge decision={e.decision} blocked={e.blocked} />
      <RiskBadge score={e.risk_score} band={e.risk_band} />
      {p.current && <strong class="chain-here">this event</strong>}
    </div>
  )
}

/** Finds an event in a chain forest (for `?at=`). */
export function findIn(nodes: readonly ChainNode[], id: string): boolean {
  for (const n of nodes) if (n.id === id || findIn(n.children, id)) return true
  return false
}
