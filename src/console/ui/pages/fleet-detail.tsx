/**
 * @module console/ui/pages/fleet-detail
 * One machine (`#/fleet/<id>`): what it is and where it reports from, whether its policy is the
 * one it should hold, what ran on it (events, agents, processes, agent graphs), and the one lever
 * a responder needs on a compromised laptop: Disable, which refuses its daemon from its next call.
 */
import { Fragment } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { api } from '../api/client.ts'
import { ErrorNote, Loading, PageHeader } from '../components/common.tsx'
import { ago, count, short, when } from '../format.ts'
import { useLoad } from '../hooks.ts'
import { href } from '../router.ts'
import { can, useIdentity } from '../session.ts'
import {
  PolicyBadge,
  SeenText,
  StatusBadge,
  Tags,
  useFleetLive,
  useLatestVersion,
  VersionText,
  type MachineDetail,
} from './fleet-parts.tsx'
import { ActivitySection, AgentsSection, GraphsSection, ProcessesSection } from './fleet-sections.tsx'
import { ActionNote, ConfirmButton, useAction, valueOf } from './settings-ui.tsx'

export function MachinePage({ id }: { id: string }) {
  const machine = useLoad((signal) => api.get('/v1/machines/{id}', { path: { id }, signal }), [id])
  const live = useFleetLive(machine.reload)
  const latest = useLatestVersion()
  const m = machine.data
  const title = m ? (m.hostname ?? m.client_machine_id) : 'Machine'
  return (
    <section aria-label={title}>
      <p class="fleet-back">
        <a href={href(['fleet'])}>← Fleet</a>
      </p>
      <PageHeader title={title} live={live}>
        {m && (
          <a class="fleet-button-link" href={href(['events'], { machine_id: m.id })}>
            Events of this machine
          </a>
        )}
      </PageHeader>
      <ErrorNote error={machine.error} retry={machine.reload} />
      {!m ? machine.error ? null : <Loading /> : <MachineBody m={m} latest={latest} reload={machine.reload} />}
    </section>
  )
}

function MachineBody({ m, latest, reload }: { m: MachineDetail; latest: string | null; reload(): void }) {
  return (
    <div class="stack">
      <StatusPanel m={m} reload={reload} />
      <div class="split fleet-split">
        <Facts m={m} latest={latest} reload={reload} />
        <PolicySync m={m} />
      </div>
      <ActivitySection m={m} />
      <AgentsSection m={m} />
      <ProcessesSection m={m} />
      <GraphsSection m={m} />
    </div>
  )
}

/** Disable / Enable, with what each does to the daemon said before it is done. */
function StatusPanel({ m, reload }: { m: MachineDetail; reload(): void }) {
  const identity = useIdentity()
  const action = useAction()
  const name = m.hostname ?? m.client_machine_id
  const set = (status: 'active' | 'disabled') =>
    action.run(status, async () => {
      await api.patch('/v1/machines/{id}', { path: { id: m.id }, body: { status } })
      reload()
      return status === 'disabled'
        ? `${name} is disabled: its daemon is refused from its next call.`
        : `${name} is enabled: its daemon is let back in at its next call.`
    })
  return (
    <div class={`card fleet-status fleet-status-${m.status}`}>
      <div class="row">
        <h2 class="fleet-inline-h">Status</h2>
        <StatusBadge status={m.status} />
        <SeenText m={m} />
        {can(identity, 'manage') && (
          <div class="fleet-status-actions">
            {m.status === 'active' ? (
              <ConfirmButton
                label="Disable machine"
                title={`Disable ${name}?`}
                confirm="Disable machine"
                danger
                disabled={action.busy !== null}
                onConfirm={() => set('disabled')}
              >
                <p>
                  From its next call, the daemon on <strong>{name}</strong> is refused (403 <code>machine_disabled</code>) on
                  every route, whatever credential it presents, and the service tokens issued to it are revoked. Its events and
                  history stay.
                </p>
                <p>
                  Enable it again to let it back in. To shut out a compromised host for good, also revoke the deploy token it
                  holds (Settings → Tokens).
                </p>
              </ConfirmButton>
            ) : (
              <ConfirmButton
                label="Enable machine"
                title={`Enable ${name}?`}
                confirm="Enable machine"
                disabled={action.busy !== null}
                onConfirm={() => set('active')}
              >
                <p>
                  The daemon on <strong>{name}</strong> is accepted again from its next call with its deploy token. A client that
                  used a service token registers again to get a new one.
                </p>
              </ConfirmButton>
            )}
          </div>
        )}
      </div>
      {m.status === 'disabled' && (
        <p class="fleet-disabled-note">
          This machine is disabled: its daemon is refused on every call (403 <code>machine_disabled</code>), whatever credential
          it presents, and its service tokens were revoked. Nothing it sends is stored until it is enabled.
        </p>
      )}
      <ActionNote action={action} />
    </div>
  )
}

