/**
 * @module console/ui/pages/settings-retention
 * The org's settings (`GET/PATCH /v1/org`, docs/retention.md): how long events, sessions and
 * alerts are kept, and the hosts daemons route through their proxy. Shortening retention deletes
 * data at the next purge and cannot be undone, so it asks first.
 */
import { useEffect, useState } from 'preact/hooks'
import { api, type Body, type Ok } from '../api/client.ts'
import { Loading } from '../components/common.tsx'
import { count, when } from '../format.ts'
import { useLoad } from '../hooks.ts'
import { can, useIdentity, type PageProps } from '../session.ts'
import { ActionNote, ConfirmButton, Problem, useAction, valueOf } from './settings-ui.tsx'

type Org = Ok<'/v1/org', 'get'>

export function RetentionTab(_: PageProps) {
  const org = useLoad((signal) => api.get('/v1/org', { signal }), [])
  return (
    <div class="stack">
      <Problem error={org.error} retry={org.reload} />
      {!org.data ? org.error ? null : <Loading /> : <OrgForm loaded={org.data} />}
    </div>
  )
}

const lines = (s: string) =>
  s
    .split(/[\n,]/)
    .map((x) => x.trim())
    .filter(Boolean)

function OrgForm({ loaded }: { loaded: Org }) {
  const identity = useIdentity()
  // The PATCH answers the org after the change: shown from it, not from a refetch that could land
  // after the person has started typing the next value.
  const [org, setOrg] = useState(loaded)
  const manage = can(identity, 'manage')
  const [days, setDays] = useState(String(org.retention_days))
  const [domains, setDomains] = useState(org.proxy_domains.join('\n'))
  useEffect(() => {
    setDays(String(org.retention_days))
    setDomains(org.proxy_domains.join('\n'))
  }, [org.updated_at])
  const action = useAction()
  const wanted = Number(days)
  const shortening = days.trim() !== '' && Number.isFinite(wanted) && wanted < org.retention_days
  const save = () =>
    action.run('save', async () => {
      const body: Body<'/v1/org', 'patch'> = {}
      // Only what changed: the audit log records a change, and an unchanged field is none.
      // A value that is not a whole number goes as typed, and the API's 422 names the field.
      if (days.trim() !== String(org.retention_days)) body.retention_days = days.trim() === '' ? Number.NaN : wanted
      const d = lines(domains)
      if (d.join('\n') !== org.proxy_domains.join('\n')) body.proxy_domains = d
      if (Object.keys(body).length === 0) return 'Nothing changed.'
      const after = await api.patch('/v1/org', { body })
      setOrg(after)
      return `Saved: data is kept ${count(after.retention_days)} days${
        body.retention_days !== undefined && after.retention_days < org.retention_days
          ? '; older data goes at the next purge run'
          : ''
      }.`
    })
  return (
    <form
      class="card stack settings-form"
      aria-labelledby="retention-h"
      onSubmit={(e) => {
        e.preventDefault()
        void save()
      }}
    >
      <h2 id="retention-h">Data retention</h2>
      <p>
        Events, sessions, alerts and webhook deliveries of <strong>{org.name}</strong> are deleted once older than this many days,
        counted from when the server received them. The audit log, machines, policies and tokens are kept.
      </p>
      <label class="settings-field">
        Keep data for (days, 1–3650)
        <input
          type="number"
          min={1}
          max={3650}
          step={1}
          value={days}
          disabled={!manage}
          onInput={(e) => setDays(valueOf(e))}
          aria-describedby="retention-now"
        />
      </label>
      <p id="retention-now" class="hint">
        Now {count(org.retention_days)} days. Shortening deletes older data at the next purge run (hourly); lengthening cannot
        bring back what is already deleted.
      </p>
      <label class="settings-field">
        Proxy domains (one per line)
        <textarea
          rows={4}
          value={domains}
          disabled={!manage}
          onInput={(e) => setDomains(valueOf(e))}
          aria-describedby="domains-hint"
        />
      </label>
      <p id="domains-hint" class="hint">
        Hosts the org's daemons route through their proxy, added to the daemon's own list; machines pick a change up at their next
        heartbeat.
      </p>
      {manage ? (
        <div class="row">
          {shortening ? (
            <ConfirmButton
              label="Save settings"
              title={`Keep data only ${count(wanted)} days?`}
              confirm={`Shorten to ${count(wanted)} days`}
              danger
              disabled={action.busy !== null}
              onConfirm={save}
            >
              <p>
                At the next purge run (within the hour), every event, session, alert and webhook delivery received more than{' '}
                {count(wanted)} days ago is deleted for good. Lengthening it later does not bring them back.
              </p>
            </ConfirmButton>
          ) : (
            <button type="submit" class="primary" disabled={action.busy !== null}>
              {action.busy ? 'Saving…' : 'Save settings'}
            </button>
          )}
        </div>
      ) : (
        <p class="hint">Admins and owners change these settings.</p>
      )}
      <ActionNote action={action} />
      <p class="hint">
        Organization <code>{org.id}</code>, created {when(org.created_at)}, last changed {when(org.updated_at)}.
      </p>
    </form>
  )
}
