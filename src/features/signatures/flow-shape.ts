/**
 * @module features/signatures/flow-shape
 * Flow-shape threat signatures (issue 11; docs/flow-shapes.md), the second family beside the
 * indicators. An indicator names one concrete thing (a host, a path) and misses the next attack
 * that uses another; what an attack keeps is its *shape*: read a lot, then send; read a
 * credential, then send; write a file, then run it. So each event of a session becomes one of 12
 * capabilities, the session a 12×12 matrix of transitions between consecutive capabilities, and a
 * signature a target distribution over that matrix, matched with the Jensen–Shannon divergence
 * (bounded, symmetric, and defined where either side is zero, so no smoothing is needed).
 *
 * A capability agrees with the built-in alerts by construction: credential reads and outbound
 * traffic are what `analyzeEvent` says they are, and shell commands go through the same linear
 * lexer. Pure; linear in the event; the matrix is fixed-size, so per-session state is O(1) and
 * matching k shapes is O(k·144).
 */
import type { WireEvent } from '../../bus/bus.ts'
import { analyzeEvent, commandText, isShellLike, type EventAnalysis, type Severity } from '../alerts/builtin.ts'
import { commandOf, findOutbound, parseShell, type Segment } from '../alerts/shell.ts'

export const CAPABILITIES = [
  'read',
  'write',
  'delete',
  'execute',
  'auth',
  'send',
  'fetch',
  'list',
  'spawn',
  'mcp',
  'config',
  'other',
] as const
export type Capability = (typeof CAPABILITIES)[number]
export type TransitionKey = `${Capability}>${Capability}`
const N = CAPABILITIES.length
const CELLS = N * N
const INDEX = new Map<string, number>(CAPABILITIES.map((c, i) => [c, i]))

// ---- events → capabilities ------------------------------------------------------------------

/** Name → capability, null-prototype: a tool called `constructor` is just unknown. */
function table(groups: Partial<Record<Capability, string>>): Record<string, Capability> {
  const t: Record<string, Capability> = Object.create(null)
  for (const [cap, names] of Object.entries(groups)) for (const n of names.split(' ')) t[n] = cap as Capability
  return t
}
/** Agent tools by lower-case name, also as the tool part of `mcp__server__tool`. */
const TOOLS = table({
  read: 'read read_file readfile view view_file open_file notebookread read_many_files get_file_contents',
  write:
    'write edit multiedit notebookedit write_file edit_file create_file replace apply_patch str_replace_editor str_replace_based_edit_tool',
  delete: 'delete_file remove_file',
  list: 'grep glob ls list_dir list_directory list_files directory_tree search_files find_files file_search grep_search codebase_search',
  fetch: 'webfetch web_fetch websearch web_search fetch',
  spawn: 'task agent dispatch_agent spawn_agent subagent new_task',
})
/** Shell commands by basename; anything unknown runs a program, so it is `execute`. */
const COMMANDS = table({
  read: 'cat tac head tail less more bat nl strings xxd hexdump od base64 jq yq awk sed cut sort uniq diff cmp md5sum sha1sum sha256sum shasum zcat history',
  write: 'tee touch mkdir cp mv ln install patch unzip',
  delete: 'rm rmdir unlink shred srm wipe truncate',
  list: 'ls ll dir tree find fd fdfind locate grep egrep fgrep rg ag ack du df pwd which whereis type file stat wc whoami id groups uname hostname ps lsof netstat ss ifconfig ip arp route printenv getent mount lsblk who w last',
  config:
    'chmod chown chgrp chattr setfacl setcap umask crontab visudo usermod useradd passwd systemctl launchctl defaults gsettings sysctl iptables ufw',
  other: 'cd pushd popd echo printf true false : sleep export unset set alias clear date exit wait read test [ [[',
})
const GIT = table({
  read: 'log show diff blame reflog cat-file shortlog',
  list: 'status ls-files ls-tree grep branch',
  write: 'add commit checkout switch restore reset merge rebase stash apply cherry-pick tag init mv',
  delete: 'rm clean',
  config: 'config remote',
  send: 'push',
  fetch: 'fetch pull clone ls-remote',
})
const ACTION_TYPES = table({ read: 'file_read', write: 'file_write', delete: 'file_delete' })
/**
 * In a compound command the most telling segment names the event (`npm test && rm -rf x`
 * deletes); a permission change outranks the run it prepares (`chmod +x s.sh && ./s.sh`).
 */