function Facts({ m, latest, reload }: { m: MachineDetail; latest: string | null; reload(): void }) {
  const identity = useIdentity()
  const by = m.registered_by
  const metadata = Object.entries(m.metadata)
  return (
    <div class="card">
      <h2>Machine</h2>
      <dl class="facts">
        <dt>Hostname</dt>
        <dd>{m.hostname ?? '—'}</dd>
        <dt>OS / arch</dt>
        <dd>
          {m.os ?? '?'} / {m.arch ?? '?'}
        </dd>
        <dt>Daemon</dt>
        <dd>
          <VersionText version={m.daemon_version} latest={latest} />
          {latest && <span class="hint"> latest: {latest}</span>}
        </dd>
        <dt>Last seen</dt>
        <dd>
          {when(m.last_seen_at)} ({ago(m.last_seen_at)})
        </dd>
        <dt>Uptime</dt>
        <dd>{m.uptime_seconds === null ? '—' : uptime(m.uptime_seconds)}</dd>
        <dt>Registered</dt>
        <dd>{when(m.registered_at)}</dd>
        <dt>Registered with</dt>
        <dd>
          {by ? (
            <>
              {by.name} <code>{by.prefix}…</code> ({by.kind === 'install' ? 'deploy token' : by.kind})
              {by.revoked_at && <span class="hint"> revoked {ago(by.revoked_at)}</span>}
            </>
          ) : (
            '—'
          )}
        </dd>
        <dt>Tags</dt>
        <dd>
          <Tags tags={m.tags} />
        </dd>
        <dt>Fingerprint</dt>
        <dd>
          <code>{m.client_machine_id}</code>
        </dd>
        <dt>Cloud id</dt>
        <dd>
          <code>{m.id}</code>
        </dd>
        {metadata.map(([k, v]) => (
          <Fragment key={k}>
            <dt>{k}</dt>
            <dd>{typeof v === 'string' ? v : JSON.stringify(v)}</dd>
          </Fragment>
        ))}
      </dl>
      {can(identity, 'manage') && <TagsForm m={m} reload={reload} />}
    </div>
  )
}

/** Tags decide which tag-scoped policies apply to the machine (docs/policies.md). */
function TagsForm({ m, reload }: { m: MachineDetail; reload(): void }) {
  const [text, setText] = useState(m.tags.join(', '))
  const saved = m.tags.join(', ')
  useEffect(() => setText(saved), [saved])
  const action = useAction()
  const submit = (e: Event) => {
    e.preventDefault()
    const tags = text
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean)
    void action.run('tags', async () => {
      await api.patch('/v1/machines/{id}', { path: { id: m.id }, body: { tags } })
      reload()
      return tags.length
        ? `Tags saved: ${tags.join(', ')}. Policies scoped to them reach the machine at its next heartbeat.`
        : 'Tags cleared.'
    })
  }
  return (
    <form class="fleet-tags-form" onSubmit={submit} aria-label="Tags of this machine">
      <div class="row">
        <label class="settings-field">
          Tags (comma-separated)
          <input value={text} onInput={(e) => setText(valueOf(e))} placeholder="engineering, laptops" />
        </label>
        <button type="submit" disabled={action.busy !== null || text === saved}>
          Save tags
        </button>
      </div>
      <ActionNote action={action} />
    </form>
  )
}

/** Whether the machine holds the policy it should; the daemon picks a change up at its next heartbeat. */
function PolicySync({ m }: { m: MachineDetail }) {
  const p = m.policy
  return (
    <div class="card">
      <h2>Policy sync</h2>
      <p>
        <PolicyBadge m={m} />{' '}
        {p.current
          ? 'The machine was handed the policy set it should hold.'
          : 'The machine has not been handed its current policy set yet. A daemon fetches a change at its next heartbeat (every minute): behind for longer means it is offline or failing to fetch.'}
      </p>
      <dl class="facts">
        <dt>Should hold</dt>
        <dd>
          <code title={p.hash}>{short(p.hash, 16)}</code>
        </dd>
        <dt>Last handed</dt>
        <dd>
          <code title={p.delivered_hash ?? undefined}>{short(p.delivered_hash, 16)}</code>
        </dd>
        <dt>Handed at</dt>
        <dd>
          {when(p.delivered_at)}
          {p.delivered_via ? ` via ${p.delivered_via}` : ''}
        </dd>
      </dl>
      <p class="hint">
        <a href={href(['policies'])}>Policies</a> decide what it should hold.
      </p>
    </div>
  )
}

function uptime(s: number): string {
  const d = Math.floor(s / 86400)
  const h = Math.floor((s % 86400) / 3600)
  const min = Math.floor((s % 3600) / 60)
  return d > 0 ? `${d} d ${h} h` : h > 0 ? `${h} h ${min} min` : `${count(min)} min`
}
