/**
 * @module features/ingest/events
 * Turns one item of an ingest batch into the record we store, or into a rejection with a JSON
 * Pointer and a reason; one bad item never affects the others. Three shapes arrive (SPEC §8):
 *
 * - schema v2 "QuintEvent" (`schema_version: 2`, `POST /v1/ingest`),
 * - the API-reference item (`POST /v1/events/ingest`: `action_type`, `tool_name`, `arguments[]`…),
 * - the public daemon's `EventPayload` (`POST /v1/machines/{id}/events`).
 *
 * Rules (README "Ingest"):
 * - Identity fields (event id, session id, agent id) must be clean: a NUL, a lone surrogate or a
 *   control character rejects the item. Free-form content (arguments, labels, unknown fields) is
 *   kept, with such characters replaced by U+FFFD (Postgres cannot store them) and counted.
 * - The client timestamp must be RFC 3339; outside [now − 30 days, now + 10 minutes] it is
 *   clamped to that window and the original kept in `clientTimestamp`. It never picks a partition:
 *   `actions` is partitioned by the server's receive time.
 * - Unknown fields are kept (`extra`), never dropped.
 * - Secrets (known key shapes, secret-named assignments and fields, Authorization credentials,
 *   URL passwords) are redacted from all free-form content and descriptive text (./redaction.ts).
 * - Depth, number of values and size are measured without recursion before anything recursive
 *   runs (issue 14): an item over a limit is rejected with the JSON Pointer of the offending
 *   value, and the dedupe hash, the normalisation walk and the bus's JSON.stringify only ever
 *   see bounded input. JSON text inside a field (`arguments_json`, `metadata.args`) is measured
 *   the same way before it is parsed.
 * - The dedupe key is per org by construction (the ledger's key is `(org_id, event_key)`):
 *   `e:<event id>` for v2 and API items that carry an id, `h:<sha256 of the item>` for API items
 *   without one, and for the daemon (whose ids are `evt-<unix ms>` and collide) a hash of
 *   machine, id, action, agent and timestamp.
 */
import { createHash } from 'node:crypto'
import { measureValue, scanValue, skipSpace, type ShapeCode, type ShapeLimits, type ShapeProblem } from '../../lib/json-scan.ts'
import { isSecretName, redactSecretField, redactString, type KindCounts } from './redaction.ts'
import type { SessionLifecycle } from './lifecycle.ts'

/** The dedupe key of an event that carries its own id (a UUID in any case is one id). */
export const eventKeyFor = (eventId: string): string => `e:${/^[0-9A-F-]{36}$/i.test(eventId) ? eventId.toLowerCase() : eventId}`

export interface NormalizedEvent {
  eventKey: string
  eventId: string
  occurredAt: Date
  /** The client's timestamp as sent, when it was clamped or absent (`null` when used as is). */
  clientTimestamp: string | null
  sessionKey: string | null
  agentKey: string | null
  schemaVersion: number | null
  source: string | null
  platform: string | null
  actionType: string | null
  action: string | null
  toolName: string | null
  arguments: unknown
  decision: string | null
  blocked: boolean
  riskScore: number | null
  labels: Record<string, string>
  extra: Record<string, unknown>
  /** Secrets replaced by `[REDACTED:kind]`. */
  redactions: number
  /** The same, per kind (metrics only: not stored, not sent on the bus). */
  redactionKinds?: KindCounts
  /** NUL / lone-surrogate characters replaced by U+FFFD. */
  replacedChars: number
}

/**
 * Why an item was rejected, from a fixed set: the `reason` label of `quint_ingest_rejected_total`
 * (the free-text `reason` of the answer never becomes a label).
 */
export type RejectCode =
  | ShapeCode
  | 'not_object'
  | 'unsupported_schema_version'
  | 'missing_field'
  | 'wrong_type'
  | 'too_long'
  | 'invalid_characters'
  | 'invalid_timestamp'
  | 'invalid_risk_score'

export const REJECT_CODES: readonly RejectCode[] = [
  'too_deep',
  'too_many_values',
  'too_large',
  'not_object',
  'unsupported_schema_version',
  'missing_field',
  'wrong_type',
  'too_long',
  'invalid_characters',
  'invalid_timestamp',
  'invalid_risk_score',
]