const RANK: readonly Capability[] = ['other', 'list', 'read', 'execute', 'config', 'write', 'delete', 'fetch', 'send']
const rank = (c: Capability) => RANK.indexOf(c)
const SEND_VERBS = new Set(['post', 'put', 'patch', 'delete'])
const CURL_DATA = /^--(?:data(?:-raw|-binary|-urlencode|-ascii)?|form(?:-string)?|upload-file|json)(?:=|$)|^-[A-Za-z]*[dFT]/
const WGET_DATA = /^--(?:post-data|post-file|body-data|body-file)(?:=|$)/
const lower = (v: unknown) => (typeof v === 'string' ? v.toLowerCase() : '')

/**
 * The capability of one event. Precedence: non-loopback traffic (`send` when it carries data,
 * else `fetch`), a credential read (`auth`), the shell command, the tool, the action type. Pass
 * the event's `analyzeEvent` result when you have it (the alerts consumer does). Never throws.
 */
export function capabilityOf(e: WireEvent, analysis?: Pick<EventAnalysis, 'credentialRead' | 'outbound'>): Capability {
  try {
    return classify(e, analysis ?? analyzeEvent(e))
  } catch {
    return 'other'
  }
}

function classify(e: WireEvent, a: Pick<EventAnalysis, 'credentialRead' | 'outbound'>): Capability {
  const action = lower(e.action)
  if (action.startsWith('http:')) {
    // `http:{domain}:{verb}.{slug}`: only the verbs that carry a body by definition send.
    if (a.outbound === null) return 'other'
    return SEND_VERBS.has((action.split(':')[2] ?? '').split('.')[0]!) ? 'send' : 'fetch'
  }
  const tool = lower(e.toolName)
  // `mcp__filesystem__read_file` reads like `read_file`, `mcp__x__execute_command` runs a command.
  const cut = tool.startsWith('mcp__') ? tool.indexOf('__', 5) : -2
  const mcp = cut === -2 ? null : cut === -1 ? '' : tool.slice(cut + 2)
  const shell = isShellLike(e) || (mcp !== null && isShellLike({ ...e, toolName: mcp }))
  const text = a.outbound !== null || shell ? commandText(e) : null
  const segments = text === null ? [] : parseShell(text)
  // The built-in alerts do not parse MCP shell tools; their traffic is judged the same way here.
  if (a.outbound !== null || (shell && findOutbound(segments) !== null)) {
    if (segments.some((s) => findOutbound([s]) !== null && sendsData(s))) return 'send'
    const args = e.arguments as Record<string, unknown> | null
    const body = segments.length === 0 && !!args && typeof args === 'object' && !Array.isArray(args)
    return body && (SEND_VERBS.has(lower(args.method)) || args.body !== undefined || args.data !== undefined) ? 'send' : 'fetch'
  }
  if (a.credentialRead !== null) return 'auth'
  if (shell) return segments.length === 0 ? 'execute' : shellCapability(segments)
  return TOOLS[mcp ?? tool] ?? (mcp !== null ? 'mcp' : (ACTION_TYPES[lower(e.actionType)] ?? 'other'))
}

/** Whether an outbound segment carries data out: curl -d/-F/-T, wget --post-*, scp to a host, raw sockets. */
function sendsData(seg: Segment): boolean {
  const cmd = commandOf(seg)
  if (!cmd) return true // `… > /dev/tcp/host/port`
  const { name, args } = cmd
  if (name === 'scp') {
    const operands = args.filter((w) => !w.startsWith('-'))
    return operands.length >= 2 && /^[^/]*:/.test(operands[operands.length - 1]!)
  }
  if (name !== 'curl' && name !== 'wget') return true
  return args.some((w, i) => {
    if (name === 'curl' ? CURL_DATA.test(w) : WGET_DATA.test(w)) return true
    const method = /^(?:-X|--request|--method)=?(.*)$/.exec(w)
    return method !== null && SEND_VERBS.has((method[1] || args[i + 1] || '').toLowerCase())
  })
}

function shellCapability(segments: Segment[]): Capability {
  let best: Capability = 'other'
  for (const seg of segments) {
    const cap = segmentCapability(seg)
    if (rank(cap) > rank(best)) best = cap
  }
  return best
}

