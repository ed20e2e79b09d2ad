/**
 * @module features/ingest/redaction
 * Data residency: secrets are removed from event content before storage, even when a daemon sends
 * them (the cloud keeps metadata, not credentials). Each match becomes `[REDACTED:<kind>]`; the
 * caller marks the event redacted and counts (per event, and per org and day in
 * `org_ingest_stats`).
 *
 * Two families:
 *
 * - shapes that are secrets by construction (provider key formats, PEM private key blocks, JWTs,
 *   our own tokens, the password of a URL), never guesses from entropy, which would mangle
 *   hashes and ids that are not secrets;
 * - secrets by name (issue 14: `DB_PASSWORD=hunter2` in a tool's output was stored verbatim): the
 *   value of an assignment `name=value` or `name: value` (also quoted, JSON-style and
 *   `--name value`) whose name ends in a secret word (password, passwd, passphrase, pass, secret,
 *   token, api key, access key, private key, credentials, …), and the credential of an
 *   `Authorization` header. Values that are plainly not secrets survive: references
 *   (`$DB_PASSWORD`, `${TOKEN}`, `%PASS%`, `process.env.TOKEN`, `getToken()`), placeholders
 *   (`***`, `<password>`, `xxx`), type names (`password: string`) and values under 3 characters.
 *
 * Every pattern is linear in the input (issue 14): starts are anchored by a one-character
 * look-behind so a run of look-alike characters is tried once, not once per position, and no
 * quantifier inside a look-behind is unbounded. The old combined pattern took 10 s on 128 KiB of
 * spaces after `sk-`.
 */

export const SECRET_KINDS = [
  'private_key',
  'aws_access_key',
  'aws_secret_key',
  'gcp_api_key',
  'github_token',
  'gitlab_token',
  'slack_token',
  'stripe_key',
  'llm_api_key',
  'quint_token',
  'jwt',
  'url_password',
  'authorization',
  'secret_assignment',
  'secret_field',
] as const

export type SecretKind = (typeof SECRET_KINDS)[number]

export interface Redacted {
  text: string
  count: number
}

/** Counts per kind, added to by every redaction of one item (metrics: `quint_ingest_redactions_total`). */
export type KindCounts = Partial<Record<SecretKind, number>>

const marker = (kind: SecretKind) => `[REDACTED:${kind}]`

/** Provider formats: fixed prefixes, so the literal alternation below finds candidates cheaply. */
const SHAPES: [SecretKind, RegExp][] = [
  ['aws_access_key', /\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b/g],
  ['gcp_api_key', /\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])/g],
  ['github_token', /\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b/g],
  ['gitlab_token', /\bglpat-[A-Za-z0-9_-]{20,}/g],
  ['slack_token', /\bxox[abprs]-[A-Za-z0-9-]{10,}/g],
  ['stripe_key', /\b(?:sk|rk)_live_[A-Za-z0-9]{16,}/g],
  ['llm_api_key', /\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{32,}/g],
  ['quint_token', /\b(?:qt_[a-z]+_|qk_)[A-Za-z0-9._-]{16,}/g],
  ['jwt', /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}/g],
]
const SHAPE_ANCHORS = /AKIA|ASIA|ABIA|ACCA|AIza|gh[pousr]_|github_pat_|glpat-|xox[abprs]-|_live_|sk-|qt_|qk_|eyJ/

