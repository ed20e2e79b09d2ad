/**
 * @module lifecycle
 * Process state for readiness and the ordered shutdown. Steps registered with `onShutdown` run in
 * registration order (listener, then workers, then stores), all under one hard deadline. Each
 * step gets a share of the time left and is left behind when it overruns it (issue 14: a
 * revocation poll stuck on a dead database held the listener's close for 18.8 s), so one slow
 * step can never eat the budget of the steps after it.
 */
import type { Logger } from './infra/log.ts'

export type State = 'starting' | 'ready' | 'draining' | 'stopped'

export interface StepOptions {
  /** Weight of this step in the time left when it starts (default 1). */
  share?: number
  /** A fixed budget instead of a share (the drain delay: exactly as configured). */
  budgetMs?: number
}

interface Step {
  name: string
  share: number
  budgetMs: number | undefined
  run: (budgetMs: number) => Promise<void> | void
}

export class Lifecycle {
  #state: State = 'starting'
  readonly #steps: Step[] = []
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

  /**
   * `run` receives its budget in ms (its share of the time left): a step that can cut its own
   * work short (force-closing connections) should do so before the budget ends.
   */
  onShutdown(name: string, run: (budgetMs: number) => Promise<void> | void, options: StepOptions = {}): void {
    this.#steps.push({ name, run, share: options.budgetMs === undefined ? (options.share ?? 1) : 0, budgetMs: options.budgetMs })
  }

  /**
   * Turns not-ready at once, then runs every step in order. Resolves true when every step
   * finished within its share, false when one was left behind or the deadline cut them short
   * (the caller exits non-zero).
   */
  shutdown(reason: string, deadlineMs: number): Promise<boolean> {
    if (this.#shutdown) return this.#shutdown.then(() => this.#state === 'stopped')
    this.#state = 'draining'
    this.log.info({ reason, deadline_ms: deadlineMs }, 'shutting down')
    const end = Date.now() + deadlineMs
    const outcome = (async () => {
      let clean = true
      for (let i = 0; i < this.#steps.length; i++) {
        const step = this.#steps[i]!
        const left = Math.max(0, end - Date.now())
        const weights = this.#steps.slice(i).reduce((sum, s) => sum + s.share, 0)
        const budget = step.budgetMs === undefined ? Math.floor((left * step.share) / weights) : Math.min(step.budgetMs, left)
        const started = Date.now()
        let timer: ReturnType<typeof setTimeout> | undefined
        const overrun = new Promise<'overrun'>((resolve) => {
          timer = setTimeout(() => resolve('overrun'), budget)
        })
        const done = Promise.resolve()
          .then(() => step.run(budget))
          .then(
            () => 'done' as const,
            (err: unknown) => {
              this.log.error({ err, step: step.name }, 'shutdown step failed')
              return 'done' as const
            },
          )
        const result = await Promise.race([done, overrun])
        clearTimeout(timer)
        if (result === 'done') this.log.info({ step: step.name, ms: Date.now() - started }, 'shutdown step done')
        else {
          clean = false
          this.log.error(
            { step: step.name, budget_ms: budget },
            'shutdown step overran its share of the deadline; going on without it',
          )
        }
      }
      if (clean) this.#state = 'stopped'
      else this.log.error({ deadline_ms: deadlineMs }, 'shutdown finished with steps left behind')
      return clean
    })()
    this.#shutdown = outcome.then(() => {})
    return outcome
  }
}
