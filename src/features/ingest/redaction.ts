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
 *   `--name value`, `name => value`, `<name>value</name>`) whose name ends in a secret word
 *   (password, passwd, passphrase, secret, token, api key, access key, private key, credentials,
 *   …; `pass` and `pwd` only after a prefix: `DB_PASS`, not `PASS: TestX`), also glued to a
 *   prefix in one word (`PGPASSWORD`, `APITOKEN`), and the credential of an `Authorization`
 *   header, the `-p<password>` of mysql and `sshpass -p`. Values that are plainly not secrets
 *   survive: references (`$DB_PASSWORD`, `${TOKEN}`, `%PASS%`; code such as `getToken()` or
 *   `process.env.TOKEN` after `=`, and after `:` only from a known receiver such as `env`,
 *   `config`, `process`), placeholders (`***`, `<password>`, `xxx`), type names
 *   (`password: string`), a lexer's token kinds (`Token: IDENT`) and values under 3 characters.
 *   After `password:` / `secret:` and a space (YAML, prose), an unquoted value runs to the end
 *   of the line (issue 14: `password: hunter2 with spaces` kept all but `hunter2`).
 *
 * Every pattern is linear in the input (issue 14): starts are anchored by a one-character
 * look-behind so a run of look-alike characters is tried once, not once per position, and no
 * quantifier inside a look-behind is unbounded. The old combined pattern took 10 s on 128 KiB of
 * spaces after `sk-`. The hand-written loops move forward past every value they read, whatever
 * they decide about it (issue 14: a placeholder was read, up to 4 KiB, and read again from 6
 * characters further on: `'pass=$'` repeated over 1 MB took 2.3 s).
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
/**
 * `scheme://user:password@`; the password may itself hold `@` (the last one before the host
 * counts), or `/` (issue 14: `postgresql://u:p4ss/w0rd@db` kept `w0rd`) as long as it is not a
 * port followed by a path (`http://host:8080/@scope/pkg`). Slash-separated segments hold no `/`
 * or `@`, so the second form cannot backtrack.
 */
