/**
 * @module console/ui/pages/policies-preview
 * The simulation preview (`POST /v1/policies/simulate`, docs/simulate.md): what a draft policy
 * or signature would have blocked, flagged or sent for approval over the last days, by machine,
 * agent and tool, with samples. Shown before anything reaches the fleet, so nobody finds out
 * from a developer that a rule blocks their whole team.
 */
import { useState } from 'preact/hooks'
import { api, ApiError, type Body, type Ok } from '../api/client.ts'
import { count, short, when } from '../format.ts'
import { href } from '../router.ts'

export type SimulateBody = Body<'/v1/policies/simulate', 'post'>
export type Simulation = Ok<'/v1/policies/simulate', 'post'>
type Counts = Simulation['totals']

export interface SimulationState {
  result: Simulation | null
  /** The draft the result is for (JSON): a result for another draft is stale. */
  forDraft: string | null
  error: ApiError | Error | null
  busy: boolean
  /** The result, or the error (also kept in `error`). */
  run(body: SimulateBody): Promise<Simulation | Error>
  clear(): void
}

export function useSimulation(): SimulationState {
  const [s, set] = useState<Omit<SimulationState, 'run' | 'clear'>>({ result: null, forDraft: null, error: null, busy: false })
  const run = async (body: SimulateBody) => {
    const key = JSON.stringify(body)
    set((x) => ({ ...x, busy: true, error: null }))
    try {
      const result = await api.post('/v1/policies/simulate', { body })
      set({ result, forDraft: key, error: null, busy: false })
      return result
    } catch (err) {
      set({ result: null, forDraft: null, error: err as Error, busy: false })
      return err as Error
    }
  }
  return { ...s, run, clear: () => set({ result: null, forDraft: null, error: null, busy: false }) }
}

const decided = (c: Counts) => (c.block ?? 0) + (c.flag ?? 0) + (c.require_approval ?? 0) + (c.alert ?? 0)

function sentence(r: Simulation): string {
  const t = r.totals
  if (r.semantics === 'flow_shape') return `it would have matched ${count(t.alert ?? 0)} session${t.alert === 1 ? '' : 's'}`
  return `it would have blocked ${count(t.block ?? 0)}, flagged ${count(t.flag ?? 0)} and sent ${count(t.require_approval ?? 0)} for approval`
}

function Breakdown<T extends Counts>(p: {
  title: string
  column: string
  rows: readonly T[]
  name(row: T): string
  flow: boolean
}) {
  if (p.rows.length === 0) return null
  const cols: (keyof Counts)[] = p.flow ? ['alert'] : ['block', 'flag', 'require_approval']
  const label = { block: 'Blocked', flag: 'Flagged', require_approval: 'Approval', alert: 'Sessions' }
  return (
    <table class="plain compact">
      <caption>{p.title}</caption>
      <thead>
        <tr>
          <th scope="col">{p.column}</th>
          {cols.map((c) => (
            <th scope="col" key={c} class="num">
              {label[c]}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {p.rows.slice(0, 10).map((r, i) => (
          <tr key={i}>
            <th scope="row">{p.name(r)}</th>
            {cols.map((c) => (
              <td key={c} class="num">
                {count(r[c] ?? 0)}
              </td>
            ))}
          </tr>
        ))}
      </tbody>
      {p.rows.length > 10 && (
        <tfoot>
          <tr>
            <td colSpan={cols.length + 1} class="hint">
              and {p.rows.length - 10} more
            </td>
          </tr>
        </tfoot>
      )}
    </table>
  )
}

export function SimulationView({ result: r, headingLevel = 3 }: { result: Simulation; headingLevel?: 2 | 3 }) {
  const H = headingLevel === 2 ? 'h2' : 'h3'
  const flow = r.semantics === 'flow_shape'
  const hosts = new Map(r.by_machine.map((m) => [m.machine_id, m.hostname]))
  return (
    <section class="simulation" aria-labelledby="simulation-title">
      <H id="simulation-title" tabIndex={-1}>
        What it would have done
      </H>
      <p class="sim-summary" role="status">
        Over the last {r.days} day{r.days === 1 ? '' : 's'} ({count(r.evaluated)} actions replayed), {sentence(r)}.
      </p>
      {decided(r.totals) === 0 && (
        <p class="hint">
          Nothing in that window would have been decided by it. If it should have, compare its tool and agent names with what the{' '}
          <a href={href(['events'])}>Events</a> page shows (names match case-insensitively, * only at an end).
        </p>
      )}
      {r.shadowed > 0 && (
        <div class="shadowed">
          <p>
            {count(r.shadowed)} more match its rules but an earlier policy decides them first (the daemon's first matching rule
            wins):
          </p>
          <ul>
            {r.shadowed_by.map((s) => (
              <li key={s.policy_id}>
                {s.name} ({s.action}): {count(s.count)}
              </li>
            ))}
          </ul>
        </div>
      )}
      <div class="sim-grid">
        <Breakdown
          title="By machine"
          column="Machine"
          rows={r.by_machine}
          flow={flow}
          name={(m) => m.hostname ?? (m.machine_id ? short(m.machine_id) : 'no machine (API ingest)')}
        />
        <Breakdown title="By agent" column="Agent" rows={r.by_agent} flow={flow} name={(a) => a.agent || '(none)'} />
        <Breakdown title="By tool" column="Tool" rows={r.by_tool} flow={flow} name={(t) => t.tool || '(none)'} />
      </div>
      {r.samples.length > 0 && (
        <table class="plain compact samples">
          <caption>Sample events, newest first</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Machine</th>
              <th scope="col">Agent</th>
              <th scope="col">Tool</th>
              <th scope="col">Decision</th>
            </tr>
          </thead>
          <tbody>
            {r.samples.map((s) => (
              <tr key={s.id}>
                <td>
                  <a href={href(['events', s.id])}>{when(s.occurred_at)}</a>
                </td>
                <td>{s.machine_id ? (hosts.get(s.machine_id) ?? short(s.machine_id)) : '—'}</td>
                <td>{s.agent || '—'}</td>
                <td>
                  <code>{s.tool || '—'}</code>
                </td>
                <td>{s.action}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  )
}
