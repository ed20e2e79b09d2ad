/**
 * Real Redis for cluster-mode tests: the machine's server (TEST_REDIS_URL, default db 9 of
 * 127.0.0.1:6379) or a private redis-server on a free port that a test may stop or freeze. Keys
 * never collide between test files or concurrent runs: every key carries a fresh org id or the
 * hash of a fresh random token. A test that needs Redis fails when it is not reachable.
 */
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import fs from 'node:fs'
import { RedisStateStore } from '../../src/infra/redis.ts'
import { testLog } from './db.ts'

export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/9'

/** A store connected to the shared test Redis; throws (never skips) when Redis does not answer. */
export async function testRedis(
  options: { url?: string; commandTimeoutMs?: number; subscriberPingMs?: number } = {},
): Promise<RedisStateStore> {
  const url = options.url ?? TEST_REDIS_URL
  const store = new RedisStateStore({
    url,
    commandTimeoutMs: options.commandTimeoutMs ?? 1_000,
    subscriberPingMs: options.subscriberPingMs,
    log: testLog,
  })
  try {
    await store.whenReady(5_000)
  } catch (err) {
    await store.close()
    throw new Error(`Redis is required by this test and is not reachable at ${url} (set TEST_REDIS_URL): ${String(err)}`)
  }
  return store
}

/** A store pointed at a port where nothing listens: Redis down from the start. */
export async function unreachableRedis(commandTimeoutMs = 100): Promise<RedisStateStore> {
  const port = await freePort()
  return new RedisStateStore({ url: `redis://127.0.0.1:${port}`, commandTimeoutMs, log: testLog })
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

/** A private redis-server (never the shared one) that the test may freeze (SIGSTOP) or kill. */
export async function privateRedisServer() {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-redis-'))
  const proc = Bun.spawn(
    ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdout: 'ignore', stderr: 'pipe' },
  )
  const url = `redis://127.0.0.1:${port}`
  const deadline = Date.now() + 5_000
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (up) break
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL')
      throw new Error(`could not start a private redis-server on port ${port} (is redis-server installed?)`)
    }
    await Bun.sleep(20)
  }
  return {
    url,
    freeze: () => proc.kill('SIGSTOP'),
    thaw: () => proc.kill('SIGCONT'),
    async stop() {
      proc.kill('SIGCONT')
      proc.kill('SIGKILL')
      await proc.exited
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}