export type ItemResult = { ok: true; event: NormalizedEvent } | { ok: false; path: string; reason: string; code: RejectCode }

export const CLOCK_WINDOW = { pastMs: 30 * 24 * 3600 * 1000, futureMs: 10 * 60 * 1000 }
const MAX_ID = 256
const MAX_TEXT = 1024
const MAX_DEPTH = 32
/** Per event, after serialisation: larger items are rejected, not truncated. */
export const MAX_EVENT_BYTES = 1024 * 1024
/** Values (of any kind) in one event; far above any real tool call, far below what stalls a request. */
export const MAX_EVENT_VALUES = 50_000
/** Checked, without recursion, on every item and every JSON text inside one, before anything else. */
export const EVENT_LIMITS: ShapeLimits = { maxDepth: MAX_DEPTH, maxValues: MAX_EVENT_VALUES, maxChars: MAX_EVENT_BYTES }

class Reject extends Error {
  readonly path: string
  readonly code: RejectCode
  constructor(path: string, reason: string, code: RejectCode) {
    super(reason)
    this.path = path
    this.code = code
  }
}

function shapeReject(base: string, problem: ShapeProblem): Reject {
  return new Reject(`${base}${problem.pointer}` || '/', problem.reason, problem.code)
}

/** Mutable counters threaded through one item's normalisation. */
interface Tally {
  redactions: number
  replaced: number
  /** Characters of free-form content seen, plus 8 per value: the size check without re-serialising. */
  size: number
  kinds: KindCounts
}

const V2_FIELDS = new Set([
  'schema_version',
  'event_id',
  'id',
  'timestamp',
  'source',
  'platform',
  'action_type',
  'action',
  'session_id',
  'agent_id',
  'tool_name',
  'arguments_json',
  'arguments',
  'decision',
  'risk_score',
  'labels',
])

/** An item of `POST /v1/ingest` or `POST /v1/events/ingest` (v2 or API-reference shape). */
export function normalizeIngestItem(raw: unknown, base: string, now: number): ItemResult {
  return guard(() => {
    const item = object(raw, base)
    // Before the hash below (a JSON.stringify) and every other walk of the item.
    const problem = measureValue(item, EVENT_LIMITS)
    if (problem) throw shapeReject(base, problem)
    const tally: Tally = { redactions: 0, replaced: 0, size: 0, kinds: {} }
    const version = item.schema_version
    if (version !== undefined && version !== 2) {
      throw new Reject(`${base}/schema_version`, 'unsupported schema_version (only 2 is accepted)', 'unsupported_schema_version')
    }
    const givenId = item.event_id ?? item.id
    const idPath = `${base}/${item.event_id !== undefined ? 'event_id' : 'id'}`
    let eventId: string
    let eventKey: string
    if (givenId !== undefined || version === 2) {
      if (givenId === undefined)
        throw new Reject(`${base}/event_id`, 'event_id is required for schema_version 2', 'missing_field')
      eventId = identity(givenId, idPath, true)!
      eventKey = eventKeyFor(eventId)
    } else {
      // An API item without an id: identical retries are the same event.
      const digest = createHash('sha256').update(JSON.stringify(raw)).digest('hex')
      eventId = `h-${digest.slice(0, 32)}`
      eventKey = `h:${digest}`
    }
    const when = timestamp(item.timestamp, `${base}/timestamp`, now)
    let args: unknown = null
    if (item.arguments_json !== undefined) {
      const text = string(item.arguments_json, `${base}/arguments_json`, MAX_EVENT_BYTES)
      args = text === null ? null : parseMaybeJson(text, `${base}/arguments_json`)
    } else if (item.arguments !== undefined && item.arguments !== null) {
      if (!Array.isArray(item.arguments)) throw new Reject(`${base}/arguments`, 'must be an array of strings', 'wrong_type')
      item.arguments.forEach((a, i) => string(a, `${base}/arguments/${i}`, MAX_EVENT_BYTES))
      args = item.arguments
    }
    const decision = text(item.decision, `${base}/decision`)
    const extra = unknownFields(item, V2_FIELDS)
    const described = (v: unknown, path: string) => describe(text(v, path), tally)
    const event: NormalizedEvent = {
      eventKey,
      eventId,
      ...when,
      sessionKey: identity(item.session_id, `${base}/session_id`, false),
      agentKey: identity(item.agent_id, `${base}/agent_id`, false),
      schemaVersion: version === 2 ? 2 : null,
      source: described(item.source, `${base}/source`),
      platform: described(item.platform, `${base}/platform`),
      actionType: described(item.action_type, `${base}/action_type`),
      action: described(item.action, `${base}/action`),
      toolName: described(item.tool_name, `${base}/tool_name`),
      arguments: content(args, `${base}/arguments`, tally, 0),
      decision: describe(decision, tally),
      blocked: decision === 'block' || decision === 'deny' || decision === 'denied',
      riskScore: risk(item.risk_score, `${base}/risk_score`),
      labels: labels(item.labels, `${base}/labels`, tally),
      extra: content(extra, base, tally, 0) as Record<string, unknown>,
      redactions: tally.redactions,
      redactionKinds: tally.kinds,
      replacedChars: tally.replaced,
    }
    return checkSize(event, base, tally)
  })
}

