import { afterAll, expect, test } from 'bun:test'
import { migrate, MIGRATIONS } from '../../src/infra/migrations.ts'
import { decodePayload } from '../../src/bus/bus.ts'
import { emptyDatabase, HOOK_TIMEOUT_MS } from '../helpers/db.ts'

const drops: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const d of drops) await d()
}, HOOK_TIMEOUT_MS)

test('a json payload written before 0033 decodes after it', async () => {
  const db = await emptyDatabase()
  drops.push(db.drop)
  await migrate(
    db.owner,
    MIGRATIONS.filter((m) => m.version < 33),
  )
  const org = crypto.randomUUID()
  await db.owner`insert into organizations (id, name) values (${org}, 'o')`
  const message = { kind: 'lifecycle', receivedAt: 'x', lifecycle: { session_id: 's\u0000\ud800é😀', note: 'a\\u0000b' } }
  await db.owner`insert into bus_batches (org_id, kind, payload) values (${org}, 'lifecycle', ${JSON.stringify(message)}::text::json)`
  await migrate(db.owner)
  const [row] = await db.owner<{ payload: Uint8Array }[]>`select payload from bus_batches`
  expect(decodePayload(row!.payload)).toEqual(JSON.parse(JSON.stringify(message)))
}, 60_000)
