import { describe, expect, test } from 'bun:test'
import type { BusMessage, WireEvent } from './bus.ts'
import { decodeBody, encodeMessage, PART_MAX_BYTES, PartTooLargeError, WireFormatError } from './wire.ts'

const ORG = '6f1c2a8e-1d1b-4c5e-9a70-2f1b8c9d0e11'
const OTHER = '0b7e4c3a-5d6f-4a1b-8c9d-0e1f2a3b4c5d'

const wire = (i: number, args: unknown = { i }): WireEvent =>
  ({ eventKey: `e:${i}`, eventId: String(i), occurredAt: new Date(0).toISOString(), arguments: args }) as unknown as WireEvent
const batch = (events: WireEvent[]): BusMessage => ({
  kind: 'events',
  receivedAt: new Date(0).toISOString(),
  machineId: null,
  events,
})

describe('bus wire format', () => {
  test('a small message is one part that decodes to itself', () => {
    const m = batch([wire(1), wire(2)])
    const parts = encodeMessage(ORG, m)
    expect(parts).toHaveLength(1)
    expect(parts[0]!.groupId).toBe(ORG)
    expect(decodeBody(parts[0]!.body)).toEqual({ org: ORG, message: m })
  })

  test('a large message is split in order into parts under the limit', () => {
    const events = Array.from({ length: 300 }, (_, i) => wire(i, { pad: 'p'.repeat(2000) }))
    const parts = encodeMessage(ORG, batch(events))
    expect(parts.length).toBeGreaterThanOrEqual(3)
    for (const p of parts) expect(p.bytes).toBeLessThanOrEqual(PART_MAX_BYTES)
    const back = parts.flatMap((p) => (decodeBody(p.body).message as Extract<BusMessage, { kind: 'events' }>).events)
    expect(back).toEqual(events)
  })

  test('an event too big alone is compressed; an incompressible one is refused', () => {
    const big = wire(1, { blob: 'ab'.repeat(200_000) })
    const parts = encodeMessage(ORG, batch([wire(0), big, wire(2)]))
    expect(parts).toHaveLength(3)
    expect(parts[1]!.body).toContain('"gz":')
    expect((decodeBody(parts[1]!.body).message as Extract<BusMessage, { kind: 'events' }>).events).toEqual([big])
    const random = Buffer.from(crypto.getRandomValues(new Uint8Array(300_000))).toString('hex')
    expect(() => encodeMessage(ORG, batch([wire(3, { random })]))).toThrow(PartTooLargeError)
  })

  test('dedupe ids carry the org and follow what is carried, not when', () => {
    const m1 = batch([wire(1)])
    const m2 = { ...batch([wire(1)]), receivedAt: new Date(1000).toISOString() }
    const [a] = encodeMessage(ORG, m1)
    expect(a!.dedupeId.startsWith(`${ORG}:`)).toBe(true)
    expect(a!.dedupeId.length).toBeLessThanOrEqual(128)
    expect(encodeMessage(ORG, m2)[0]!.dedupeId).toBe(a!.dedupeId)
    expect(encodeMessage(OTHER, m1)[0]!.dedupeId).not.toBe(a!.dedupeId)
    expect(encodeMessage(ORG, batch([wire(2)]))[0]!.dedupeId).not.toBe(a!.dedupeId)
  })

  test('characters SQS refuses are escaped; the SNS envelope is unwrapped', () => {
    const m = batch([wire(1, { s: 'a\uFFFEb\uFFFF' })])
    const [p] = encodeMessage(ORG, m)
    expect(/[\uFFFE\uFFFF]/.test(p!.body)).toBe(false)
    expect(decodeBody(p!.body).message).toEqual(m)
    const envelope = JSON.stringify({ Type: 'Notification', MessageId: 'x', TopicArn: 'arn', Message: p!.body })
    expect(decodeBody(envelope)).toEqual({ org: ORG, message: m })
  })

  test('anything else is a WireFormatError', () => {
    for (const body of [
      'nope',
      '{}',
      '{"v":1,"org":"not-a-uuid","message":{"kind":"events","events":[]}}',
      `{"v":1,"org":"${ORG}"}`,
    ]) {
      expect(() => decodeBody(body)).toThrow(WireFormatError)
    }
  })
})
