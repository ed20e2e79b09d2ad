/**
 * @module console/ui/pages/policies-delivery
 * After a save: which machines in the policy's scope already hold their new policy document
 * ("N of M machines hold it"), and which do not yet. Each machine view says what hash it should
 * hold and what it was last handed (`policy.current`); the live stream's `fleet` topic announces
 * deliveries, and each one refetches the machines. Without the stream (offline, or a server
 * without it) the panel refetches every few seconds instead, so it still converges.
 */
import type { Ok } from '../api/client.ts'
import { Badge, ErrorNote, LiveBadge, Loading } from '../components/common.tsx'
import { ago, count, short } from '../format.ts'
import { useLiveRefresh, useLoad } from '../hooks.ts'
import { href } from '../router.ts'
import { allMachines } from './policies-fields.tsx'

type Machine = Ok<'/v1/machines', 'get'>['machines'][number]
type Scope = Ok<'/v1/policies/{id}', 'get'>['scope']

const inScope = (scope: Scope, m: Machine) =>
  m.status === 'active' && (scope.all || scope.machine_ids.includes(m.id) || m.tags.some((t) => scope.tags.includes(t)))

export function DeliveryPanel({ scope, enabled }: { scope: Scope; enabled: boolean }) {
  const machines = useLoad((signal) => allMachines(signal), [])
  // Any `fleet` item may move a hash (`delivery`, or a change that gives machines a new one); a
  // burst of deliveries (a fleet of hundreds) is one refetch.
  const live = useLiveRefresh('fleet', machines.reload, { delayMs: 500 })

  const inside = (machines.data ?? []).filter((m) => inScope(scope, m))
  const current = inside.filter((m) => m.policy.current)
  const behind = inside.filter((m) => !m.policy.current)

  return (
    <section class="card delivery" aria-labelledby="delivery-title">
      <div class="row">
        <h2 id="delivery-title">Delivery to the fleet</h2>
        <LiveBadge state={live} />
      </div>
      <ErrorNote error={machines.error} retry={machines.reload} />
      {!machines.data ? (
        machines.error ? null : (
          <Loading />
        )
      ) : inside.length === 0 ? (
        <p>
          No active machine is in this policy's scope yet. Machines that register later, or get a tag it names, receive it at
          their first heartbeat. See the <a href={href(['fleet'])}>Fleet</a> page.
        </p>
      ) : (
        <>
          <p class="big delivery-count" role="status" aria-live="polite">
            {count(current.length)} of {count(inside.length)} machine{inside.length === 1 ? '' : 's'}{' '}
            {current.length === 1 ? 'holds' : 'hold'} it
          </p>
          {!enabled && <p class="hint">The policy is disabled: machines hold a document without it.</p>}
          {behind.length === 0 ? (
            <p>Every machine in scope holds its current policy document.</p>
          ) : (
            <table class="plain compact">
              <caption>Not yet current</caption>
              <thead>
                <tr>
                  <th scope="col">Machine</th>
                  <th scope="col">Online</th>
                  <th scope="col">Last handed a policy</th>
                  <th scope="col">Holds</th>
                </tr>
              </thead>
              <tbody>
                {behind.map((m) => {
                  const d = m.policy
                  return (
                    <tr key={m.id}>
                      <th scope="row">
                        <a href={href(['fleet', m.id])}>{m.hostname ?? m.client_machine_id}</a>
                      </th>
                      <td>{m.online ? <Badge kind="online">online</Badge> : <Badge kind="offline">offline</Badge>}</td>
                      <td>
                        {d.delivered_at ? `${ago(d.delivered_at)}${d.delivered_via ? ` by ${d.delivered_via}` : ''}` : 'never'}
                      </td>
                      <td>
                        <code title={d.delivered_hash ?? undefined}>
                          {d.delivered_hash ? short(d.delivered_hash, 12) : 'none'}
                        </code>
                      </td>
                    </tr>
                  )
                })}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  )
}
