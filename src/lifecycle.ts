/**
 * @module lifecycle
 * Process state for readiness and the ordered shutdown. Steps registered with `onShutdown` run in
 * registration order (listener, then workers, then stores), all under one hard deadline.
 */
import type { Logger } from './infra/log.ts'

export type State = 'starting' | 'ready' | 'draining' | 'stopped'

export class Lifecycle {
  #state: State = 'starting'
  readonly #steps: { name: string; run: () => Promise<void> | void }[] = []
  #shutdown: Promise<void> | null = null

  private readonly log: Logger

  constructor(log: Logger) {
    this.log = log
  }

  get state(): State {
    return this.#state
  }

  markReady(): void {
    if (this.#state === 'starting') this.#state = 'ready'
  }

  onShutdown(name: string, run: () => Promise<void> | void): void {
    this.#steps.push({ name, run })
  }

  /**
   * Turns not-ready at once, then runs every step in order. Resolves true when all steps finished
   * before `deadlineMs`, false when the deadline cut them short (the caller exits non-zero).
   */
  shutdown(reason: string, deadlineMs: number): Promise<boolean> {
    if (this.#shutdown) return this.#shutdown.then(() => this.#state === 'stopped')
    this.#state = 'draining'
    this.log.info({ reason, deadline_ms: deadlineMs }, 'shutting down')
    let timer: ReturnType<typeof setTimeout> | undefined
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), deadlineMs)
    })
    const steps = (async () => {
      for (const step of this.#steps) {
        const started = Date.now()
        try {
          await step.run()
          this.log.info({ step: step.name, ms: Date.now() - started }, 'shutdown step done')
        } catch (err) {
          this.log.error({ err, step: step.name }, 'shutdown step failed')
        }
      }
      return 'done' as const
    })()
    const outcome = Promise.race([steps, deadline]).then((result) => {
      clearTimeout(timer)
      if (result === 'done') this.#state = 'stopped'
      else this.log.error({ deadline_ms: deadlineMs }, 'shutdown deadline reached')
      return result === 'done'
    })
    this.#shutdown = outcome.then(() => {})
    return outcome
  }
}
