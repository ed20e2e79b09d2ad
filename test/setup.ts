// Preloaded by bunfig.toml: one database server for the whole run.
import { afterAll, beforeAll } from 'bun:test'
import { startTestServer, stopTestServer } from './helpers/db.ts'

beforeAll(async () => {
  await startTestServer()
})

afterAll(async () => {
  await stopTestServer()
})
