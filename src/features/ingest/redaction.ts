/**
 * @module features/ingest/redaction
 * Data residency: high-confidence secrets are removed from event content before storage, even
 * when a daemon sends them (SPEC §16.2). Each match becomes `[REDACTED:<kind>]`; the caller marks
 * the event redacted and counts. One combined pattern keeps the per-string cost to one scan.
 *
 * High confidence only: shapes that are secrets by construction (provider key formats, PEM
 * private key blocks, JWTs, our own tokens, a password inside a URL), never guesses from
 * entropy, which would mangle hashes and ids that are not secrets.
 */

const KINDS = [
  ['private_key', String.raw`-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----`],
  ['aws_access_key', String.raw`\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b`],
  ['aws_secret_key', String.raw`(?<=aws_secret_access_key["']?\s*[=:]\s*["']?)[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])`],
  ['gcp_api_key', String.raw`\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])`],
  ['github_token', String.raw`\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b`],
  ['gitlab_token', String.raw`\bglpat-[A-Za-z0-9_-]{20,}`],
  ['slack_token', String.raw`\bxox[abprs]-[A-Za-z0-9-]{10,}`],
  ['stripe_key', String.raw`\b(?:sk|rk)_live_[A-Za-z0-9]{16,}`],
  ['llm_api_key', String.raw`\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{32,}`],
  ['quint_token', String.raw`\b(?:qt_[a-z]+_|qk_)[A-Za-z0-9._-]{16,}`],
  ['jwt', String.raw`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}`],
  ['url_password', String.raw`(?<=\b[a-z][a-z0-9+.-]*://[^\s:@/]{1,256}:)[^\s@/]{1,256}(?=@)`],
] as const

export type SecretKind = (typeof KINDS)[number][0]

// Every kind above contains one of these literals; a string with none (nearly all of them) skips
// the full pattern, whose lookbehinds are tried at every position.
const ANCHORS = /-----BEGIN|AKIA|ASIA|ABIA|ACCA|aws_secret_access_key|AIza|gh[pousr]_|github_pat_|glpat-|xox[abprs]-|_live_|sk-|qt_|qk_|eyJ|:\/\//i

const PATTERN = new RegExp(KINDS.map(([kind, source]) => `(?<${kind}>${source})`).join('|'), 'gi')
// The case-insensitive flag is for URL schemes and `aws_secret_access_key`; provider prefixes
// whose case matters are re-checked below so `akia…` lower-case text is not taken for a key.
const CASE_SENSITIVE = new Set<SecretKind>(['aws_access_key', 'gcp_api_key', 'github_token', 'slack_token', 'private_key'])

export interface Redacted {
  text: string
  count: number
}

/** Redacts secrets inside one string. */
export function redactString(text: string): Redacted {
  if (text.length < 8 || !ANCHORS.test(text)) return { text, count: 0 }
  let count = 0
  const out = text.replace(PATTERN, (match: string, ...rest: unknown[]) => {
    const groups = rest.at(-1) as Record<SecretKind, string | undefined>
    const kind = (Object.keys(groups) as SecretKind[]).find((k) => groups[k] !== undefined)!
    if (CASE_SENSITIVE.has(kind) && !new RegExp(`^(?:${KINDS.find(([k]) => k === kind)![1]})$`).test(match)) return match
    count++
    return `[REDACTED:${kind}]`
  })
  return { text: out, count }
}
