/**
 * @module console/ui/pages/settings-webhooks
 * Webhooks (docs/webhooks.md): endpoints the org's new alerts (and, when asked, its audit log)
 * are POSTed to, signed with a secret shown once. Each has its delivery log
 * (./settings-webhook-deliveries.tsx), a test ping, secret rotation with a grace period, editing
 * and deletion.
 */
import { useState } from 'preact/hooks'
import { api, type Body, type Ok } from '../api/client.ts'
import { Badge, Empty, Loading } from '../components/common.tsx'
import { ago, when } from '../format.ts'
import { can, useIdentity, type PageProps } from '../session.ts'
import { DeliveryLog } from './settings-webhook-deliveries.tsx'
import {
  ActionNote,
  ConfirmButton,
  MoreButton,
  Problem,
  SecretOnce,
  useAction,
  usePaged,
  valueOf,
  type Action,
} from './settings-ui.tsx'

type Webhook = Ok<'/v1/webhooks', 'get'>['webhooks'][number]
type EventType = NonNullable<Body<'/v1/webhooks', 'post'>['event_types']>[number]

const EVENT_TYPES: { type: EventType; label: string }[] = [
  { type: 'alert.created', label: 'alert.created: every new alert' },
  { type: 'audit.*', label: 'audit.*: every audit log entry (administrative changes)' },
]

export function WebhooksTab(_: PageProps) {
  const identity = useIdentity()
  const manage = can(identity, 'manage')
  const hooks = usePaged<Webhook>(async (cursor, signal) => {
    const page = await api.get('/v1/webhooks', { query: { limit: 100, cursor }, signal })
    return { items: page.webhooks, next: page.next_cursor }
  }, [])
  const action = useAction()
  const [secret, setSecret] = useState<{ label: string; value: string } | null>(null)
  return (
    <div class="stack">
      <p class="lede">
        quint-cloud POSTs each new alert to these endpoints, signed (<code>webhook-signature</code>, Standard Webhooks), and
        retries for about a day until the endpoint answers 2xx.
      </p>
      {manage ? (
        <WebhookForm
          action={action}
          onSaved={(w) => {
            if ('secret' in w) setSecret({ label: `Signing secret of ${w.url}`, value: w.secret })
            hooks.reload()
          }}
        />
      ) : (
        <p class="hint">Admins and owners add and change webhooks.</p>
      )}
      {secret && (
        <SecretOnce label={secret.label} value={secret.value} onDismiss={() => setSecret(null)}>
          Your endpoint verifies each delivery's signature with it. Then send the webhook a test from its card below.
        </SecretOnce>
      )}
      <ActionNote action={action} />
      <Problem error={hooks.error} retry={hooks.reload} />
      {!hooks.ready ? (
        hooks.error ? null : (
          <Loading />
        )
      ) : hooks.items.length === 0 ? (
        <Empty title="No webhook yet">
          <p>
            {manage
              ? 'Add your alerting endpoint above (HTTPS), then send it a test from here to check it verifies and answers 2xx.'
              : 'Ask an admin to add one.'}
          </p>
        </Empty>
      ) : (
        <ul class="settings-list">
          {hooks.items.map((w) => (
            <li key={w.id}>
              <WebhookCard
                w={w}
                manage={manage}
                action={action}
                onChanged={hooks.reload}
                onSecret={(value) => setSecret({ label: `New signing secret of ${w.url}`, value })}
              />
            </li>
          ))}
        </ul>
      )}
      <MoreButton paged={hooks} what="webhooks" />
    </div>
  )
}

/** Creates a webhook, or edits `editing`. */
function WebhookForm(p: {
  action: Action
  editing?: Webhook
  onSaved(w: Webhook | Ok<'/v1/webhooks', 'post'>): void
  onCancel?(): void
}) {
  const e0 = p.editing
  const [url, setUrl] = useState(e0?.url ?? '')
  const [description, setDescription] = useState(e0?.description ?? '')
  const [types, setTypes] = useState<string[]>(e0?.event_types ?? [])
  const [enabled, setEnabled] = useState(e0?.enabled ?? true)
  const submit = async (e: Event) => {
    e.preventDefault()
    const body = { url: url.trim(), description: description.trim() || null, event_types: types as EventType[] }
    await p.action.run('save-webhook', async () => {
      if (e0) {
        const w = await api.patch('/v1/webhooks/{id}', { path: { id: e0.id }, body: { ...body, enabled } })
        p.onSaved(w)
        return `Saved ${w.url}.`
      }
      const w = await api.post('/v1/webhooks', { body })
      p.onSaved(w)
      setUrl('')
      setDescription('')
      // No note: the secret shown once takes the focus, and says what comes next.
      return undefined
    })
  }
  const title = e0 ? `Edit ${e0.url}` : 'Add a webhook'
  return (
    <form class="card stack settings-form" onSubmit={submit} aria-label={title}>
      <h2>{e0 ? 'Edit webhook' : 'Add a webhook'}</h2>
      <div class="row">
        <label class="settings-field settings-grow">
          Endpoint URL (HTTPS)
          <input
            type="url"
            required
            value={url}
            placeholder="https://alerts.example.com/quint"
            onInput={(e) => setUrl(valueOf(e))}
          />
        </label>
        <label class="settings-field settings-grow">
          Description (optional)
          <input value={description} onInput={(e) => setDescription(valueOf(e))} />
        </label>
      </div>
      <fieldset class="settings-fieldset">
        <legend>Events (none ticked: every alert event)</legend>
        {EVENT_TYPES.map((t) => (
          <label key={t.type} class="settings-check">
            <input
              type="checkbox"
              checked={types.includes(t.type)}
              onChange={(e) =>
                setTypes((e.target as HTMLInputElement).checked ? [...types, t.type] : types.filter((x) => x !== t.type))
              }
            />
            {t.label}
          </label>
        ))}
      </fieldset>
      {e0 && (
        <label class="settings-check">
          <input type="checkbox" checked={enabled} onChange={(e) => setEnabled((e.target as HTMLInputElement).checked)} />
          Enabled (re-enabling clears why it was disabled)
        </label>
      )}
      <div class="row">
        <button type="submit" class="primary" disabled={p.action.busy !== null || url.trim() === ''}>
          {p.action.busy === 'save-webhook' ? 'Saving…' : e0 ? 'Save webhook' : 'Add webhook'}
        </button>
        {p.onCancel && (
          <button type="button" onClick={p.onCancel}>
            Cancel
          </button>
        )}
      </div>
    </form>
  )
}

