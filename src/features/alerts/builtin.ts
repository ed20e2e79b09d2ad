/**
 * @module features/alerts/builtin
 * The built-in alert rules, evaluated on every new event of every org (docs/alert-rules.md has
 * the user-facing list). Four are stateless and decided here from the event alone; the fifth,
 * outbound-after-credential-read, needs per-session state and is decided by the consumer from
 * the two facts this module reports (`credentialRead`, `outbound`).
 *
 * Where the evidence sits differs by input shape, so every check reads normalised fields only:
 * v2 `arguments_json` and daemon `metadata.args` arrive parsed in `arguments` (an object such as
 * `{"command": "…"}` or `{"file_path": "…"}`), API-reference items carry `arguments` as a string
 * array (argv or file paths) with `tool_name` the binary's basename.
 *
 * Everything here is linear in the size of the event: no backtracking pattern runs over
 * client-controlled text, so a hostile event cannot stall the consumer.
 */
import type { WireEvent } from '../../bus/bus.ts'
import {
  basename,
  commandOf,
  findDestructive,
  findOutbound,
  isLoopback,
  onlyLoopback,
  parseShell,
  type Segment,
} from './shell.ts'

export type Severity = 'low' | 'medium' | 'high' | 'critical'

export const BUILTIN_RULES = {
  blockedAction: { key: 'builtin:blocked_action', severity: 'high' },
  highRisk: { key: 'builtin:high_risk', severity: 'critical' },
  destructiveCommand: { key: 'builtin:destructive_command', severity: 'critical' },
  credentialRead: { key: 'builtin:credential_read', severity: 'high' },
  outboundAfterCredentialRead: { key: 'builtin:outbound_after_credential_read', severity: 'critical' },
} as const satisfies Record<string, { key: string; severity: Severity }>

/** Risk scores at or above this fire `builtin:high_risk` (SPEC §16.1 puts critical at 81–100). */
export const HIGH_RISK_THRESHOLD = 80

export interface Finding {
  ruleKey: string
  severity: Severity
  title: string
  /** The matching detail for the alert's context (never the whole arguments). */
  detail: string | null
}

export interface EventAnalysis {
  findings: Finding[]
  /** The credential path this event reads, if any. */
  credentialRead: string | null
  /** What this event connects out with (action, tool + URL, or the shell command), if it does. */
  outbound: string | null
}

const BLOCK_DECISIONS = new Set(['block', 'blocked', 'deny', 'denied'])
const SHELL_TOOLS = new Set([
  'bash',
  'sh',
  'zsh',
  'shell',
  'terminal',
  'exec',
  'run_terminal_cmd',
  'execute_command',
  'run_shell_command',
  'run_command',
  'local_shell',
  'shell_exec',
  'exec_command',
  'powershell',
  'pwsh',
])
const SHELL_ACTION_TYPES = new Set(['command', 'process', 'process_exec', 'exec'])
const COMMAND_KEYS = ['command', 'cmd', 'script', 'command_line', 'commandLine']
const NETWORK_ACTION_TYPES = new Set(['http', 'https', 'network', 'network_connect', 'net', 'net_connect'])
const NETWORK_TOOLS = new Set([
  'webfetch',
  'web_fetch',
  'fetch',
  'http_request',
  'http',
  'curl',
  'wget',
  'nc',
  'ncat',
  'netcat',
  'socat',
  'scp',
  'sftp',
  'ftp',
  'telnet',
])
const WRITE_ACTION_TYPES = new Set(['file_write', 'file_delete'])
const WRITE_TOOLS = new Set([
  'write',
  'edit',
  'multiedit',
  'notebookedit',
  'write_file',
  'edit_file',
  'create_file',
  'delete_file',
])
/** Shell commands that name a file without reading its contents. */
const NON_READING_COMMANDS = new Set([
  'ls',
  'rm',
  'touch',
  'mkdir',
  'chmod',
  'chown',
  'stat',
  'test',
  '[',
  'echo',
  'printf',
  'export',
  'which',
])

const DESTRUCTIVE_TITLES: Record<string, string> = {
  rm_recursive_broad: 'recursive delete of a root, home or system directory',
  mkfs: 'filesystem format (mkfs)',
  dd_to_device: 'raw write to a disk device (dd)',
  write_to_device: 'redirect onto a disk device',
  fork_bomb: 'fork bomb',
  chmod_world_writable_broad: 'recursive chmod 777 of a broad path',
  force_push_main: 'force push to main/master',
  drop_database: 'DROP DATABASE',
}

