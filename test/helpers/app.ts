/** The Hono app built on a test database, driven in process through app.fetch. */
import { buildApp } from '../../src/app.ts'
import { randomBytes } from 'node:crypto'
import { CredentialResolver } from '../../src/auth/credentials.ts'
import { SecretBox } from '../../src/auth/secret-box.ts'
import { loadConfig } from '../../src/config.ts'
import { LocalBus, type Bus } from '../../src/features/ingest/bus.ts'
import { createMetrics } from '../../src/infra/metrics.ts'
import type { RedisStateStore } from '../../src/infra/redis.ts'
import { Lifecycle } from '../../src/lifecycle.ts'
import { createOrg } from '../../src/features/orgs/service.ts'
import { testDatabase, testLog, type TestDatabase } from './db.ts'

/** One master key per test run: every app instance on a test database opens what another sealed. */
export const testSecrets = new SecretBox(randomBytes(32))

/**
 * `env`: configuration overrides, as environment variables; `bus`: the cluster bus in its tests;
 * `redis`: cluster mode's shared state (test/helpers/redis.ts), one per app as each instance has
 * its own connections.
 */
export function testApp(
  db: TestDatabase,
  env: Record<string, string> = {},
  bus: Bus = new LocalBus(),
  options: { redis?: RedisStateStore } = {},
) {
  const lifecycle = new Lifecycle(testLog)
  const metrics = createMetrics()
  const resolver = new CredentialResolver(db.app, testLog, { shared: options.redis, metrics })
  const { app } = buildApp({
    config: loadConfig(env),
    sql: db.app,
    log: testLog,
    metrics,
    lifecycle,
    resolver,
    bus,
    redis: options.redis,
    secrets: testSecrets,
  })
  lifecycle.markReady()

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
    const text = await res.text()
    let parsed: any = null
    try {
      parsed = text ? JSON.parse(text) : null
    } catch {
      parsed = text
    }
    return { status: res.status, headers: res.headers, body: parsed, text }
  }

  return { app, lifecycle, resolver, call }
}

/** A fresh database, the app on it, and two orgs (A and B) with their first credentials. */
export async function twoOrgApp() {
  const db = await testDatabase()
  const t = testApp(db)
  const a = await createOrg(db.app, 'org A', 'cli')
  const b = await createOrg(db.app, 'org B', 'cli')
  return { db, t, a, b }
}