function segmentCapability(seg: Segment): Capability {
  const toFile = seg.redirects.some((r) => !r.startsWith('/dev/'))
  const cmd = commandOf(seg)
  // `> log` and `: > log` empty a file.
  if (!cmd || (cmd.name === ':' && toFile)) return toFile ? 'delete' : 'other'
  const { name, args } = cmd
  let cap: Capability = COMMANDS[name] ?? 'execute'
  if (name === 'git') {
    let i = 0
    while (i < args.length && args[i]!.startsWith('-')) i += args[i] === '-C' || args[i] === '-c' ? 2 : 1
    cap = GIT[args[i] ?? ''] ?? 'execute'
    if (args[i] === 'remote' && (args.length === i + 1 || args[i + 1] === '-v')) cap = 'list'
  } else if ((name === 'sed' || name === 'perl') && args.some((w) => /^-[A-Za-z]*i/.test(w) || w.startsWith('--in-place'))) {
    cap = 'write'
  } else if (name === 'find') {
    const exec = args.findIndex((w) => w === '-exec' || w === '-execdir' || w === '-ok')
    if (args.includes('-delete') || (exec !== -1 && COMMANDS[args[exec + 1] ?? ''] === 'delete')) cap = 'delete'
  } else if (
    // Clearing or switching off shell history covers tracks without an `rm`.
    (name === 'history' && args.some((w) => /^-[A-Za-z]*[cd]/.test(w))) ||
    ((name === 'unset' || name === 'export') && args.some((w) => /^HIST(?:FILE|SIZE|FILESIZE)(?:=|$)/.test(w)))
  ) {
    cap = 'delete'
  }
  // What only reads or prints, sent into a file, writes that file; a build's log is still a build.
  return toFile && rank(cap) < rank('execute') ? 'write' : cap
}

// ---- the flow matrix ------------------------------------------------------------------------

/** One session's transition counts (`counts[from * 12 + to]`, in CAPABILITIES order) and last capability. */
export interface Flow {
  last: number | null
  counts: Uint32Array
}

/** How a flow is stored (a jsonb value): the last capability and the non-zero transitions. */
export interface FlowJson {
  last: Capability | null
  transitions: Partial<Record<TransitionKey, number>>
}

export function emptyFlow(): Flow {
  return { last: null, counts: new Uint32Array(CELLS) }
}

/** Records the session's next event; returns the transition it added (none for the first). */
export function addEvent(flow: Flow, cap: Capability): TransitionKey | null {
  const to = INDEX.get(cap) ?? N - 1
  const from = flow.last
  flow.last = to
  if (from === null) return null
  if (flow.counts[from * N + to]! < 0xffffffff) flow.counts[from * N + to]!++
  return `${CAPABILITIES[from]!}>${CAPABILITIES[to]!}`
}

export function flowTotal(flow: Flow): number {
  let total = 0
  for (let i = 0; i < CELLS; i++) total += flow.counts[i]!
  return total
}

export function flowToJson(flow: Flow): FlowJson {
  const transitions: Partial<Record<TransitionKey, number>> = {}
  for (let i = 0; i < CELLS; i++) {
    if (flow.counts[i]! > 0) transitions[`${CAPABILITIES[Math.floor(i / N)]!}>${CAPABILITIES[i % N]!}`] = flow.counts[i]!
  }
  return { last: flow.last === null ? null : CAPABILITIES[flow.last]!, transitions }
}

/** The stored form back. What it does not recognise is dropped: a damaged row restarts, never throws. */
export function flowFromJson(v: unknown): Flow {
  const flow = emptyFlow()
  if (!v || typeof v !== 'object') return flow
  const { last, transitions } = v as { last?: unknown; transitions?: unknown }
  flow.last = INDEX.get(lower(last)) ?? null
  if (!transitions || typeof transitions !== 'object') return flow
  for (const [key, n] of Object.entries(transitions).slice(0, CELLS)) {
    const cell = cellOf(key)
    if (cell !== null && Number.isSafeInteger(n) && (n as number) > 0) flow.counts[cell] = Math.min(n as number, 0xffffffff)
  }
  return flow
}

function cellOf(key: string): number | null {
  const gt = key.indexOf('>')
  const from = INDEX.get(key.slice(0, gt))
  const to = INDEX.get(key.slice(gt + 1))
  return gt === -1 || from === undefined || to === undefined ? null : from * N + to
}

// ---- divergence and matching ----------------------------------------------------------------

/**
 * Jensen–Shannon divergence of two non-negative vectors (normalised here), base 2, so in [0, 1]:
 * ½·KL(P‖M) + ½·KL(Q‖M) with M = ½(P+Q). Negative or non-finite entries count as 0; an all-zero
 * side gives 1 (no flow has no shape).
 */