const lower = (s: string | null) => (s ?? '').toLowerCase()

/** How an event is named in alert titles. */
export function eventLabel(e: WireEvent): string {
  return (e.toolName ?? e.action ?? e.actionType ?? 'event').slice(0, 120)
}

export function analyzeEvent(e: WireEvent): EventAnalysis {
  const findings: Finding[] = []
  const label = eventLabel(e)
  if (e.blocked || BLOCK_DECISIONS.has(lower(e.decision))) {
    const r = BUILTIN_RULES.blockedAction
    findings.push({ ruleKey: r.key, severity: r.severity, title: `Blocked action: ${label}`, detail: e.decision })
  }
  if (e.riskScore !== null && e.riskScore >= HIGH_RISK_THRESHOLD) {
    const r = BUILTIN_RULES.highRisk
    findings.push({
      ruleKey: r.key,
      severity: r.severity,
      title: `High-risk action (risk ${e.riskScore}): ${label}`,
      detail: null,
    })
  }
  const command = isShellLike(e) ? commandText(e) : null
  const segments = command === null ? [] : parseShell(command)
  if (command !== null) {
    const d = findDestructive(command, segments)
    if (d) {
      const r = BUILTIN_RULES.destructiveCommand
      findings.push({
        ruleKey: r.key,
        severity: r.severity,
        title: `Destructive command: ${DESTRUCTIVE_TITLES[d.check]}`,
        detail: d.detail,
      })
    }
  }
  const outbound = outboundOf(e, command !== null, segments)
  const credentialRead = credentialReadOf(e, command !== null, segments)
  if (credentialRead !== null) {
    const r = BUILTIN_RULES.credentialRead
    findings.push({
      ruleKey: r.key,
      severity: r.severity,
      title: `Credential file read: ${credentialRead.slice(0, 200)}`,
      detail: credentialRead,
    })
  }
  return { findings, credentialRead, outbound }
}

/** A tool that runs shell commands (Bash, terminal, exec…) or a process-exec action type. */
export function isShellLike(e: WireEvent): boolean {
  return SHELL_TOOLS.has(lower(e.toolName)) || SHELL_ACTION_TYPES.has(lower(e.actionType))
}

/**
 * The command line of a shell-like event: a string argument, `arguments.command` (string or
 * argv array, also `cmd`/`script`), or an API-reference argv array (prefixed with `tool_name`,
 * the binary, unless the array already starts with it).
 */
export function commandText(e: WireEvent): string | null {
  const args = e.arguments
  if (typeof args === 'string') return args
  if (Array.isArray(args)) {
    const argv = args.filter((a): a is string => typeof a === 'string')
    const first = argv[0]
    const tool = e.toolName
    const prefixed =
      tool && (first === undefined || basename(first).toLowerCase() !== tool.toLowerCase()) ? [tool, ...argv] : argv
    return prefixed.length > 0 ? joinArgv(prefixed) : null
  }
  if (args && typeof args === 'object') {
    for (const key of COMMAND_KEYS) {
      const v = (args as Record<string, unknown>)[key]
      if (typeof v === 'string') return v
      if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string')) return joinArgv(v as string[])
    }
  }
  return null
}