const DAEMON_FIELDS = new Set(['event_id', 'action', 'agent', 'timestamp', 'risk_score', 'blocked', 'metadata'])

/** An item of the public daemon's `POST /v1/machines/{id}/events` (SPEC §8.1). */
export function normalizeDaemonEvent(raw: unknown, base: string, now: number, machineId: string): ItemResult {
  return guard(() => {
    const item = object(raw, base)
    const problem = measureValue(item, EVENT_LIMITS)
    if (problem) throw shapeReject(base, problem)
    const tally: Tally = { redactions: 0, replaced: 0, size: 0, kinds: {} }
    const eventId = identity(item.event_id, `${base}/event_id`, true)!
    const action = text(item.action, `${base}/action`)
    if (action === null) throw new Reject(`${base}/action`, 'is required', 'missing_field')
    if (item.agent !== undefined && item.agent !== null && typeof item.agent !== 'string') {
      throw new Reject(`${base}/agent`, 'must be a string', 'wrong_type')
    }
    const agent = identity(item.agent === '' ? undefined : item.agent, `${base}/agent`, false)
    if (item.blocked !== undefined && typeof item.blocked !== 'boolean') {
      throw new Reject(`${base}/blocked`, 'must be a boolean', 'wrong_type')
    }
    const rawTs = item.timestamp
    const when = timestamp(rawTs, `${base}/timestamp`, now)
    // `args` is JSON text, measured and parsed below: kept out of the label cleaning so a secret
    // inside it is redacted (and counted) once, in its parsed form.
    const meta = labels(item.metadata, `${base}/metadata`, tally, 'args')
    const { args, ...rest } = meta
    const extra = unknownFields(item, DAEMON_FIELDS)
    const described = describe(action, tally)!
    // Daemon ids are `evt-<unix ms>` and repeat under load: the key is the whole identity.
    const digest = createHash('sha256')
      .update(`${machineId}\u0000${eventId}\u0000${action}\u0000${agent ?? ''}\u0000${typeof rawTs === 'string' ? rawTs : ''}`)
      .digest('hex')
    const event: NormalizedEvent = {
      eventKey: `d:${digest}`,
      eventId,
      ...when,
      sessionKey: identity(rest.session_id, `${base}/metadata/session_id`, false),
      agentKey: agent,
      schemaVersion: null,
      source: 'daemon',
      platform: rest.platform ?? null,
      // The key `action` is the daemon's identity of what happened (part of the dedupe key above):
      // secrets in it are redacted here, after hashing, so a retry still dedupes.
      actionType: action.startsWith('tool:') ? 'tools/call' : action.startsWith('http:') ? 'http' : null,
      action: described,
      toolName: described.startsWith('tool:') ? described.slice(5) || null : null,
      arguments:
        args === undefined ? null : content(parseMaybeJson(args, `${base}/metadata/args`), `${base}/metadata/args`, tally, 0),
      decision: item.blocked === true ? 'block' : 'allow',
      blocked: item.blocked === true,
      riskScore: risk(item.risk_score, `${base}/risk_score`),
      labels: rest,
      extra: content(extra, base, tally, 0) as Record<string, unknown>,
      redactions: tally.redactions,
      redactionKinds: tally.kinds,
      replacedChars: tally.replaced,
    }
    return checkSize(event, base, tally)
  })
}

