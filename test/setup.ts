// Preloaded by bunfig.toml: one database server for the whole run.
import { afterAll, beforeAll } from 'bun:test'
import { startTestServer, stopTestServer } from './helpers/db.ts'
import { HOOK_TIMEOUT_MS } from './helpers/db.ts'

beforeAll(async () => {
  await startTestServer()
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  await stopTestServer()
}, HOOK_TIMEOUT_MS)
