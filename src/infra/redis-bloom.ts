/**
 * @module infra/redis-bloom
 * The JWT revocation filter's shared state in Redis (docs/redis.md, docs/revocation.md): one
 * bitmap per generation, a pointer to the current one, the generations being rebuilt, a repair
 * lock, and the channel adds and new generations are announced on. Scripts keep each step atomic:
 * an add never creates a short bitmap, a commit flips the pointer and announces it at once. The
 * policy (when to load, rebuild, go 'unknown') is src/auth/jwt/revocation-filter.ts's.
 */
import type Redis from 'ioredis'

/**
 * One revoked item into every generation's bitmap (KEYS: current first, then those being built),
 * then its message. A bitmap that does not exist is left alone: SETBIT would create a short,
 * nearly empty bitmap that a loader could take for the whole generation. Answers 1/0 per key.
 */
const BLOOM_ADD_LUA = `
local wrote = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    for j = 3, #ARGV do redis.call('SETBIT', key, ARGV[j], 1) end
    wrote[i] = 1
  else
    wrote[i] = 0
  end
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return wrote
`

/**
 * Finishes a rebuild: ORs the built bits (KEYS[4], a temporary key) into the new generation's
 * bitmap (KEYS[3], which concurrent adds have been writing to), makes it permanent, flips the
 * pointer (KEYS[1]), leaves the building set (KEYS[2]), lets the previous generation expire and
 * announces the new one, all at once. 0 (nothing changed) if the bitmap vanished meanwhile.
 */
const BLOOM_COMMIT_LUA = `
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[4])
  return 0
end
redis.call('BITOP', 'OR', KEYS[3], KEYS[3], KEYS[4])
redis.call('DEL', KEYS[4])
redis.call('PERSIST', KEYS[3])
local old = redis.call('HGET', KEYS[1], 'g')
redis.call('HSET', KEYS[1], 'g', ARGV[1], 'v', ARGV[2], 'm', ARGV[3], 'k', ARGV[4], 'n', ARGV[5], 'at', ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[1])
if old and old ~= ARGV[1] then redis.call('PEXPIRE', ARGV[7] .. old, ARGV[8]) end
redis.call('PUBLISH', ARGV[9], ARGV[10])
return 1
`

/** Releases a lock only if it still holds this owner's token (it may have expired and moved on). */
const UNLOCK_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

/** The revocation filter's keys under one namespace (default `auth:revocation`; tests use their own). */
export const bloomKeys = (ns: string) => ({
  current: `${ns}:bloom:current`,
  building: `${ns}:bloom:building`,
  lock: `${ns}:bloom:rebuild-lock`,
  bitmapPrefix: `${ns}:bloom:`,
  bitmap: (generation: string) => `${ns}:bloom:${generation}`,
  channel: ns,
})

/** A generation as the pointer hash holds it. */
export interface BloomGeneration {
  generation: string
  version: number
  bits: number
  hashes: number
  count: number
  at: number
}

function parseGeneration(h: Record<string, string> | null | undefined): BloomGeneration | null {
  if (!h || typeof h.g !== 'string') return null
  return {
    generation: h.g,
    version: Number(h.v),
    bits: Number(h.m),
    hashes: Number(h.k),
    count: Number(h.n),
    at: Number(h.at),
  }
}

type BloomCommands = Redis & {
  quintUnlock(key: string, owner: string): Promise<number>
  quintBloomAdd(numKeys: number, ...keysAndArgs: (string | number)[]): Promise<number[]>
}

export class RedisBloom {
  readonly #cmd: BloomCommands

  /** `cmd`: the command connection (no offline queue, short timeouts: failures are fast). */
  constructor(cmd: Redis) {
    cmd.defineCommand('quintBloomAdd', { lua: BLOOM_ADD_LUA })
    cmd.defineCommand('quintUnlock', { numberOfKeys: 1, lua: UNLOCK_LUA })
    cmd.defineCommand('quintBloomCommit', { numberOfKeys: 4, lua: BLOOM_COMMIT_LUA })
    this.#cmd = cmd as BloomCommands
  }