export function jsd(p: ArrayLike<number>, q: ArrayLike<number>): number {
  const len = Math.max(p.length, q.length)
  const at = (v: ArrayLike<number>, i: number) => (i < v.length && Number.isFinite(v[i]) && v[i]! > 0 ? v[i]! : 0)
  let sp = 0
  let sq = 0
  for (let i = 0; i < len; i++) {
    sp += at(p, i)
    sq += at(q, i)
  }
  if (!(sp > 0 && sq > 0 && Number.isFinite(sp) && Number.isFinite(sq))) return 1
  let d = 0
  for (let i = 0; i < len; i++) {
    const a = at(p, i) / sp
    const b = at(q, i) / sq
    if (a > 0) d += a * Math.log2((2 * a) / (a + b))
    if (b > 0) d += b * Math.log2((2 * b) / (a + b))
  }
  return Math.min(1, Math.max(0, d / 2))
}

export interface FlowShape {
  id: string
  name: string
  severity: Severity
  maxJsd: number
  /** Agent types it applies to (case-insensitive); empty: all. */
  agentTypes: string[]
  /** `"from>to"` → weight, any scale (normalised when matched). */
  shape: Record<string, number>
  /** A session matches only once it has made this many transitions. */
  minTransitions: number
}

export interface ShapeMatch {
  shape: FlowShape
  jsd: number
  similarity: number
}

/** Target distributions (`from>to:weight`), calibrated as docs/flow-shapes.md shows. */
const TARGETS: Record<string, string> = {
  'QT-SIG-001': 'read>read:.3 read>send:.4 send>read:.2 list>read:.1',
  'QT-SIG-002': 'auth>send:.65 list>auth:.1 read>auth:.1 auth>auth:.1 send>auth:.05',
  'QT-SIG-003':
    'config>execute:.45 write>config:.2 fetch>config:.15 write>execute:.05 fetch>write:.05 execute>execute:.05 execute>send:.05',
  'QT-SIG-004': 'list>list:.7 list>read:.1 read>list:.1 list>auth:.05 auth>list:.05',
  'QT-SIG-005': 'read>delete:.4 delete>delete:.3 delete>read:.15 read>read:.1 list>read:.05',
}

export const BUILTIN_SHAPES: FlowShape[] = [
  builtin('QT-SIG-001', 'Exfiltration', 'critical', 0.3, 3),
  builtin('QT-SIG-002', 'Credential Relay', 'critical', 0.25, 1),
  builtin('QT-SIG-003', 'Staging + Execution', 'high', 0.3, 2),
  builtin('QT-SIG-004', 'Reconnaissance', 'medium', 0.35, 5),
  builtin('QT-SIG-005', 'Cover Tracks', 'high', 0.25, 2),
]

function builtin(id: string, name: string, severity: Severity, maxJsd: number, minTransitions: number): FlowShape {
  const shape: Record<string, number> = {}
  for (const pair of TARGETS[id]!.split(' ')) shape[pair.split(':')[0]!] = Number(pair.split(':')[1])
  return { id, name, severity, maxJsd, agentTypes: [], shape, minTransitions }
}

/**
 * The shapes this session's flow matches (scope, minTransitions, JSD ≤ maxJsd), closest first.
 * `skip`: ids already matched in the session, not worth measuring again (issue 13: the alerts
 * consumer measured every shape against every event, a third of its CPU).
 */
export function matchShapes(
  flow: Flow,
  shapes: readonly FlowShape[],
  agentType: string | null,
  skip?: ReadonlySet<string>,
): ShapeMatch[] {
  const total = flowTotal(flow)
  const agent = lower(agentType)
  const out: ShapeMatch[] = []
  for (const shape of shapes) {
    if (total === 0 || total < shape.minTransitions || skip?.has(shape.id)) continue
    if (shape.agentTypes.length > 0 && (agent === '' || !shape.agentTypes.some((t) => lower(t) === agent))) continue
    const d = divergence(flow.counts, total, targetOf(shape))
    if (d <= shape.maxJsd) out.push({ shape, jsd: d, similarity: 1 - d })
  }
  return out.sort((a, b) => a.jsd - b.jsd || a.shape.id.localeCompare(b.shape.id))
}

/** A shape's target, normalised as `jsd` normalises it; null when it has no weight (never matches). */
const targets = new WeakMap<FlowShape, Float64Array | null>()
function targetOf(shape: FlowShape): Float64Array | null {
  let t = targets.get(shape)
  if (t !== undefined) return t
  const raw = new Float64Array(CELLS)
  for (const key of Object.keys(shape.shape)) {
    const cell = cellOf(key)
    const w = shape.shape[key]!
    if (cell !== null && Number.isFinite(w) && w > 0) raw[cell] = w
  }
  let sum = 0
  for (let i = 0; i < CELLS; i++) sum += raw[i]!
  t = sum > 0 && Number.isFinite(sum) ? raw.map((w) => w / sum) : null
  targets.set(shape, t)
  return t
}

