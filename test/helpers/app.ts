/**
 * The service composed exactly as `serve` composes it (src/app.ts composeApp), on a test database,
 * driven in process through app.fetch.
 */
import { composeApp } from '../../src/app.ts'
import { randomBytes } from 'node:crypto'
import type { RevocationFilter } from '../../src/auth/jwt/revocation-filter.ts'
import { SecretBox } from '../../src/auth/secret-box.ts'
import { loadConfig } from '../../src/config.ts'
import { LocalBus, type Bus } from '../../src/bus/bus.ts'
import type { Sql } from '../../src/infra/db.ts'
import type { RedisStateStore } from '../../src/infra/redis.ts'
import { Lifecycle } from '../../src/lifecycle.ts'
import { createOrg } from '../../src/features/orgs/service.ts'
import { testDatabase, testLog, type TestDatabase } from './db.ts'

/** One master key per test run: every app instance on a test database opens what another sealed. */
export const testSecrets = new SecretBox(randomBytes(32))

/**
 * `env`: configuration overrides, as environment variables; `bus`: the cluster bus in its tests;
 * `redis`: cluster mode's shared state (test/helpers/redis.ts), one per app as each instance has
 * its own connections; `revocationFilter`: a namespaced or tuned filter instead of the default;
 * `start: false` leaves loading that filter (and the revocation poll) to the test; `readSql`: the
 * read API's pool (a stand-in replica, issue 9) instead of `db.app`.
 */
export function testApp(
  db: TestDatabase,
  env: Record<string, string> = {},
  bus: Bus = new LocalBus(),
  options: { redis?: RedisStateStore; revocationFilter?: RevocationFilter; start?: boolean; readSql?: Sql } = {},
) {
  const lifecycle = new Lifecycle(testLog)
  const composed = composeApp({
    config: loadConfig(env),
    sql: db.app,
    readSql: options.readSql,
    log: testLog,
    lifecycle,
    bus,
    redis: options.redis,
    secrets: testSecrets,
    revocationFilter: options.revocationFilter,
  })
  const ready = options.start === false ? Promise.resolve() : composed.start()
  db.onDrop(() => composed.stop())
  lifecycle.markReady()
  const { app, resolver } = composed

  async function call(
    method: string,
    path: string,
    init: { token?: string; json?: unknown; body?: RequestInit['body']; headers?: Record<string, string> } = {},
  ) {
    const headers: Record<string, string> = { ...init.headers }
    if (init.token) headers.authorization = `Bearer ${init.token}`
    let body = init.body
    if (init.json !== undefined) {
      body = JSON.stringify(init.json)
      headers['content-type'] ??= 'application/json'
    }
    const res = await app.fetch(new Request(`http://test${path}`, { method, headers, body }))
    // An event stream never ends by itself: its status and headers are the answer.
    if (res.headers.get('content-type')?.startsWith('text/event-stream')) {
      await res.body?.cancel()
      return { status: res.status, headers: res.headers, body: null, text: '' }
    }
    const text = await res.text()
    let parsed: any = null
    try {
      parsed = text ? JSON.parse(text) : null
    } catch {
      parsed = text
    }
    return { status: res.status, headers: res.headers, body: parsed, text }
  }

  return { app, lifecycle, resolver, metrics: composed.metrics, routes: composed.routes, live: composed.live, ready, call }
}

/** A fresh database, the app on it, and two orgs (A and B) with their first credentials. */
export async function twoOrgApp() {
  const db = await testDatabase()
  const t = testApp(db)
  const a = await createOrg(db.app, 'org A', 'cli')
  const b = await createOrg(db.app, 'org B', 'cli')
  return { db, t, a, b }
}