/** argv → one command line, quoting words so the lexer gives the same words back. */
function joinArgv(argv: string[]): string {
  return argv.map((w) => (/^[A-Za-z0-9_@%+=:,./~-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ')
}

function outboundOf(e: WireEvent, shell: boolean, segments: Segment[]): string | null {
  const action = e.action ?? ''
  if (action.toLowerCase().startsWith('http:')) {
    // Gen-B daemon form `http:{domain}:{verb}.{slug}`.
    const domain = action.split(':')[1] ?? ''
    return domain === '' || isLoopback(domain) ? null : action.slice(0, 200)
  }
  if (shell) return findOutbound(segments)
  if (isNetworkAction(e)) {
    const strings = stringsOf(e.arguments)
    if (onlyLoopback(strings)) return null
    const url = strings.find((s) => s.includes('://')) ?? strings[0]
    return [eventLabel(e), url?.slice(0, 200)].filter(Boolean).join(' ')
  }
  return null
}

/** A network action that is not a shell command: `http:` / `net:` actions, network action types and tools. */
function isNetworkAction(e: WireEvent): boolean {
  const action = lower(e.action)
  return (
    action.startsWith('http:') ||
    action.startsWith('net:') ||
    NETWORK_ACTION_TYPES.has(lower(e.actionType)) ||
    NETWORK_TOOLS.has(lower(e.toolName))
  )
}

function credentialReadOf(e: WireEvent, shell: boolean, segments: Segment[]): string | null {
  if (WRITE_ACTION_TYPES.has(lower(e.actionType)) || WRITE_TOOLS.has(lower(e.toolName))) return null
  if (shell) {
    for (const seg of segments) {
      const name = commandOf(seg)?.name
      if (name === undefined || NON_READING_COMMANDS.has(name)) continue
      for (const w of seg.words) {
        const hit = credentialPath(w)
        if (hit) return hit
      }
    }
    return null
  }
  // A request body or URL naming a credential file is not a read of it.
  if (isNetworkAction(e)) return null
  for (const s of stringsOf(e.arguments)) {
    const hit = credentialPath(s)
    if (hit) return hit
  }
  return null
}

const MAX_STRINGS = 256
const MAX_STRING_CHARS = 64 * 1024

/** String leaves of an arguments value, in document order, bounded in count and length. */
export function stringsOf(v: unknown, out: string[] = [], depth = 0): string[] {
  if (out.length >= MAX_STRINGS || depth > 32) return out
  if (typeof v === 'string') out.push(v.length > MAX_STRING_CHARS ? v.slice(0, MAX_STRING_CHARS) : v)
  else if (Array.isArray(v)) for (const x of v) stringsOf(x, out, depth + 1)
  else if (v && typeof v === 'object') for (const x of Object.values(v)) stringsOf(x, out, depth + 1)
  return out
}

/**
 * Credential files (case-insensitive, `\` read as `/`), each preceded by a path boundary:
 * `.aws/credentials`, `.netrc`/`_netrc`, `.git-credentials`, `.docker/config.json`, `.kube/config`,
 * gcloud's `credentials.db`/`access_tokens.db`/`application_default_credentials.json`/
 * `legacy_credentials`, Azure's `accessTokens.json`/`msal_token_cache.*`, GitHub CLI's
 * `.config/gh/hosts.yml`; SSH private keys are checked separately (`.ssh/id_*` but not `*.pub`).
 */
const CREDENTIAL_FILES = new RegExp(
  String.raw`(?:^|[^a-z0-9_.-])(` +
    [
      String.raw`\.aws/credentials`,
      String.raw`[._]netrc`,
      String.raw`\.git-credentials`,
      String.raw`\.docker/config\.json`,
      String.raw`\.kube/config`,
      String.raw`\.config/gcloud/(?:credentials\.db|access_tokens\.db|application_default_credentials\.json|legacy_credentials)`,
      String.raw`\.azure/(?:accesstokens\.json|msal_token_cache\.(?:json|bin))`,
      String.raw`\.config/gh/hosts\.yml`,
    ].join('|') +
    String.raw`)(?![a-z0-9_])`,
)

/** The credential file a string names, or null. */
export function credentialPath(raw: string): string | null {
  const s = raw.replace(/\\/g, '/').toLowerCase()
  if (CREDENTIAL_FILES.test(s)) return raw.length <= 200 ? raw : (CREDENTIAL_FILES.exec(s)![1] ?? null)
  return sshPrivateKey(s) ? (raw.length <= 200 ? raw : '.ssh/id_*') : null
}

/** `.ssh/id_<name>` (or `.ssh/id_*`, `.ssh/*`) after a path boundary, not followed by `.pub`. */
function sshPrivateKey(s: string): boolean {
  for (let at = s.indexOf('.ssh/'); at !== -1; at = s.indexOf('.ssh/', at + 5)) {
    if (at > 0 && /[a-z0-9_.-]/.test(s[at - 1]!)) continue
    let end = at + 5
    while (end < s.length && /[a-z0-9_*-]/.test(s[end]!)) end++
    const name = s.slice(at + 5, end)
    if (!(name.startsWith('id_') || name === '*')) continue
    if (s.startsWith('.pub', end) && !/[a-z0-9_]/.test(s[end + 4] ?? '')) continue
    return true
  }
  return false
}