const PEM_BEGIN = /-----BEGIN (?:[A-Z0-9]+ ){0,4}PRIVATE KEY-----/g
const PEM_END = /-----END (?:[A-Z0-9]+ ){0,4}PRIVATE KEY-----/g
/** `scheme://user:password@`; the password may itself hold `@` (the last one before the host counts). */
const URL_PASSWORD = /(?<![a-z0-9+.-])([a-z][a-z0-9+.-]{0,31}:\/\/[^\s:@/?#]{0,256}:)([^\s/?#]{1,256})(?=@)/gi
const AWS_SECRET = /(?<![A-Za-z0-9_])(aws_secret_access_key["']?[ \t]{0,8}[=:][ \t]{0,8}["']?)([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])/gi

/**
 * A name followed by `=` or `:` (optionally after a closing quote), or a long flag followed by
 * spaces. The value is read by hand (readValue) so that a non-secret name's value is scanned
 * again for assignments of its own (`url=https://h/?token=…`).
 */
const ASSIGNMENT = new RegExp(
  String.raw`(?<![A-Za-z0-9_.-])(?:--([A-Za-z][A-Za-z0-9_.-]{0,127})[ \t]+|([A-Za-z0-9_.-]{1,128})["']?[ \t]{0,8}[=:]=*[ \t]{0,8})`,
  'g',
)
const ASSIGNMENT_ANCHOR = /pass|pwd|secret|token|key|credential|authori[sz]ation/i

/** Last word of a name (lower case) that makes it secret; `pwd` needs a prefix (`PWD=/home/x` is a directory). */
const SECRET_LAST = new Set(['password', 'passwd', 'passphrase', 'pass', 'secret', 'token', 'apikey', 'credential', 'credentials'])
/** Last two words. */
const SECRET_PAIRS = new Set([
  'api key', 'access key', 'secret key', 'private key', 'auth key', 'signing key', 'master key', 'encryption key',
  'account key',
])

/** Words of a name: `DB_PASSWORD`, `dbPassword`, `x-api-key`, `spring.datasource.password`. */
function words(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0)
}

/** Whether a field or variable name says its value is a secret (`api_key`, `DB_PASSWORD`, `clientSecret`). */
export function isSecretName(name: string): boolean {
  if (name.length > 128 || !ASSIGNMENT_ANCHOR.test(name)) return false
  let known = nameCache.get(name)
  if (known === undefined) {
    // Bounded: a flood of distinct names only costs the computation again.
    if (nameCache.size >= 4096) nameCache.clear()
    known = secretWords(name)
    nameCache.set(name, known)
  }
  return known
}

const nameCache = new Map<string, boolean>()

function secretWords(name: string): boolean {
  const w = words(name)
  const last = w.at(-1)
  if (last === undefined) return false
  if (SECRET_LAST.has(last)) return true
  if (last === 'pwd') return w.length > 1
  if (w.length > 1 && SECRET_PAIRS.has(`${w.at(-2)} ${last}`)) return true
  return w.length > 2 && w.slice(-3).join(' ') === 'secret key base'
}

function isAuthorizationName(name: string): boolean {
  const w = words(name)
  return w.at(-1) === 'authorization'
}

const NOT_SECRET_WORDS = new Set([
  'null', 'none', 'nil', 'undefined', 'true', 'false', 'yes', 'no', 'on', 'off', 'empty', 'string', 'str', 'number',
  'int', 'integer', 'bool', 'boolean', 'any', 'unknown', 'object', 'bytes', 'optional', 'required', 'redacted',
  'hidden', 'masked', 'secret', 'password', 'token', 'omitted', 'n/a',
])

/**
 * A value that names or stands for a secret rather than being one. `code`: the value may be a
 * code reference (`process.env.TOKEN`, `getToken()`, `os.environ[…]`), which is only assumed
 * after a spaced separator (`token = …`, `secret: …`): in `.env` files and query strings
 * (`access_token=ya29.a0Af…`) a dotted value is the secret itself.
 */
export function isPlaceholder(value: string, code = false): boolean {
  const v = value.trim()
  if (v.length < 3) return true
  if (/^(?:\$|%[A-Za-z_]|\{\{|<|\[REDACTED|\.\.\.|…)/.test(v)) return true
  if (/^(?:\*+|[xX]{3,}|#+|-+)$/.test(v)) return true
  if (NOT_SECRET_WORDS.has(v.toLowerCase())) return true
  if (!code) return false
  // process.env.TOKEN, config.password, getToken(), os.environ[…]: code reading a secret, not one.
  if (/^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+$/.test(v)) return true
  if (/^[A-Za-z_$][\w$.]*[([<]/.test(v)) return true
  return false
}

/** Characters that end an unquoted value: white space, quotes, separators, closing brackets. */
const VALUE_END = new Set([...' \t\r\n\f\v"\'`&;,)}]>'].map((c) => c.charCodeAt(0)))

/** The value at `i`: quoted (to its closing quote on the same line) or a run up to a delimiter. */
function readValue(text: string, i: number): { start: number; end: number } | null {
  const q = text[i]
  if (q === '"' || q === "'" || q === '`') {
    for (let j = i + 1; j < text.length && j - i <= 4096; j++) {
      const c = text[j]
      if (c === '\\') j++
      else if (c === q) return { start: i + 1, end: j }
      else if (c === '\n') break
    }
    return null
  }
  let j = i
  while (j < text.length && j - i < 4096 && !VALUE_END.has(text.charCodeAt(j))) j++
  if (j === i) return null
  return { start: i, end: j }
}

function redactAssignments(text: string, counts: KindCounts): string {
  if (!ASSIGNMENT_ANCHOR.test(text)) return text
  let out = ''
  let copied = 0
  ASSIGNMENT.lastIndex = 0
  for (let m = ASSIGNMENT.exec(text); m !== null; m = ASSIGNMENT.exec(text)) {
    const flag = m[1]
    const name = flag ?? m[2]!
    const after = m.index + m[0].length
    const auth = flag === undefined && isAuthorizationName(name)
    if (!auth && !isSecretName(name)) continue
    let valueAt = after
    if (auth) {
      // `Authorization: Bearer <credential>`: the scheme stays visible. The credential runs to the
      // closing quote when the header is quoted (`-H "Authorization: …"`, `"Authorization": "…"`),
      // else to the end of the line: Digest and AWS4 credentials hold spaces and quotes.
      const quotedValue = text[valueAt] === '"' || text[valueAt] === "'"
      const before = text[m.index - 1]
      const closing = quotedValue ? text[valueAt]! : before === '"' || before === "'" ? before : '\n'
      const from = valueAt + (quotedValue ? 1 : 0)
      const scheme = /^[A-Za-z][A-Za-z0-9-]{0,31} +(?=\S)/.exec(text.slice(from, from + 40))
      if (scheme) {
        const start = from + scheme[0].length
        const v = readValue(text, start)
        if (!v || isPlaceholder(text.slice(v.start, v.end))) continue
        const end = Math.max(v.end, closingQuote(text, start, closing))
        out += text.slice(copied, start) + marker('authorization')
        copied = end
        counts.authorization = (counts.authorization ?? 0) + 1
        ASSIGNMENT.lastIndex = end
        continue
      }
    }
    if (flag !== undefined && text[valueAt] === '-') continue
    const v = readValue(text, valueAt)
    // A code reference only unquoted after a spaced separator (`secret = "a.b"` is a literal).
    const code = flag === undefined && (text[after - 1] === ' ' || text[after - 1] === '\t') && v?.start === valueAt
    if (!v || isPlaceholder(text.slice(v.start, v.end), code)) continue
    const kind: SecretKind = auth ? 'authorization' : 'secret_assignment'
    out += text.slice(copied, v.start) + marker(kind)
    copied = v.end
    counts[kind] = (counts[kind] ?? 0) + 1
    ASSIGNMENT.lastIndex = v.end
  }
  return copied === 0 ? text : out + text.slice(copied)
}

/** Index of `quote` (or of the end of the line) from `from`, within 4096 characters; the end of the text if none. */
function closingQuote(text: string, from: number, quote: string): number {
  let j = from
  for (; j < text.length && j - from <= 4096; j++) {
    if (text[j] === '\\' && quote !== '\n') j++
    else if (text[j] === quote || text[j] === '\n' || text[j] === '\r') return j
  }
  return Math.min(j, text.length)
}

function redactPem(text: string, counts: KindCounts): string {
  if (!text.includes('-----BEGIN ')) return text
  let out = ''
  let copied = 0
  PEM_BEGIN.lastIndex = 0
  for (let m = PEM_BEGIN.exec(text); m !== null; m = PEM_BEGIN.exec(text)) {
    PEM_END.lastIndex = m.index + m[0].length
    const end = PEM_END.exec(text)
    // A key cut short (truncated tool output) is still a key: redacted to the end of the text.
    const stop = end ? end.index + end[0].length : text.length
    out += text.slice(copied, m.index) + marker('private_key')
    copied = stop
    counts.private_key = (counts.private_key ?? 0) + 1
    PEM_BEGIN.lastIndex = stop
    if (!end) break
  }
  return copied === 0 ? text : out + text.slice(copied)
}

/** Redacts secrets inside one string; `counts` (optional) is added to per kind. */
export function redactString(text: string, counts: KindCounts = {}): Redacted {
  if (text.length < 8) return { text, count: 0 }
  const before = total(counts)
  let out = redactPem(text, counts)
  if (SHAPE_ANCHORS.test(out)) {
    for (const [kind, re] of SHAPES) {
      out = out.replace(re, () => {
        counts[kind] = (counts[kind] ?? 0) + 1
        return marker(kind)
      })
    }
  }
  if (out.includes('://')) {
    out = out.replace(URL_PASSWORD, (m: string, head: string, password: string) => {
      // Already redacted as a known shape (`https://x:ghp_…@github.com`): counted once.
      if (password.startsWith('[REDACTED:')) return m
      counts.url_password = (counts.url_password ?? 0) + 1
      return `${head}${marker('url_password')}`
    })
  }
  if (/aws_secret_access_key/i.test(out)) {
    out = out.replace(AWS_SECRET, (_m, head: string) => {
      counts.aws_secret_key = (counts.aws_secret_key ?? 0) + 1
      return `${head}${marker('aws_secret_key')}`
    })
  }
  out = redactAssignments(out, counts)
  return { text: out, count: total(counts) - before }
}

/**
 * The value of a field whose name says it is a secret (`{"password": "…"}` in arguments, labels or
 * metadata): replaced whole unless it is a placeholder. Numbers count too (PINs, numeric tokens).
 */
export function redactSecretField(value: string | number, counts: KindCounts): string | number {
  const text = String(value)
  if (typeof value === 'number' ? text.length < 3 : isPlaceholder(text)) return value
  counts.secret_field = (counts.secret_field ?? 0) + 1
  return marker('secret_field')
}

function total(counts: KindCounts): number {
  let n = 0
  for (const k in counts) n += counts[k as SecretKind] ?? 0
  return n
}
