/**
 * Issue 4's check: revocation is visible to a second server instance sharing Redis within 100 ms,
 * with two real `serve` processes (not two apps in one process). Both run on the same database
 * (the test server's: the machine's Postgres with DATABASE_URL, otherwise the run's embedded one,
 * reached by URL like any external database) and the same private redis-server, with consumers
 * off. Both cache the agent token; it is revoked through A; B must answer 401 within 100 ms of
 * A's 200.
 *
 * The embedded server listens on a Unix socket only, which a postgres:// URL cannot name
 * (postgres.js takes the socket from a host option, not from the URL), so in that mode the test
 * forwards a loopback TCP port to the socket and both processes connect to it as to any server.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import type { DbTarget } from '../../src/infra/db.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'
import { childEnv, killSpawned, startServer, type RunningServer } from '../helpers/process.ts'
import { privateRedisServer } from '../helpers/redis.ts'

let db: TestDatabase
let org: CreatedOrg
let redis: Awaited<ReturnType<typeof privateRedisServer>>
let dir: string
let A: RunningServer
let B: RunningServer
const forwarders: net.Server[] = []

/** Loopback TCP → the embedded server's Unix socket. */
async function forwardToSocket(socketPath: string): Promise<number> {
  const server = net.createServer((client) => {
    const upstream = net.connect(socketPath)
    client.pipe(upstream)
    upstream.pipe(client)
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  forwarders.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as net.AddressInfo).port
}

async function urlOf(target: DbTarget): Promise<string> {
  if ('url' in target) return target.url
  const u = new URL('postgres://127.0.0.1')
  u.port = String(target.host.startsWith('/') ? await forwardToSocket(`${target.host}/.s.PGSQL.${target.port}`) : target.port)
  if (!target.host.startsWith('/')) u.hostname = target.host
  u.username = target.user
  u.password = target.password
  u.pathname = `/${target.database}`
  return u.toString()
}

beforeAll(async () => {
  db = await testDatabase()
  org = await createOrg(db.app, 'two processes', 'cli')
  redis = await privateRedisServer()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-two-'))
  const env = childEnv({
    DATABASE_URL: await urlOf(db.ownerTarget),
    DATABASE_APP_URL: await urlOf(db.appTarget),
    REDIS_URL: redis.url,
    // Instances sharing a database share the master key that seals the signing keys.
    AUTH_MASTER_KEY: randomBytes(32).toString('hex'),
    QUINT_CONSUMERS: 'none',
    WEBHOOK_DELIVERY: 'false',
    QUINT_BOOTSTRAP_ORG: '',
    QUINT_DATA_DIR: dir,
    LOG_LEVEL: 'warn',
    SHUTDOWN_TIMEOUT_MS: '5000',
  })
  ;[A, B] = await Promise.all([startServer(env), startServer(env)])
  // Both filters follow the shared generation (the first instance builds it from Postgres).
  await Promise.all([filterLoaded(A), filterLoaded(B)])
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  await killSpawned()
  for (const f of forwarders) f.close()
  await redis?.stop()
  await db?.drop()
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
}, HOOK_TIMEOUT_MS)

async function filterLoaded(s: RunningServer): Promise<void> {
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    const text = await (await fetch(`${s.url}/metrics`)).text()
    if (/^quint_revocation_filter_loaded 1$/m.test(text)) return
    await Bun.sleep(50)
  }
  throw new Error(`revocation filter not loaded\n${s.stderr()}\n${s.stdout().slice(-2000)}`)
}

async function call(s: RunningServer, method: string, p: string, token: string, json?: unknown) {
  const res = await fetch(`${s.url}${p}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(json === undefined ? {} : { 'content-type': 'application/json' }) },
    body: json === undefined ? undefined : JSON.stringify(json),
  })
  return { status: res.status, body: (await res.json().catch(() => null)) as any }
}

test('a token revoked through process A is refused by process B within 100 ms', async () => {
  const app = await call(A, 'POST', '/tokens/app', org.admin_key, { name: 'root', scopes: ['*'] })
  expect(app.status).toBe(201)
  const bearer = await call(A, 'POST', '/tokens/bearer', org.admin_key, {
    app_token_hash: app.body.token_hash,
    environment: 'prod',
  })
  const agent = await call(A, 'POST', '/tokens/agent', org.admin_key, {
    bearer_jti: bearer.body.jti,
    agent_id: 'agent-1',
    rbac: { allowed_actions: ['data:read:*'] },
  })
  expect(agent.status).toBe(201)
  const token: string = agent.body.token

  // Validated, so cached, on both; B was given the token only ever by A's minting.
  for (const s of [A, B, A, B]) expect((await call(s, 'GET', '/v1/auth/whoami', token)).status).toBe(200)

  const revoked = await call(A, 'DELETE', `/revocation/${agent.body.jti}`, org.admin_key)
  const answered = performance.now()
  expect(revoked.status).toBe(200)
  let status = 200
  let polls = 0
  while (status === 200 && performance.now() - answered < 2_000) {
    status = (await call(B, 'GET', '/v1/auth/whoami', token)).status
    polls++
  }
  const elapsed = performance.now() - answered
  expect(status).toBe(401)
  expect(elapsed).toBeLessThan(100)
  console.log(`revocation visible on process B ${elapsed.toFixed(1)} ms after A's 200 (${polls} poll${polls === 1 ? '' : 's'})`)
  expect((await call(A, 'GET', '/v1/auth/whoami', token)).status).toBe(401)
})
