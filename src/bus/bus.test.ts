import { describe, expect, test } from 'bun:test'
import { decodePayload, encodePayload, payloadJson, type BusMessage } from './bus.ts'

describe('bus payload (sql/0033)', () => {
  const message: BusMessage = {
    kind: 'lifecycle',
    receivedAt: '2026-12-07T00:00:00.000Z',
    lifecycle: { session_id: 's-\u00e9\u{1F600}', state: 'active', note: 'a\\u0000b' } as never,
  }

  test('is zstd-compressed JSON that decodes to the same message', () => {
    const bytes = encodePayload(message)
    // zstd frame magic, never '{': the reader tells it from a plain JSON row by the first byte.
    expect([...bytes.subarray(0, 4)]).toEqual([0x28, 0xb5, 0x2f, 0xfd])
    expect(decodePayload(bytes)).toEqual(message)
    expect(payloadJson(bytes)).toBe(JSON.stringify(message))
  })

  test('a row written before the migration (JSON text as bytes) still reads', () => {
    const plain = Buffer.from(JSON.stringify(message), 'utf8')
    expect(decodePayload(plain)).toEqual(message)
  })
})
