/**
 * @module features/ingest/lifecycle
 * Session lifecycle events (`POST /v1/sessions/ingest`, SPEC §10): start, update and end of one
 * agent invocation. Validated here; applied in order by the sessions consumer.
 *
 * The timestamp is held to the same rules as an event's (issue 14: `0000-01-01T00:00:00Z` was
 * accepted, and the sessions consumer then failed on it forever, since Postgres has no year 0):
 * an RFC 3339 date-time of a date that exists, or 422; outside the clock window of events
 * (CLOCK_WINDOW: 30 days back, 10 minutes ahead of when the server received it) it is clamped to
 * that window when applied, as an event's timestamp is.
 */
import { FormatRegistry, Type, type Static } from '@sinclair/typebox'
import { CLOCK_WINDOW } from './events.ts'

const Id = Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\u0000-\\u001f\\u007f]+$' })
const Text = (max: number) => Type.String({ maxLength: max, pattern: '^[^\\u0000]*$' })

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$/

/** An RFC 3339 date-time of a real date: Date.parse alone rolls 2026-02-31 over into March. */
export function isRealTimestamp(v: string): boolean {
  const m = RFC3339.exec(v)
  if (!m) return false
  const t = Date.parse(v)
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])]
  return !Number.isNaN(t) && new Date(Date.UTC(y, mo - 1, d)).getUTCDate() === d && mo >= 1 && mo <= 12
}

/** A TypeBox format of our own: the standard `date-time` one does not check that the date exists. */
const TIMESTAMP_FORMAT = 'rfc3339-timestamp'
if (!FormatRegistry.Has(TIMESTAMP_FORMAT)) FormatRegistry.Set(TIMESTAMP_FORMAT, isRealTimestamp)

export const SessionLifecycleBody = Type.Object(
  {
    session_id: Id,
    session_name: Type.Optional(Type.Union([Text(512), Type.Null()])),
    model: Type.Optional(Type.Union([Text(256), Type.Null()])),
    signing_id: Type.Optional(Type.Union([Text(256), Type.Null()])),
    state: Type.Union([Type.Literal('active'), Type.Literal('idle'), Type.Literal('ended')]),
    platform: Type.Optional(Type.Union([Text(64), Type.Null()])),
    parent_id: Type.Optional(Type.Union([Id, Type.Null()])),
    timestamp: Type.String({
      format: TIMESTAMP_FORMAT,
      maxLength: 64,
      description:
        "RFC 3339 date-time of a real date. Outside 30 days back to 10 minutes ahead of the server's clock it is clamped to that window, as event timestamps are.",
    }),
  },
  { additionalProperties: true },
)

export type SessionLifecycle = Static<typeof SessionLifecycleBody>

/**
 * When the report happened, for the sessions table: its timestamp clamped to the clock window
 * around `receivedAt` (the server's time at ingest, so that a redelivery gives the same answer).
 * Anything unparseable (a message published before this rule) counts as `receivedAt`.
 */
export function lifecycleTime(l: Pick<SessionLifecycle, 'timestamp'>, receivedAt: string): string {
  const received = Date.parse(receivedAt)
  const base = Number.isNaN(received) ? Date.now() : received
  const t = typeof l.timestamp === 'string' && isRealTimestamp(l.timestamp) ? Date.parse(l.timestamp) : base
  return new Date(Math.min(Math.max(t, base - CLOCK_WINDOW.pastMs), base + CLOCK_WINDOW.futureMs)).toISOString()
}
