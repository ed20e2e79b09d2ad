/**
 * @module features/ingest/batch
 * Reading an ingest body `{"events":[…]}` so that one hostile item costs its sender, not the
 * server (issue 14). The body is scanned once, linearly and without recursion, before anything is
 * parsed: the envelope is read by hand, and each item is measured in place (depth, number of
 * values, bytes; src/lib/json-scan.ts). An item over a limit is rejected with its JSON Pointer and never
 * parsed; the others are parsed one at a time, each by its own JSON.parse, and normalised with a
 * yield to the event loop every few milliseconds, so one 10 MiB batch never holds the main
 * thread for long and other orgs' requests are served in between.
 *
 * What is refused as a whole (the body, not an item): not UTF-8 JSON (400), not the envelope
 * (400), structure outside the items nested deeper than the item limit (400), more than 500
 * items (413), over 10 MiB decoded (413), a `dropped_events` that is not a count (422).
 *
 * `dropped_events` (issue 9, docs/ingest-stats.md) is the one envelope member read besides
 * `events`: how many events the sender dropped before sending (buffer overflow…), counted as
 * edge drops. Every other member is tolerated and ignored, as before (SPEC §7.1, §7.3).
 */
import { AppError, BadRequestError, ValidationError } from '../../errors.ts'
import { readJsonText } from '../../http/body.ts'
import { EVENT_LIMITS, type ItemResult } from './events.ts'
import { JsonShapeError, scanValue, skipSpace, skipString, type ShapeProblem } from '../../lib/json-scan.ts'
import { MAX_BATCH_EVENTS, MAX_DROPPED_EVENTS } from './schema.ts'
/** Main-thread time spent on one batch before letting other requests run. */
const SLICE_MS = 8

/** One item of the batch: where it is in the body, or why it was refused unparsed. */
export interface BatchItem {
  start: number
  end: number
  problem: ShapeProblem | null
}

export interface EventBatch {
  text: string
  items: BatchItem[]
  /** Events the sender reports it dropped before sending (`dropped_events`; 0 when absent or null). */
  droppedEvents: number
}

/** Reads and scans an ingest body: 415 unless JSON, 413 over `limit` (decoded bytes) or 500 items, 400 when malformed. */
export async function readEventBatch(req: Request, limit: number): Promise<EventBatch> {
  return scanEventBatch(await readJsonText(req, limit))
}

const notEnvelope = () =>
  new BadRequestError('The body must be {"events": [ … ]}.', [{ path: '/events', message: 'must be an array' }])
const malformed = (err: unknown) =>
  new BadRequestError(`The request body is not valid JSON: ${err instanceof Error ? err.message : 'malformed'}`)

/** The envelope read by hand over the decoded text; items located and measured, none parsed. */
export function scanEventBatch(text: string): EventBatch {
  let i = skipSpace(text, 0)
  if (i === text.length) throw new BadRequestError('The request body is empty; a JSON document is required.')
  try {
    if (text.charCodeAt(i) !== 0x7b) {
      // Not an object, so not the envelope: checked for shape only, never parsed.
      const end = skipSpace(text, scanValue(text, i, EVENT_LIMITS).end)
      if (end !== text.length) throw new JsonShapeError('unexpected data after the JSON value', end)
      throw notEnvelope()
    }
    let items: BatchItem[] | null = null
    let droppedEvents = 0
    i = skipSpace(text, i + 1)
    if (text.charCodeAt(i) === 0x7d) i++
    else {
      for (;;) {
        if (text.charCodeAt(i) !== 0x22) throw new JsonShapeError('expected a property name', i)
        const keyEnd = skipString(text, i)
        const key: unknown = JSON.parse(text.slice(i, keyEnd))
        i = skipSpace(text, keyEnd)
        if (text.charCodeAt(i) !== 0x3a) throw new JsonShapeError("expected ':'", i)
        i = skipSpace(text, i + 1)
        if (key === 'events') {
          // JSON.parse would keep the last of two `events`; an envelope with two is refused instead.
          if (items !== null) {
            throw new BadRequestError('The body has more than one "events" member.', [
              { path: '/events', message: 'duplicate member' },
            ])
          }
          if (text.charCodeAt(i) !== 0x5b) throw notEnvelope()
          ;({ items, end: i } = scanItems(text, i))
        } else if (key === 'dropped_events') {
          const end = checkedValue(text, i)
          droppedEvents = droppedCount(JSON.parse(text.slice(i, end)), '/dropped_events')
          i = end
        } else {
          i = checkedValue(text, i)
        }
        i = skipSpace(text, i)
        const c = text.charCodeAt(i)
        if (c === 0x2c) {
          i = skipSpace(text, i + 1)
          continue
        }
        if (c !== 0x7d) throw new JsonShapeError("expected ',' or '}'", i)
        i++
        break
      }
    }
    if (skipSpace(text, i) !== text.length) throw new JsonShapeError('unexpected data after the JSON value', i)
    if (items === null) throw notEnvelope()
    return { text, items, droppedEvents }
  } catch (err) {
    if (err instanceof JsonShapeError || err instanceof SyntaxError) throw malformed(err)
    throw err
  }
}

