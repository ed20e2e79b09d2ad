/**
 * @module infra/rung
 * Orgs whose fleet log or live log a transaction appended to, for the ring after its commit
 * (src/infra/bell.ts). A request rings itself after its commit; a consumer loop cannot (it runs
 * in a worker thread), so it records the orgs here and its parent rings them once the round
 * committed. Several consumer loops share one thread (issue 13), each in its own scope: a round
 * of one loop must never take (and ring early) what another loop's transaction has not committed.
 * Outside a scope the thread's shared sets are used.
 */
import { AsyncLocalStorage } from 'node:async_hooks'

export interface Rungs {
  fleet: Set<string>
  live: Set<string>
}

const scope = new AsyncLocalStorage<Rungs>()
const shared: Rungs = { fleet: new Set(), live: new Set() }

/** The current scope's sets (the thread's own outside any scope). */
export const rungs = (): Rungs => scope.getStore() ?? shared

/** Runs `fn` with sets of its own (one consumer loop). */
export const inRungScope = <T>(fn: () => T): T => scope.run({ fleet: new Set(), live: new Set() }, fn)

/** The orgs recorded in the current scope for `log` since the last call; clears them. */
export function takeRung(log: keyof Rungs): string[] {
  const set = rungs()[log]
  const out = [...set]
  set.clear()
  return out
}
