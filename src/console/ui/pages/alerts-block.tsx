/**
 * @module console/ui/pages/alerts-block
 * "Block agent": a policy refusing every tool call of one agent on every machine, at the highest
 * priority an org's policy can have. It can stop a whole team's work, so it is never one click:
 * the confirmation shows the simulation of exactly that policy (what it would have blocked over
 * the last 7 days, where) and the button to create it is offered only once that is on screen.
 */
import { useState } from 'preact/hooks'
import { api } from '../api/client.ts'
import { ErrorNote, Loading } from '../components/common.tsx'
import { navigate } from '../router.ts'
import { Confirm } from './policies-dialog.tsx'
import { blockAgent, toBody, TOP_PRIORITY } from './policies-draft.ts'
import { SimulationView, useSimulation } from './policies-preview.tsx'

export function BlockAgent({ agent, alertId }: { agent: string; alertId: string }) {
  const [open, setOpen] = useState(false)
  const [saving, setSaving] = useState(false)
  const [failure, setFailure] = useState<Error | null>(null)
  const sim = useSimulation()
  const body = toBody(blockAgent(agent, alertId))

  const start = () => {
    setOpen(true)
    setFailure(null)
    void sim.run({ policy: body, days: 7, samples: 10 })
  }
  const create = async () => {
    setSaving(true)
    try {
      const created = await api.post('/v1/policies', { body })
      setOpen(false)
      navigate(`#/policies/${encodeURIComponent(created.id)}?saved=created`)
    } catch (err) {
      setFailure(err as Error)
    } finally {
      setSaving(false)
    }
  }

  return (
    <>
      <button type="button" class="danger" onClick={start}>
        Block agent
      </button>
      <Confirm
        open={open}
        title={`Block agent ${agent}?`}
        confirmLabel={`Block ${agent} on every machine`}
        danger
        busy={saving}
        ready={!sim.busy && sim.result !== null}
        onCancel={() => setOpen(false)}
        onConfirm={() => void create()}
      >
        <p>
          Creates the policy “{body.name}”: every tool call of agent <code>{agent}</code> is refused on every machine of the
          organization, above all your other policies (priority {TOP_PRIORITY.toLocaleString()}), from the moment each daemon
          receives it. Delete or disable the policy to undo it.
        </p>
        <ErrorNote error={failure ?? sim.error} />
        {sim.busy ? <Loading /> : sim.result ? <SimulationView result={sim.result} /> : null}
      </Confirm>
    </>
  )
}