/** Fields outside the known set; fromEntries makes own properties, so `__proto__` stays data. */
function unknownFields(item: Record<string, unknown>, known: Set<string>): Record<string, unknown> {
  // Most items have none: checked without building the entries (issue 13: a twentieth of the
  // HTTP thread's time). `item` is a parsed JSON object, so every enumerable key is its own.
  let unknown = false
  for (const k in item) {
    if (!known.has(k)) {
      unknown = true
      break
    }
  }
  return unknown ? Object.fromEntries(Object.entries(item).filter(([k]) => !known.has(k))) : {}
}

function guard(fn: () => NormalizedEvent): ItemResult {
  try {
    return { ok: true, event: fn() }
  } catch (err) {
    if (err instanceof Reject) return { ok: false, path: err.path, reason: err.message, code: err.code }
    throw err
  }
}

function object(raw: unknown, path: string): Record<string, unknown> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new Reject(path || '/', 'must be an object', 'not_object')
  return raw as Record<string, unknown>
}

// Control characters, and lone surrogates (a high not followed by a low, or a low without a high).
const UNCLEAN = /[\u0000-\u001f\u007f]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const NUL_OR_LONE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/** An id-like field: a clean string of 1–256 characters; `required` or absent (→ null). */
function identity(v: unknown, path: string, required: boolean): string | null {
  if (v === undefined || v === null) {
    if (required) throw new Reject(path, 'is required', 'missing_field')
    return null
  }
  if (typeof v !== 'string') throw new Reject(path, 'must be a string', 'wrong_type')
  if (v.length === 0 || v.length > MAX_ID) throw new Reject(path, `must be 1–${MAX_ID} characters`, 'too_long')
  if (UNCLEAN.test(v)) {
    throw new Reject(path, 'contains a control character or an invalid (lone surrogate) character', 'invalid_characters')
  }
  return v
}

/** A short descriptive field (≤ 1024 characters, cleaned). */
function text(v: unknown, path: string): string | null {
  return string(v, path, MAX_TEXT)
}

function string(v: unknown, path: string, max: number): string | null {
  if (v === undefined || v === null) return null
  if (typeof v !== 'string') throw new Reject(path, 'must be a string', 'wrong_type')
  if (v.length > max)
    throw new Reject(path, `must be at most ${max} characters`, max === MAX_EVENT_BYTES ? 'too_large' : 'too_long')
  return v.replace(NUL_OR_LONE, '\uFFFD')
}

function risk(v: unknown, path: string): number | null {
  if (v === undefined || v === null) return null
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 100) {
    throw new Reject(path, 'must be an integer from 0 to 100', 'invalid_risk_score')
  }
  return v
}

/** A flat string map (labels, daemon metadata); `raw` names a key whose value is kept as sent (cleaned later). */
function labels(v: unknown, path: string, tally: Tally, raw?: string): Record<string, string> {
  if (v === undefined || v === null) return {}
  const o = object(v, path)
  const out: Record<string, string> = Object.create(null) as Record<string, string>
  for (const [k, val] of Object.entries(o)) {
    if (typeof val !== 'string') throw new Reject(`${path}/${pointer(k)}`, 'label values must be strings', 'wrong_type')
    if (k === raw) out[k] = val
    else out[clean(k, tally)] = (secretField(k, val, tally) as string | undefined) ?? clean(val, tally)
  }
  return { ...out }
}

/** The redacted value of a field whose name says it holds a secret, or undefined for any other field. */
function secretField(key: string, value: unknown, tally: Tally): string | number | undefined {
  if ((typeof value !== 'string' && typeof value !== 'number') || !isSecretName(key)) return undefined
  const before = tally.kinds.secret_field ?? 0
  const out = redactSecretField(value, tally.kinds)
  if ((tally.kinds.secret_field ?? 0) === before) return undefined
  tally.redactions++
  tally.size += 8
  return out
}