/** `jsd(counts, target)` for a flow (non-negative counts summing to `total` > 0): the same sums in the same order. */
function divergence(counts: Uint32Array, total: number, target: Float64Array | null): number {
  if (target === null) return 1
  let d = 0
  for (let i = 0; i < CELLS; i++) {
    const a = counts[i]! / total
    const b = target[i]!
    if (a > 0) d += a * Math.log2((2 * a) / (a + b))
    if (b > 0) d += b * Math.log2((2 * b) / (a + b))
  }
  return Math.min(1, Math.max(0, d / 2))
}

// ---- user-defined shapes --------------------------------------------------------------------

export interface ShapeProblem {
  /** RFC 6901 pointer into the body (`/shape/read>send`); `/` is the body itself, as in our 422s. */
  pointer: string
  detail: string
}
export type ParsedShape = Pick<FlowShape, 'shape' | 'maxJsd' | 'agentTypes' | 'minTransitions'>

const BODY_KEYS = new Set(['shape', 'max_jsd', 'agent_types', 'min_transitions'])
const MAX_AGENT_TYPES = 32
const MAX_MIN_TRANSITIONS = 1_000_000
/** One transition alone is too common to be a threat unless the author says so. */
const DEFAULT_MIN_TRANSITIONS = 2
const escape = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1')

/** Validates a custom flow-shape body `{shape, max_jsd, agent_types?, min_transitions?}`. */
export function parseShape(input: unknown): { ok: true; value: ParsedShape } | { ok: false; problems: ShapeProblem[] } {
  const problems: ShapeProblem[] = []
  const fail = (pointer: string, detail: string): false => {
    problems.push({ pointer, detail })
    return false
  }
  if (!input || typeof input !== 'object' || Array.isArray(input)) {
    return { ok: false, problems: [{ pointer: '/', detail: 'must be an object' }] }
  }
  const body = input as Record<string, unknown>
  for (const key of Object.keys(body)) if (!BODY_KEYS.has(key)) fail(`/${escape(key)}`, 'unknown property')

  const shape: Record<string, number> = {}
  const raw = body.shape as Record<string, unknown> | undefined
  const keys = raw && typeof raw === 'object' && !Array.isArray(raw) ? Object.keys(raw) : null
  if (keys === null) fail('/shape', 'is required: an object of "from>to" transitions to weights')
  else if (keys.length === 0 || keys.length > CELLS) fail('/shape', `must have 1 to ${CELLS} transitions, not ${keys.length}`)
  else {
    let valid = true
    let sum = 0
    for (const key of keys) {
      const w = raw![key]
      if (cellOf(key) === null) valid = fail(`/shape/${escape(key)}`, `must be "from>to", each one of ${CAPABILITIES.join(', ')}`)
      else if (typeof w !== 'number' || !Number.isFinite(w) || w < 0)
        valid = fail(`/shape/${escape(key)}`, 'must be a number ≥ 0')
      else {
        shape[key] = w
        sum += w
      }
    }
    if (valid && !(sum > 0 && Number.isFinite(sum))) fail('/shape', 'weights must not all be 0 (nor overflow)')
  }

  const maxJsd = body.max_jsd
  if (typeof maxJsd !== 'number' || !(maxJsd > 0 && maxJsd <= 1)) fail('/max_jsd', 'is required: a number in (0, 1]')

  const agentTypes: string[] = []
  const list = body.agent_types ?? []
  if (!Array.isArray(list) || list.length > MAX_AGENT_TYPES) {
    fail('/agent_types', `must be an array of at most ${MAX_AGENT_TYPES} strings`)
  } else {
    list.forEach((t, i) => {
      const v = typeof t === 'string' ? t.trim().toLowerCase() : ''
      if (v === '' || v.length > 128) fail(`/agent_types/${i}`, 'must be a string of 1–128 characters')
      else if (!agentTypes.includes(v)) agentTypes.push(v)
    })
  }

  const min = body.min_transitions ?? DEFAULT_MIN_TRANSITIONS
  if (!Number.isInteger(min) || (min as number) < 1 || (min as number) > MAX_MIN_TRANSITIONS) {
    fail('/min_transitions', `must be an integer from 1 to ${MAX_MIN_TRANSITIONS}`)
  }
  if (problems.length > 0) return { ok: false, problems }
  return { ok: true, value: { shape, maxJsd: maxJsd as number, agentTypes, minTransitions: min as number } }
}
