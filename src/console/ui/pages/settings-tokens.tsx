/**
 * @module console/ui/pages/settings-tokens
 * Tokens (docs/tokens.md): first the deploy tokens daemons install with (`/v1/deploy-tokens`,
 * what a new machine needs), then every other credential of the org (./settings-api-tokens.tsx).
 * A raw token is shown once, in the answer that creates it; only its prefix afterwards.
 */
import { useState } from 'preact/hooks'
import { api, type Ok } from '../api/client.ts'
import { Empty, Loading } from '../components/common.tsx'
import { ago, when } from '../format.ts'
import { href } from '../router.ts'
import { can, useIdentity, type PageProps } from '../session.ts'
import { ApiTokens } from './settings-api-tokens.tsx'
import {
  ActionNote,
  ConfirmButton,
  MoreButton,
  Problem,
  SecretOnce,
  StateBadge,
  tokenState,
  useAction,
  usePaged,
  valueOf,
} from './settings-ui.tsx'

type DeployToken = Ok<'/v1/deploy-tokens', 'get'>['deploy_tokens'][number]

export function TokensTab(_: PageProps) {
  const identity = useIdentity()
  return (
    <div class="stack">
      {can(identity, 'manage') ? (
        <DeployTokens />
      ) : (
        <p class="hint">Deploy tokens, which daemons install with, are made by admins and owners.</p>
      )}
      <ApiTokens />
    </div>
  )
}

function DeployTokens() {
  const tokens = usePaged<DeployToken>(async (cursor, signal) => {
    const page = await api.get('/v1/deploy-tokens', { query: { limit: 100, cursor }, signal })
    return { items: page.deploy_tokens, next: page.next_cursor }
  }, [])
  const action = useAction()
  const [name, setName] = useState('')
  const [created, setCreated] = useState<{ name: string; token: string } | null>(null)
  const create = async (e: Event) => {
    e.preventDefault()
    const ok = await action.run('create', async () => {
      const t = await api.post('/v1/deploy-tokens', { body: { name: name.trim() } })
      setCreated({ name: t.name, token: t.token })
      tokens.reload()
    })
    if (ok) setName('')
  }
  const revoke = (t: DeployToken) =>
    action.run(`revoke:${t.id}`, async () => {
      await api.delete('/v1/deploy-tokens/{id}', { path: { id: t.id } })
      tokens.reload()
      return `Deploy token "${t.name}" is revoked: no new machine can register with it.`
    })
  return (
    <section class="card stack" aria-labelledby="deploy-h">
      <h2 id="deploy-h">Deploy tokens</h2>
      <p class="hint">
        What the daemon installs with on each developer machine (<code>qt_deploy_…</code>, scope <code>ingest</code>: it sends
        events and never reads the org's data). One per machine or per team lets you revoke one without the others.
      </p>
      <form class="row" onSubmit={create}>
        <label class="settings-field">
          Name
          <input value={name} required maxLength={200} placeholder="dev-laptops" onInput={(e) => setName(valueOf(e))} />
        </label>
        <button type="submit" class="primary" disabled={action.busy !== null || name.trim() === ''}>
          {action.busy === 'create' ? 'Creating…' : 'Create deploy token'}
        </button>
      </form>
      {created && (
        <SecretOnce label={`Deploy token "${created.name}"`} value={created.token} onDismiss={() => setCreated(null)}>
          Install the daemon with it:
          <pre>{`export QUINT_API_URL=${location.origin}\ncurl -fsSL https://install.quintai.dev | sh -s -- --token ${created.token}`}</pre>
        </SecretOnce>
      )}
      <ActionNote action={action} />
      <Problem error={tokens.error} retry={tokens.reload} />
      {!tokens.ready ? (
        tokens.error ? null : (
          <Loading />
        )
      ) : tokens.items.length === 0 ? (
        <Empty title="No deploy token yet">
          <p>Create one above, then install the daemon with it: its machines appear in the Fleet.</p>
        </Empty>
      ) : (
        <table class="plain">
          <caption class="settings-caption">Deploy tokens, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Prefix</th>
              <th scope="col">State</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {tokens.items.map((t) => {
              const state = tokenState(t)
              return (
                <tr key={t.id} class={state === 'active' ? '' : 'settings-row-dim'}>
                  <td>{t.name}</td>
                  <td>
                    <code>{t.token_prefix}…</code>
                  </td>
                  <td>
                    <StateBadge state={state} />
                  </td>
                  <td title={when(t.created_at)}>{ago(t.created_at)}</td>
                  <td title={when(t.last_used_at)}>{ago(t.last_used_at)}</td>
                  <td>
                    {state !== 'revoked' && (
                      <ConfirmButton
                        label="Revoke"
                        ariaLabel={`Revoke deploy token ${t.name}`}
                        title={`Revoke deploy token "${t.name}"?`}
                        confirm="Revoke token"
                        danger
                        disabled={action.busy !== null}
                        onConfirm={() => revoke(t)}
                      >
                        <p>
                          No new machine can register with it, and it is refused everywhere else. Machines it already registered
                          keep reporting (the daemon keeps its token forever): to cut one off, disable it in the{' '}
                          <a href={href(['fleet'])}>Fleet</a>.
                        </p>
                      </ConfirmButton>
                    )}
                  </td>
                </tr>
              )
            })}
          </tbody>
        </table>
      )}
      <MoreButton paged={tokens} what="deploy tokens" />
    </section>
  )
}