const URL_PASSWORD =
  /(?<![a-z0-9+.-])([a-z][a-z0-9+.-]{0,31}:\/\/[^\s:@/?#]{0,256}:)([^\s/?#]{1,256}|(?![0-9]{1,5}\/)[^\s/?#@]{0,256}(?:\/[^\s/?#@]{0,256}){1,8})(?=@)/gi
const AWS_SECRET =
  /(?<![A-Za-z0-9_])(aws_secret_access_key["']?[ \t]{0,8}[=:][ \t]{0,8}["']?)([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])/gi

/**
 * A name followed by `=`, `:` or `=>` (optionally after a closing quote, escaped or not: `\"password\":`
 * inside a JSON string), or a long flag followed by spaces. Group 3 is the separator. The value
 * is read by hand (readValue) so that a non-secret name's value is scanned again for assignments
 * of its own (`url=https://h/?token=…`).
 */
const ASSIGNMENT = new RegExp(
  String.raw`(?<![A-Za-z0-9_.-])(?:--([A-Za-z][A-Za-z0-9_.-]{0,127})[ \t]+|([A-Za-z0-9_.-]{1,128})\\?["']?[ \t]{0,8}(=>|[=:]=*)[ \t]{0,8})`,
  'g',
)
const ASSIGNMENT_ANCHOR = /pass|pwd|secret|token|key|credential|authori[sz]ation/i

/**
 * Last word of a name (lower case) that makes it secret. `pwd` and `pass` need a prefix
 * (`PWD=/home/x` is a directory; issue 14: `--- PASS: TestParseConfig`, `Pass: 120 Fail: 3` and
 * the label `{"PASS":"120"}` are test results), and `pass` not after a test runner's word
 * (`TESTS_PASS: 120`).
 */
const SECRET_LAST = new Set(['password', 'passwd', 'passphrase', 'secret', 'token', 'apikey', 'credential', 'credentials'])
const NOT_PASS_PREFIX = new Set([
  'test',
  'tests',
  'check',
  'checks',
  'spec',
  'specs',
  'suite',
  'suites',
  'case',
  'cases',
  'build',
  'builds',
  'ci',
  'lint',
  'unit',
  'e2e',
  'smoke',
  'all',
  'first',
  'second',
  'one',
  'by',
  'no',
  'can',
  'should',
  'must',
  'did',
  'will',
])
/**
 * One word ending in a secret word (issue 14: `PGPASSWORD`, `REDISPASSWORD`, `APITOKEN`,
 * `AUTHTOKEN`, which words() cannot split). `pass` is not among them (`bypass`, `compass`).
 */
const SECRET_SUFFIX = /.(?:password|passwd|passphrase|secret|token|apikey)$/
/** Last two words. */
const SECRET_PAIRS = new Set([
  'api key',
  'access key',
  'secret key',
  'private key',
  'auth key',
  'signing key',
  'master key',
  'encryption key',
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
  if (last === 'pass') return w.length > 1 && !NOT_PASS_PREFIX.has(w.at(-2)!)
  // Glued names are environment variables (PGPASSWORD, APITOKEN): upper case. A lower-case word
  // that merely ends so is a name of something else (`jsonwebtoken`, a package).
  if (SECRET_SUFFIX.test(last) && name === name.toUpperCase()) return true
  if (w.length > 1 && SECRET_PAIRS.has(`${w.at(-2)} ${last}`)) return true
  return w.length > 2 && w.slice(-3).join(' ') === 'secret key base'
}

function isAuthorizationName(name: string): boolean {
  const w = words(name)
  return w.at(-1) === 'authorization'
}

const NOT_SECRET_WORDS = new Set([
  'null',
  'none',
  'nil',
  'undefined',
  'true',
  'false',
  'yes',
  'no',
  'on',
  'off',
  'empty',
  'string',
  'str',
  'number',
  'int',
  'integer',
  'bool',
  'boolean',
  'any',
  'unknown',
  'object',
  'bytes',
  'optional',
  'required',
  'redacted',
  'hidden',
  'masked',
  'secret',
  'password',
  'token',
  'omitted',
  'n/a',
])

/**
 * Where a value may be code reading a secret rather than the secret (`process.env.TOKEN`,
 * `getToken()`): `any` after a spaced `=` or `=>` (`token = getToken()`); `receiver` after a
 * spaced `:`, only from a known receiver (issue 14: YAML `password: correct.horse.battery` was
 * taken for code); `none` unspaced, as in `.env` files and query strings, where a dotted value
 * (`access_token=ya29.a0Af…`) is the secret itself.
 */
export type CodeRef = 'none' | 'receiver' | 'any'

/** Objects code reads secrets from (`config.password`, `os.environ[…]`, `settings.SECRET_KEY`). */
const RECEIVER =
  /^(?:process|env|environ|os|config|conf|cfg|settings|options|opts|props|params|secrets|vault|self|this|ctx|context|app|ENV|import\.meta)\b/
/** Calls that fetch a secret (`getToken()`, `read_secret(…)`), accepted after a spaced `:`. */
const FETCH_CALL = /^(?:get|read|load|fetch|decrypt|resolve|lookup|require|env)[A-Za-z0-9_$]*\(/i
/** Only the start of a value is looked at: a placeholder is short (issue 14, bounded work per value). */
const PLACEHOLDER_LOOK = 256

/**
 * A value that names or stands for a secret rather than being one; `code`: whether it may be a
 * code reference (see CodeRef; `true` is `any`).
 */
export function isPlaceholder(value: string, code: CodeRef | boolean = false): boolean {
  const mode: CodeRef = code === true ? 'any' : code === false ? 'none' : code
  // A long value is judged by its start: whole-value forms (`***`, `null`, a dotted path) are short.
  const long = value.length > PLACEHOLDER_LOOK
  const v = (long ? value.slice(0, PLACEHOLDER_LOOK) : value).trim()
  if (v.length < 3 && !long) return true
  if (/^(?:\$|%[A-Za-z_]|\{\{|<|\[REDACTED|\.\.\.|…)/.test(v)) return true
  if (long) return mode !== 'none' && (RECEIVER.test(v) || (mode === 'any' && /^[A-Za-z_$][\w$.]{0,128}[([<]/.test(v)))
  if (/^(?:\*+|[xX]{3,}|#+|-+)$/.test(v)) return true
  if (NOT_SECRET_WORDS.has(v.toLowerCase())) return true
  // A type, not a value: `password: Option<String>` in a struct (compiler output, code).
  if (/^[A-Z][A-Za-z0-9_]*<[A-Za-z0-9_&<>, ]*$/.test(v)) return true
  if (mode === 'none') return false
  // process.env.TOKEN, config.password, getToken(), os.environ[…]: code reading a secret, not one.
  const dotted = /^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+$/.test(v)
  const call = /^[A-Za-z_$][\w$.]*[([<]/.test(v)
  if (mode === 'any') return dotted || call
  return ((dotted || call) && RECEIVER.test(v)) || FETCH_CALL.test(v)
}

/** Characters that end an unquoted value: white space, quotes, separators, closing brackets. */
const VALUE_END = new Set([...' \t\r\n\f\v"\'`&;,)}]>'].map((c) => c.charCodeAt(0)))

/**
 * The value at `i`: quoted (to its closing quote on the same line), quoted with escaped quotes
 * (`\"…\"`, JSON inside a JSON string: issue 14), or a run up to a delimiter; at most 4 KiB
 * looked at. Null when there is no value (a quote not closed on its line): any later opening
 * quote of the same kind would have closed it, so a scan that fails is not repeated over the
 * same characters by the next assignments.
 */
function readValue(text: string, i: number): { start: number; end: number } | null {
  if (text[i] === '\\' && (text[i + 1] === '"' || text[i + 1] === "'")) {
    const q = text[i + 1]!
    for (let j = i + 2; j < text.length && j - i <= 4096; j++) {
      const c = text[j]
      if (c === '\\' && text[j + 1] === q) return { start: i + 2, end: j }
      if (c === '\n' || c === q) break
    }
    return null
  }
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

/** Names whose unquoted value after `: ` runs to the end of the line (YAML, prose): never a single word by nature. */
const LINE_VALUE_LAST = new Set(['password', 'passwd', 'passphrase', 'secret'])
/** Ends a value that runs to the end of the line: the line, or a separator of a flow map or a statement. */
const LINE_VALUE_END = new Set([...'\r\n"\'`;,)}]'].map((c) => c.charCodeAt(0)))

/** From `i`, the end of a rest-of-line value, trailing white space excluded; bounded like readValue. */
function lineValueEnd(text: string, i: number): number {
  let j = i
  while (j < text.length && j - i < 4096 && !LINE_VALUE_END.has(text.charCodeAt(j))) j++
  while (j > i && (text[j - 1] === ' ' || text[j - 1] === '\t')) j--
  return j
}

function redactAssignments(text: string, counts: KindCounts): string {
  if (!ASSIGNMENT_ANCHOR.test(text)) return text
  let out = ''
  let copied = 0
  ASSIGNMENT.lastIndex = 0
  for (let m = ASSIGNMENT.exec(text); m !== null; m = ASSIGNMENT.exec(text)) {
    const flag = m[1]
    const name = flag ?? m[2]!
    const sep = m[3]
    const after = m.index + m[0].length
    const auth = flag === undefined && isAuthorizationName(name)
    if (!auth && !isSecretName(name)) continue
    // Every branch below moves lastIndex past what it read (issue 14: linear in the input).
    let valueAt = after
    if (auth) {
      // `Authorization: Bearer <credential>`: the scheme stays visible. The credential runs to the
      // closing quote when the header is quoted (`-H "Authorization: …"`, `"Authorization": "…"`),
      // else to the end of the line: Digest and AWS4 credentials hold spaces and quotes.
      const quotedValue = text[valueAt] === '"' || text[valueAt] === "'"
      const before = text[m.index - 1]
      const closing = quotedValue ? text[valueAt]! : before === '"' || before === "'" ? before : '\n'
      const from = valueAt + (quotedValue ? 1 : 0)
      // Spaces or tabs after the scheme (issue 14: `Bearer\t<token>` kept the token).
      const scheme = /^[A-Za-z][A-Za-z0-9-]{0,31}[ \t]+(?=\S)/.exec(text.slice(from, from + 40))
      if (scheme) {
        const start = from + scheme[0].length
        const v = readValue(text, start)
        if (!v || isPlaceholder(text.slice(v.start, v.end))) {
          ASSIGNMENT.lastIndex = Math.max(ASSIGNMENT.lastIndex, v ? v.end : start)
          continue
        }
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
    if (!v) continue
    // Past the value whatever is decided below: it is never read again from a later start.
    ASSIGNMENT.lastIndex = Math.max(ASSIGNMENT.lastIndex, v.end)
    const value = text.slice(v.start, v.end)
    const spaced = text[after - 1] === ' ' || text[after - 1] === '\t'
    const unquoted = v.start === valueAt
    // A code reference only unquoted after a spaced separator (`secret = "a.b"` is a literal).
    const code: CodeRef =
      flag !== undefined || !spaced || !unquoted ? 'none' : sep === '=>' || sep!.startsWith('=') ? 'any' : 'receiver'
    if (isPlaceholder(value, code)) continue
    // A lexer's output (`Token: IDENT at line 3`): a token kind, not a token.
    if (/^[A-Z][A-Z_]{1,31}$/.test(value) && name.toLowerCase() === 'token') continue
    let end = v.end
    if (unquoted && spaced && sep === ':' && flag === undefined && LINE_VALUE_LAST.has(words(name).at(-1)!)) {
      end = Math.max(end, lineValueEnd(text, v.start))
      ASSIGNMENT.lastIndex = Math.max(ASSIGNMENT.lastIndex, end)
    }
    const kind: SecretKind = auth ? 'authorization' : 'secret_assignment'
    out += text.slice(copied, v.start) + marker(kind)
    copied = end
    counts[kind] = (counts[kind] ?? 0) + 1
  }
  return copied === 0 ? text : out + text.slice(copied)
}

/** `<password>hunter2</password>` (XML, Maven settings): the element's text when its name is a secret name. */
const XML_ELEMENT = /<([A-Za-z][A-Za-z0-9_.:-]{0,63})>([^<\n]{1,4096})<\/\1>/g

function redactXml(text: string, counts: KindCounts): string {
  if (!text.includes('</')) return text
  return text.replace(XML_ELEMENT, (m: string, name: string, value: string) => {
    if (!isSecretName(name) || isPlaceholder(value) || value.startsWith('[REDACTED:')) return m
    counts.secret_assignment = (counts.secret_assignment ?? 0) + 1
    return `<${name}>${marker('secret_assignment')}</${name}>`
  })
}

/**
 * A password glued to its flag: `mysql -phunter2` (also mysqldump, mariadb…) and `sshpass -p x`.
 * The command's line is found first (one match per line, never overlapping), then its flag.
 */
const PASSWORD_COMMAND = /(?<![A-Za-z0-9_.-])(?:mysql[a-z]*|mariadb[a-z-]*|sshpass)[ \t][^\n]{0,4096}/g
const GLUED_P = /(?<=[ \t])(-p)([^\s'"-][^\s'"]{0,255}|'[^'\n]{1,255}'|"[^"\n]{1,255}")/g
const SSHPASS_P = /(?<=[ \t])(-p[ \t]+)([^\s'"-][^\s'"]{0,255}|'[^'\n]{1,255}'|"[^"\n]{1,255}")/g

function redactPasswordFlags(text: string, counts: KindCounts): string {
  if (!/mysql|mariadb|sshpass/.test(text)) return text
  return text.replace(PASSWORD_COMMAND, (line: string) => {
    const flag = line.startsWith('sshpass') ? SSHPASS_P : GLUED_P
    return line.replace(flag, (m: string, head: string, value: string) => {
      const bare = value.replace(/^['"]|['"]$/g, '')
      if (isPlaceholder(bare) || bare.startsWith('[REDACTED:')) return m
      counts.secret_assignment = (counts.secret_assignment ?? 0) + 1
      return `${head}${marker('secret_assignment')}`
    })
  })
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
  out = redactXml(out, counts)
  out = redactPasswordFlags(out, counts)
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
