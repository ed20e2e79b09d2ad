/**
 * @module bus/wire
 * The cluster bus's message format (docs/cluster.md). One bus message (up to 500 events and
 * 10 MiB) becomes one or more parts, each an SNS message under SNS's 256 KiB limit:
 *
 *   {"v":1,"org":"<org uuid>","part":[i,n],"message":{…BusMessage with a subset of the events…}}
 *
 * An event too big to fit a part on its own travels alone, gzipped and base64-encoded in `gz`
 * instead of `message`. Every part carries its org; its MessageGroupId is the org id and its
 * MessageDeduplicationId is `<org id>:<sha256 of what it carries>` (the event keys, or the
 * lifecycle report), so a client retry within SNS's 5-minute window is dropped by SNS and one
 * org's ids can never suppress another's.
 */
import { createHash } from 'node:crypto'
import { gunzipSync, gzipSync } from 'node:zlib'
import { isUuid } from '../infra/db.ts'
import type { BusMessage, WireEvent } from './bus.ts'

export const WIRE_VERSION = 1
/** SNS's limit for one message, attributes included; PublishBatch's limit for the whole batch. */
export const SNS_MAX_BYTES = 256 * 1024
/** Room left in a part for the message attributes (`org_id`) and rounding. */
const ATTRIBUTE_ALLOWANCE = 1024
export const PART_MAX_BYTES = SNS_MAX_BYTES - ATTRIBUTE_ALLOWANCE

export interface WirePart {
  body: string
  groupId: string
  dedupeId: string
  /** UTF-8 bytes of `body`. */
  bytes: number
}

/** An event that cannot be carried by SNS even alone and compressed. */
export class PartTooLargeError extends Error {
  override name = 'PartTooLargeError'
  readonly eventId: string
  constructor(eventId: string, bytes: number) {
    super(`event ${eventId} needs ${bytes} bytes on the bus, above its ${PART_MAX_BYTES}-byte limit`)
    this.eventId = eventId
  }
}

/** A body that is not a part of ours (or is damaged). */
export class WireFormatError extends Error {
  override name = 'WireFormatError'
}

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8')
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex')

/**
 * SQS refuses bodies with U+FFFE and U+FFFF, which JSON.stringify leaves raw (it escapes control
 * characters and lone surrogates already). Outside strings JSON has no such character, so
 * replacing them by their escapes keeps the JSON equal.
 */
const SQS_FORBIDDEN = /[\uFFFE\uFFFF]/
const SQS_FORBIDDEN_ALL = /[\uFFFE\uFFFF]/g
const sqsSafe = (json: string) =>
  SQS_FORBIDDEN.test(json) ? json.replace(SQS_FORBIDDEN_ALL, (c) => `\\u${c.charCodeAt(0).toString(16)}`) : json

/** Splits and encodes one message of `orgId`; throws PartTooLargeError before anything is sent. */
export function encodeMessage(orgId: string, message: BusMessage, maxBytes = PART_MAX_BYTES): WirePart[] {
  if (message.kind === 'lifecycle') {
    const part = frame(orgId, 0, 1, `"message":${sqsSafe(JSON.stringify(message))}`)
    return [finish(orgId, part, `lifecycle\n${JSON.stringify(message.lifecycle)}`)]
  }
  const { events, ...header } = message
  const groups = pack(orgId, header, events, maxBytes)
  return groups.map((g, i) => {
    const inner = { ...header, events: g.events }
    const carried = `events\n${header.machineId ?? ''}\n${g.events.map((e) => e.eventKey).join('\n')}`
    if (!g.gzip) {
      const messageJson = `${sqsSafe(JSON.stringify(header)).slice(0, -1)},"events":[${g.json.join(',')}]}`
      return finish(orgId, frame(orgId, i, groups.length, `"message":${messageJson}`), carried)
    }
    const gz = gzipSync(JSON.stringify(inner)).toString('base64')
    const part = finish(orgId, frame(orgId, i, groups.length, `"gz":"${gz}"`), carried)
    if (part.bytes > maxBytes) throw new PartTooLargeError(g.events[0]!.eventId, part.bytes)
    return part
  })
}

interface Group {
  events: WireEvent[]
  json: string[]
  gzip: boolean
}

/** Greedy packing in arrival order (order matters to consumers within an org). */
function pack(
  orgId: string,
  header: Omit<Extract<BusMessage, { kind: 'events' }>, 'events'>,
  events: WireEvent[],
  maxBytes: number,
): Group[] {
  // Framing of a part with no events, with room for the widest `part` counter.
  const overhead = utf8(frame(orgId, 999, 999, `"message":${JSON.stringify({ ...header, events: [] })}`))
  const groups: Group[] = []
  let current: Group = { events: [], json: [], gzip: false }
  let size = overhead
  for (const event of events) {
    const json = sqsSafe(JSON.stringify(event))
    const bytes = utf8(json) + 1 // the comma
    if (overhead + bytes > maxBytes) {
      // Alone and compressed; whether that fits is checked once encoded.
      if (current.events.length > 0) groups.push(current)
      groups.push({ events: [event], json: [], gzip: true })
      current = { events: [], json: [], gzip: false }
      size = overhead
      continue
    }
    if (size + bytes > maxBytes) {
      groups.push(current)
      current = { events: [], json: [], gzip: false }
      size = overhead
    }
    current.events.push(event)
    current.json.push(json)
    size += bytes
  }
  if (current.events.length > 0 || groups.length === 0) groups.push(current)
  return groups
}

function frame(orgId: string, index: number, count: number, payload: string): string {
  return `{"v":${WIRE_VERSION},"org":"${orgId}","part":[${index + 1},${count}],${payload}}`
}

function finish(orgId: string, body: string, carried: string): WirePart {
  return { body, groupId: orgId, dedupeId: `${orgId}:${sha256(carried)}`, bytes: utf8(body) }
}

export interface DecodedPart {
  org: string
  message: BusMessage
}

/**
 * Reads an SQS body: our part, raw (the subscriptions use raw delivery) or still wrapped in the
 * SNS notification envelope (a subscription without raw delivery), which is unwrapped.
 */
export function decodeBody(body: string): DecodedPart {
  let value: unknown
  try {
    value = JSON.parse(body)
  } catch {
    throw new WireFormatError('body is not JSON')
  }
  if (isRecord(value) && value.Type === 'Notification' && typeof value.Message === 'string') {
    try {
      value = JSON.parse(value.Message)
    } catch {
      throw new WireFormatError('SNS envelope message is not JSON')
    }
  }
  if (!isRecord(value) || value.v !== WIRE_VERSION) throw new WireFormatError('not a quint bus part (version)')
  const org = value.org
  if (typeof org !== 'string' || !isUuid(org)) throw new WireFormatError('part without a valid org id')
  let message: unknown = value.message
  if (typeof value.gz === 'string') {
    try {
      message = JSON.parse(gunzipSync(Buffer.from(value.gz, 'base64')).toString('utf8'))
    } catch {
      throw new WireFormatError('compressed part does not decode')
    }
  }
  if (!isRecord(message) || (message.kind !== 'events' && message.kind !== 'lifecycle')) {
    throw new WireFormatError('part without a bus message')
  }
  if (message.kind === 'events' && !Array.isArray(message.events)) throw new WireFormatError('events part without events')
  if (message.kind === 'lifecycle' && !isRecord(message.lifecycle)) throw new WireFormatError('lifecycle part without a report')
  return { org, message: message as unknown as BusMessage }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