/**
 * A reported drop count: a non-negative integer up to MAX_DROPPED_EVENTS, or null/absent (0).
 * Anything else is a 422 naming `path`: the count is the sender's to get right, and a silent 0
 * would hide the drops it meant to report.
 */
export function droppedCount(value: unknown, path: string): number {
  if (value === null || value === undefined) return 0
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_DROPPED_EVENTS) return value
  throw new ValidationError([{ path, message: `must be an integer from 0 to ${MAX_DROPPED_EVENTS}` }])
}

/** A member of the envelope other than `events`: measured like an item, parsed to validate it, ignored. */
function checkedValue(text: string, i: number): number {
  const { end, problem } = scanValue(text, i, EVENT_LIMITS)
  if (problem) {
    throw new BadRequestError('The request body is nested too deeply or is too large outside its events.', [
      { path: '/', message: problem.reason },
    ])
  }
  JSON.parse(text.slice(i, end))
  return end
}

function scanItems(text: string, open: number): { items: BatchItem[]; end: number } {
  const items: BatchItem[] = []
  let i = skipSpace(text, open + 1)
  if (text.charCodeAt(i) === 0x5d) return { items, end: i + 1 }
  for (;;) {
    if (items.length === MAX_BATCH_EVENTS) {
      throw new AppError(413, 'too_many_events', `At most ${MAX_BATCH_EVENTS} events per request.`, {
        extensions: { limit_events: MAX_BATCH_EVENTS },
      })
    }
    if (i >= text.length) throw new JsonShapeError('unexpected end of JSON', i)
    const { end, problem } = scanValue(text, i, EVENT_LIMITS)
    items.push({ start: i, end, problem })
    i = skipSpace(text, end)
    const c = text.charCodeAt(i)
    if (c === 0x2c) {
      i = skipSpace(text, i + 1)
      continue
    }
    if (c !== 0x5d) throw new JsonShapeError("expected ',' or ']'", i)
    return { items, end: i + 1 }
  }
}

/**
 * Parses and normalises the items one by one: an item over a limit becomes its rejection
 * (`path` = `/events/<i>` + the pointer inside it) without being parsed. A malformed item makes
 * the whole body a 400, as it is not JSON. Yields to the event loop every few milliseconds.
 */
export async function normalizeBatch(
  batch: EventBatch,
  normalize: (raw: unknown, base: string) => ItemResult,
): Promise<ItemResult[]> {
  const out: ItemResult[] = []
  let sliceStart = performance.now()
  for (const [index, item] of batch.items.entries()) {
    const base = `/events/${index}`
    if (item.problem) {
      out.push({ ok: false, path: `${base}${item.problem.pointer}`, reason: item.problem.reason, code: item.problem.code })
    } else {
      let raw: unknown
      try {
        raw = JSON.parse(batch.text.slice(item.start, item.end))
      } catch (err) {
        throw malformed(err)
      }
      out.push(normalize(raw, base))
    }
    if (performance.now() - sliceStart > SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve))
      sliceStart = performance.now()
    }
  }
  return out
}