/** A short descriptive field (tool name, action, source…): cleaned and redacted like content. */
function describe(v: string | null, tally: Tally): string | null {
  return v === null ? null : clean(v, tally)
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$/

function timestamp(v: unknown, path: string, now: number): { occurredAt: Date; clientTimestamp: string | null } {
  if (v === undefined || v === null) return { occurredAt: new Date(now), clientTimestamp: null }
  if (typeof v !== 'string' || !RFC3339.test(v)) throw new Reject(path, 'must be an RFC 3339 timestamp', 'invalid_timestamp')
  const t = Date.parse(v)
  // Date.parse rolls 2026-02-31 over into March instead of failing.
  const [y, m, d] = v.slice(0, 10).split('-').map(Number) as [number, number, number]
  if (Number.isNaN(t) || new Date(Date.UTC(y, m - 1, d)).getUTCDate() !== d) {
    throw new Reject(path, 'must be an RFC 3339 timestamp of a real date', 'invalid_timestamp')
  }
  const lo = now - CLOCK_WINDOW.pastMs
  const hi = now + CLOCK_WINDOW.futureMs
  if (t < lo) return { occurredAt: new Date(lo), clientTimestamp: v }
  if (t > hi) return { occurredAt: new Date(hi), clientTimestamp: v }
  return { occurredAt: new Date(t), clientTimestamp: null }
}

/**
 * Arguments arrive as JSON text (v2 `arguments_json`, daemon `metadata.args`): keep structure when
 * it parses. The text is measured first (depth, values, size; no recursion), so JSON.parse and the
 * walks after it never see more than the limits allow: over them, the item is rejected at `path`
 * plus the pointer inside the text.
 */
function parseMaybeJson(text: string, path: string): unknown {
  if (text.length > MAX_EVENT_BYTES) throw new Reject(path, `exceeds ${MAX_EVENT_BYTES} bytes`, 'too_large')
  const start = skipSpace(text, 0)
  const c = text.charCodeAt(start)
  if (c !== 0x7b && c !== 0x5b) return text
  try {
    const { problem } = scanValue(text, start, EVENT_LIMITS)
    if (problem) throw shapeReject(path, problem)
    return JSON.parse(text)
  } catch (err) {
    if (err instanceof Reject) throw err
    // not JSON after all: keep the text
    return text
  }
}

/** Free-form JSON content: strings cleaned and redacted, keys cleaned, depth bounded. */
function content(v: unknown, path: string, tally: Tally, depth: number): unknown {
  tally.size += 8
  if (typeof v === 'string') return clean(v, tally)
  if (v === null || typeof v !== 'object') return v
  // Unreachable for items measured first (EVENT_LIMITS); kept so this walk can never recurse unbounded.
  if (depth >= MAX_DEPTH) throw new Reject(path, `is nested deeper than ${MAX_DEPTH} levels`, 'too_deep')
  if (Array.isArray(v)) {
    return v.map((x, i) => {
      // `["--password", "hunter2"]`: a secret-named long flag's value is the next argument.
      const flag = i > 0 ? v[i - 1] : undefined
      if (typeof flag === 'string' && typeof x === 'string' && /^--[A-Za-z][\w.-]*$/.test(flag) && !x.startsWith('-')) {
        const redacted = secretField(flag.slice(2), x, tally)
        if (redacted !== undefined) return redacted
      }
      return content(x, `${path}/${i}`, tally, depth + 1)
    })
  }
  // A plain object: `__proto__` from JSON.parse stays an ordinary key, never a prototype.
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) {
    // Everything under a secret name is secret (issue 14: `{"password":["hunter2"]}` and
    // `{"token":{"value":"…"}}` were stored verbatim: only a string or number was replaced).
    const under = isSecretName(k) && x !== null && typeof x === 'object'
    Object.defineProperty(out, clean(k, tally), {
      value: under
        ? secretContent(x, `${path}/${pointer(k)}`, tally, depth + 1)
        : (secretField(k, x, tally) ?? content(x, `${path}/${pointer(k)}`, tally, depth + 1)),
      enumerable: true,
      writable: true,
      configurable: true,
    })
  }
  return out
}

