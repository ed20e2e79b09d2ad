/**
 * @module console/ui/pages/settings-webhook-deliveries
 * One webhook's delivery log (`GET /v1/webhooks/{id}/deliveries`): each delivery's status, its
 * attempts with the endpoint's answers, and Redeliver for one that finished (a pending one may be
 * in flight on another instance: the API refuses it, and so does the button).
 */
import { useEffect, useState } from 'preact/hooks'
import { api, type Ok, type Query } from '../api/client.ts'
import { Badge, Loading } from '../components/common.tsx'
import { ago, when } from '../format.ts'
import { ActionNote, MoreButton, Problem, useAction, usePaged, valueOf } from './settings-ui.tsx'

type Webhook = Ok<'/v1/webhooks', 'get'>['webhooks'][number]
type Delivery = Ok<'/v1/webhooks/{id}/deliveries', 'get'>['deliveries'][number]
type Status = NonNullable<Query<'/v1/webhooks/{id}/deliveries', 'get'>['status']>

/**
 * Deliveries are not on the live stream, and a pending one settles within seconds (or waits for
 * its next retry): while any is pending the log is fetched again at this pace.
 */
const PENDING_POLL_MS = 2000

const KIND: Record<Status, string> = {
  pending: 'settings-warn',
  succeeded: 'settings-ok',
  failed: 'settings-bad',
  dead: 'settings-bad',
}

export function DeliveryLog({ webhook, manage, version }: { webhook: Webhook; manage: boolean; version: number }) {
  const [status, setStatus] = useState<Status | ''>('')
  const deliveries = usePaged<Delivery>(
    async (cursor, signal) => {
      const query = { limit: 50, cursor, ...(status ? { status } : {}) }
      const page = await api.get('/v1/webhooks/{id}/deliveries', { path: { id: webhook.id }, query, signal })
      return { items: page.deliveries, next: page.next_cursor }
    },
    [webhook.id, status, version],
  )
  const action = useAction()
  const pending = deliveries.items.some((d) => d.status === 'pending')
  useEffect(() => {
    if (!pending) return
    const t = setTimeout(deliveries.reload, PENDING_POLL_MS)
    return () => clearTimeout(t)
  }, [pending, deliveries.items])
  const redeliver = (d: Delivery) =>
    action.run(`redeliver:${d.id}`, async () => {
      await api.post('/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver', { path: { id: webhook.id, delivery_id: d.id } })
      deliveries.reload()
      return `${d.event_type} is being sent again (same webhook-id ${d.message_id}).`
    })
  return (
    <section class="stack" aria-label={`Delivery log of ${webhook.url}`}>
      <div class="filters">
        <label>
          Status
          <select value={status} onChange={(e) => setStatus(valueOf(e) as Status | '')}>
            <option value="">any</option>
            <option value="pending">pending</option>
            <option value="succeeded">succeeded</option>
            <option value="failed">failed</option>
            <option value="dead">dead</option>
          </select>
        </label>
        <button type="button" onClick={deliveries.reload} disabled={deliveries.loading}>
          Refresh
        </button>
      </div>
      <ActionNote action={action} />
      <Problem error={deliveries.error} retry={deliveries.reload} />
      {!deliveries.ready ? (
        deliveries.error ? null : (
          <Loading />
        )
      ) : deliveries.items.length === 0 ? (
        <p class="hint">Nothing sent yet{status ? ` with status ${status}` : ''}. "Send test" sends a webhook.test ping.</p>
      ) : (
        <table class="plain settings-deliveries">
          <caption class="settings-caption">Deliveries to {webhook.url}, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Queued</th>
              <th scope="col">Event</th>
              <th scope="col">Status</th>
              <th scope="col">Last answer</th>
              <th scope="col">Attempts</th>
              {manage && <th scope="col">Actions</th>}
            </tr>
          </thead>
          <tbody>
            {deliveries.items.map((d) => (
              <tr key={d.id}>
                <td title={when(d.created_at)}>{ago(d.created_at)}</td>
                <td>
                  <code>{d.event_type}</code>
                </td>
                <td>
                  <Badge kind={KIND[d.status]}>{d.status}</Badge>
                  {d.status === 'pending' && d.next_attempt_at && <div class="hint">next try {ago(d.next_attempt_at)}</div>}
                  {d.delivered_at && <div class="hint">delivered {ago(d.delivered_at)}</div>}
                </td>
                <td>
                  {d.last_status !== null ? `HTTP ${d.last_status}` : d.last_error ? 'no answer' : '—'}
                  {d.last_error && <div class="settings-warn-text">{d.last_error}</div>}
                </td>
                <td>
                  <details>
                    <summary>
                      {d.attempt_count} in this round ({d.attempts.length} logged)
                    </summary>
                    <ol class="settings-attempts">
                      {d.attempts.map((a, i) => (
                        <li key={i}>
                          {when(a.at)}: {a.status !== null ? `HTTP ${a.status}` : 'no answer'} in {a.duration_ms} ms
                          {a.error ? ` (${a.error})` : ''}
                        </li>
                      ))}
                    </ol>
                    <pre class="settings-json">{JSON.stringify(d.payload, null, 2)}</pre>
                  </details>
                </td>
                {manage && (
                  <td>
                    <button
                      type="button"
                      disabled={d.status === 'pending' || action.busy !== null}
                      title={d.status === 'pending' ? 'Still being attempted: redeliver once it has finished' : undefined}
                      aria-label={`Redeliver ${d.event_type} queued ${ago(d.created_at)}`}
                      onClick={() => void redeliver(d)}
                    >
                      Redeliver
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <MoreButton paged={deliveries} what="deliveries" />
    </section>
  )
}
