/**
 * @module features/policies/scope
 * Whether a policy's or a signature's scope takes in a machine, in memory: the same rule the
 * policy document's SQL applies (./document.ts), for the fleet stream and simulations that hold
 * many machines at once.
 */

export interface Scope {
  /** Empty, with `tags` empty: every machine. */
  machine_ids?: readonly string[]
  tags?: readonly string[]
}

/** Every machine, or the machine by id, or one of its tags (a machine with no id: only "every"). */
export function inScope(scope: Scope | undefined, machineId: string | null, machineTags: readonly string[]): boolean {
  const ids = scope?.machine_ids ?? []
  const tags = scope?.tags ?? []
  if (ids.length === 0 && tags.length === 0) return true
  if (machineId === null) return false
  return ids.includes(machineId) || tags.some((t) => machineTags.includes(t))
}