/** Content under a secret-named key: every string and number replaced (placeholders kept), keys cleaned. */
function secretContent(v: unknown, path: string, tally: Tally, depth: number): unknown {
  tally.size += 8
  if (typeof v === 'string' || typeof v === 'number') {
    const before = tally.kinds.secret_field ?? 0
    const out = redactSecretField(typeof v === 'string' ? v.replace(NUL_OR_LONE, '\uFFFD') : v, tally.kinds)
    if ((tally.kinds.secret_field ?? 0) !== before) tally.redactions++
    else if (typeof v === 'string') return clean(v, tally)
    return out
  }
  if (v === null || typeof v !== 'object') return v
  if (depth >= MAX_DEPTH) throw new Reject(path, `is nested deeper than ${MAX_DEPTH} levels`, 'too_deep')
  if (Array.isArray(v)) return v.map((x, i) => secretContent(x, `${path}/${i}`, tally, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) {
    Object.defineProperty(out, clean(k, tally), {
      value: secretContent(x, `${path}/${pointer(k)}`, tally, depth + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    })
  }
  return out
}

/** The lifecycle fields that are identities or enums: validated by the route's schema, never rewritten. */
const LIFECYCLE_IDENTITY = new Set(['session_id', 'parent_id', 'state', 'timestamp'])

export type LifecycleResult =
  | { ok: true; lifecycle: SessionLifecycle; redactions: number; redactionKinds: KindCounts; replacedChars: number }
  | { ok: false; path: string; reason: string; code: RejectCode }

/**
 * A session lifecycle report as it may travel on the bus (issue 14: it was published as sent,
 * so `session_name: "run DB_PASSWORD=…"` was stored verbatim, an unknown field
 * `"api_key": "sk_test_…"` travelled into the bus and dead letters, and a NUL in an unknown
 * field made the message impossible to dead-letter). Every free-form field (session name,
 * model, signing id, platform) and every unknown field is cleaned and redacted as an event's
 * content is: NUL and lone surrogates become U+FFFD, secrets `[REDACTED:kind]`, counted. The
 * unknown fields are measured first (depth, values, size), as an event is.
 */
export function normalizeLifecycle(body: SessionLifecycle): LifecycleResult {
  try {
    const problem = measureValue(body, EVENT_LIMITS)
    if (problem) throw shapeReject('', problem)
    const tally: Tally = { redactions: 0, replaced: 0, size: 0, kinds: {} }
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
      const value = LIFECYCLE_IDENTITY.has(k)
        ? v
        : (secretField(k, v, tally) ?? secretUnder(k, v, tally) ?? content(v, `/${pointer(k)}`, tally, 0))
      Object.defineProperty(out, LIFECYCLE_IDENTITY.has(k) ? k : clean(k, tally), {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      })
    }
    if (tally.size > MAX_EVENT_BYTES) throw new Reject('/', `content exceeds ${MAX_EVENT_BYTES} bytes`, 'too_large')
    return {
      ok: true,
      lifecycle: out as SessionLifecycle,
      redactions: tally.redactions,
      redactionKinds: tally.kinds,
      replacedChars: tally.replaced,
    }
  } catch (err) {
    if (err instanceof Reject) return { ok: false, path: err.path, reason: err.message, code: err.code }
    throw err
  }
}

/** An object or array under a secret-named top-level key, redacted whole; undefined otherwise. */
function secretUnder(key: string, value: unknown, tally: Tally): unknown {
  if (value === null || typeof value !== 'object' || !isSecretName(key)) return undefined
  return secretContent(value, `/${pointer(key)}`, tally, 1)
}

function clean(s: string, tally: Tally): string {
  tally.size += s.length
  let out = s
  if (NUL_OR_LONE.test(out)) {
    NUL_OR_LONE.lastIndex = 0
    out = out.replace(NUL_OR_LONE, () => {
      tally.replaced++
      return '\uFFFD'
    })
  }
  NUL_OR_LONE.lastIndex = 0
  const r = redactString(out, tally.kinds)
  tally.redactions += r.count
  return r.text
}

function pointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1')
}

function checkSize(event: NormalizedEvent, base: string, tally: Tally): NormalizedEvent {
  if (tally.size > MAX_EVENT_BYTES) throw new Reject(base || '/', `event content exceeds ${MAX_EVENT_BYTES} bytes`, 'too_large')
  return event
}