const GRACES = [
  { s: 86400, label: '1 day (default)' },
  { s: 3600, label: '1 hour' },
  { s: 604800, label: '7 days' },
  { s: 0, label: 'none: the old secret stops now' },
]

function WebhookCard(p: { w: Webhook; manage: boolean; action: Action; onChanged(): void; onSecret(value: string): void }) {
  const { action } = p
  // An edit shows what the PATCH answered at once, before the list's refetch lands.
  const [saved, setSaved] = useState<Webhook | null>(null)
  const w = saved && saved.updated_at >= p.w.updated_at ? saved : p.w
  const [editing, setEditing] = useState(false)
  const [log, setLog] = useState(false)
  const [logVersion, setLogVersion] = useState(0)
  const [grace, setGrace] = useState(86400)
  const test = () =>
    action.run(`test:${w.id}`, async () => {
      await api.post('/v1/webhooks/{id}/test', { path: { id: w.id } })
      setLog(true)
      setLogVersion((v) => v + 1)
      return `Test ping queued for ${w.url}: watch its delivery log.`
    })
  const rotate = () =>
    action.run(`rotate:${w.id}`, async () => {
      const r = await api.post('/v1/webhooks/{id}/rotate-secret', { path: { id: w.id }, body: { grace_period_seconds: grace } })
      p.onSecret(r.secret)
      p.onChanged()
    })
  const remove = () =>
    action.run(`delete:${w.id}`, async () => {
      await api.delete('/v1/webhooks/{id}', { path: { id: w.id } })
      p.onChanged()
      return `Deleted the webhook to ${w.url}, with its delivery log.`
    })
  if (editing) {
    return (
      <WebhookForm
        action={action}
        editing={w}
        onSaved={(after) => {
          setSaved(after)
          setEditing(false)
          p.onChanged()
        }}
        onCancel={() => setEditing(false)}
      />
    )
  }
  return (
    <article class="card stack" aria-label={`Webhook ${w.url}`}>
      <div class="row">
        <h3 class="settings-h3">
          <code>{w.url}</code>
        </h3>
        {w.enabled ? <Badge kind="settings-ok">enabled</Badge> : <Badge kind="settings-bad">disabled</Badge>}
      </div>
      {!w.enabled && w.disabled_reason && <p class="settings-warn-text">Disabled: {w.disabled_reason}</p>}
      <p class="hint">
        {w.description ? `${w.description} · ` : ''}
        Events: {w.event_types.length ? w.event_types.join(', ') : 'every alert event'} · added {ago(w.created_at)}
        {w.previous_secret_expires_at && ` · the previous secret also signs until ${when(w.previous_secret_expires_at)}`}
      </p>
      {p.manage && (
        <div class="row">
          <button type="button" onClick={() => void test()} disabled={action.busy !== null} aria-label={`Send test to ${w.url}`}>
            Send test
          </button>
          <button type="button" onClick={() => setEditing(true)} aria-label={`Edit ${w.url}`}>
            Edit
          </button>
          <ConfirmButton
            label="Rotate secret"
            ariaLabel={`Rotate secret of ${w.url}`}
            title={`Rotate the signing secret of ${w.url}?`}
            confirm="Rotate secret"
            disabled={action.busy !== null}
            onConfirm={rotate}
          >
            <p>
              The new secret is shown once. Until the grace period ends, deliveries carry both signatures, so the endpoint keeps
              verifying while you deploy the new one.
            </p>
            <label class="settings-field">
              Grace period
              <select value={grace} onChange={(e) => setGrace(Number(valueOf(e)))}>
                {GRACES.map((g) => (
                  <option key={g.s} value={g.s}>
                    {g.label}
                  </option>
                ))}
              </select>
            </label>
          </ConfirmButton>
          <ConfirmButton
            label="Delete"
            ariaLabel={`Delete ${w.url}`}
            title={`Delete the webhook to ${w.url}?`}
            confirm="Delete webhook"
            danger
            disabled={action.busy !== null}
            onConfirm={remove}
          >
            <p>Nothing more is sent to it, and its delivery log is deleted with it.</p>
          </ConfirmButton>
        </div>
      )}
      <div>
        <button type="button" class="link" aria-expanded={log} onClick={() => setLog(!log)}>
          {log ? 'Hide delivery log' : 'Show delivery log'}
        </button>
      </div>
      {log && <DeliveryLog webhook={w} manage={p.manage} version={logVersion} />}
    </article>
  )
}