  /** The current generation and those being rebuilt (unexpired), in one round trip. */
  async targets(ns: string): Promise<{ current: BloomGeneration | null; building: string[] }> {
    const k = bloomKeys(ns)
    const res = await this.#cmd.multi().hgetall(k.current).zrangebyscore(k.building, Date.now(), '+inf').exec()
    const [[e1, current], [e2, building]] = res as [[Error | null, Record<string, string>], [Error | null, string[]]]
    if (e1 || e2) throw e1 ?? e2
    return { current: parseGeneration(current), building }
  }

  /** The current generation's name and the byte length of `generation`'s bitmap (0 if missing). */
  async verify(ns: string, generation: string): Promise<{ current: string | null; length: number }> {
    const k = bloomKeys(ns)
    const res = await this.#cmd.multi().hget(k.current, 'g').strlen(k.bitmap(generation)).exec()
    const [[e1, current], [e2, length]] = res as [[Error | null, string | null], [Error | null, number]]
    if (e1 || e2) throw e1 ?? e2
    return { current, length }
  }

  /** The whole bitmap of `generation`, or null when it is not there. */
  bitmap(ns: string, generation: string): Promise<Buffer | null> {
    return this.#cmd.getBuffer(bloomKeys(ns).bitmap(generation))
  }

  /**
   * Sets each item's positions in every listed generation that exists and publishes its message,
   * one script per item, pipelined. Answers, per item, 1/0 per generation (1 = written).
   */
  async add(
    ns: string,
    generations: readonly string[],
    items: readonly { positions: ArrayLike<number>; message: string }[],
  ): Promise<number[][]> {
    const k = bloomKeys(ns)
    const keys = generations.map(k.bitmap)
    const p = this.#cmd.pipeline() as unknown as { quintBloomAdd: BloomCommands['quintBloomAdd']; exec: Redis['exec'] }
    for (const item of items) p.quintBloomAdd(keys.length, ...keys, k.channel, item.message, ...Array.from(item.positions))
    const res = (await p.exec()) ?? []
    return res.map(([err, wrote]) => {
      if (err) throw err
      return wrote as number[]
    })
  }

  /**
   * Starts a rebuild: creates `generation`'s bitmap, all zeros and `bits` long (SETBIT of the last
   * bit), expiring unless committed, and lists it as being built so that every add from now on
   * writes to it as well.
   */
  async begin(ns: string, generation: string, bits: number, ttlMs: number): Promise<void> {
    const k = bloomKeys(ns)
    const now = Date.now()
    const res = await this.#cmd
      .multi()
      .setbit(k.bitmap(generation), bits - 1, 0)
      .pexpire(k.bitmap(generation), ttlMs)
      .zremrangebyscore(k.building, '-inf', `(${now}`)
      .zadd(k.building, now + ttlMs, generation)
      .pexpire(k.building, ttlMs)
      .exec()
    const failed = res?.find(([err]) => err)
    if (failed) throw failed[0]
  }

  /** Commits a rebuild (BLOOM_COMMIT_LUA); false when its bitmap vanished meanwhile. */
  async commit(ns: string, gen: BloomGeneration, bytes: Uint8Array, message: string, previousTtlMs: number): Promise<boolean> {
    const k = bloomKeys(ns)
    const tmp = `${k.bitmap(gen.generation)}:upload`
    const multi = this.#cmd.multi().set(tmp, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 'PX', 60_000)
    ;(multi as unknown as { quintBloomCommit(...keysAndArgs: (string | number)[]): unknown }).quintBloomCommit(
      k.current,
      k.building,
      k.bitmap(gen.generation),
      tmp,
      gen.generation,
      gen.version,
      gen.bits,
      gen.hashes,
      gen.count,
      gen.at,
      k.bitmapPrefix,
      previousTtlMs,
      k.channel,
      message,
    )
    const res = await multi.exec()
    const failed = res?.find(([err]) => err)
    if (failed) throw failed[0]
    return res?.[1]?.[1] === 1
  }

  /** One rebuild at a time when instances repair a lost generation by themselves. */
  async tryLock(ns: string, owner: string, ttlMs: number): Promise<boolean> {
    return (await this.#cmd.set(bloomKeys(ns).lock, owner, 'PX', ttlMs, 'NX')) === 'OK'
  }

  async unlock(ns: string, owner: string): Promise<void> {
    await this.#cmd.quintUnlock(bloomKeys(ns).lock, owner)
  }
}
