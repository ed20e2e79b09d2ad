/**
 * @module console/ui/pages/settings-api-tokens
 * The org's other credentials (`/v1/tokens`, docs/tokens.md): personal tokens of people, service
 * tokens for CI and integrations (and those minted to machines at registration), enrollment
 * tokens, admin keys. What one may create, rotate or revoke depends on the kind; the list offers
 * only what the API allows, and its refusal is shown when it disagrees.
 */
import { useState } from 'preact/hooks'
import { api, type Body, type Ok, type Query } from '../api/client.ts'
import { Empty, Loading } from '../components/common.tsx'
import { ago, when } from '../format.ts'
import { href } from '../router.ts'
import { can, useIdentity, type Identity } from '../session.ts'
import {
  ActionNote,
  ConfirmButton,
  MoreButton,
  Problem,
  SecretOnce,
  StateBadge,
  useAction,
  usePaged,
  valueOf,
  type Action,
} from './settings-ui.tsx'

type Token = Ok<'/v1/tokens', 'get'>['tokens'][number]
type Kind = Body<'/v1/tokens', 'post'>['kind']
type Scope = NonNullable<Body<'/v1/tokens', 'post'>['scopes']>[number]

const SCOPES: Scope[] = ['read', 'triage', 'manage', 'members', 'ingest']
const KIND_LABEL: Record<Kind, string> = {
  personal: 'personal (qt_pk_)',
  service: 'service (qt_sk_)',
  enrollment: 'enrollment (qt_dk_)',
  admin: 'admin key (qk_)',
  deploy: 'deploy (qt_deploy_)',
}

/** The kinds this identity may create, as docs/tokens.md has it. */
function creatable(i: Identity): Kind[] {
  const kinds: Kind[] = []
  if (i.kind === 'member') kinds.push('personal')
  if (can(i, 'manage')) kinds.push('service', 'enrollment')
  if (can(i, 'members')) kinds.push('admin')
  return kinds
}

const mine = (i: Identity, t: Token) => i.kind === 'member' && t.member_id === i.member_id

/** Deploy and enrollment tokens are not rotated, nor a machine's own service token (registering again replaces it). */
function mayRotate(i: Identity, t: Token): boolean {
  if (t.state !== 'active' || t.machine_id) return false
  if (t.kind === 'admin') return can(i, 'members')
  if (t.kind === 'service') return can(i, 'manage')
  return t.kind === 'personal' && mine(i, t)
}

function mayRevoke(i: Identity, t: Token): boolean {
  if (t.state === 'revoked') return false
  if (t.kind === 'admin') return can(i, 'members')
  return can(i, 'manage') || (t.kind === 'personal' && mine(i, t))
}

export function ApiTokens() {
  const identity = useIdentity()
  const [kind, setKind] = useState<Kind | ''>('')
  const [all, setAll] = useState(false)
  const tokens = usePaged<Token>(
    async (cursor, signal) => {
      const query: Query<'/v1/tokens', 'get'> = {
        limit: 100,
        cursor,
        ...(kind ? { kind } : {}),
        ...(all ? {} : { active: true }),
      }
      const page = await api.get('/v1/tokens', { query, signal })
      // Deploy tokens have their own section above, unless asked for by kind.
      return { items: kind ? page.tokens : page.tokens.filter((t) => t.kind !== 'deploy'), next: page.next_cursor }
    },
    [kind, all],
  )
  const action = useAction()
  const [secret, setSecret] = useState<{ label: string; token: string; note?: string } | null>(null)
  const kinds = creatable(identity)
  return (
    <section class="card stack" aria-labelledby="api-tokens-h">
      <h2 id="api-tokens-h">Other tokens</h2>
      <p class="hint">
        Personal tokens act for one person within their role; service tokens for CI and integrations, with the scopes chosen;
        enrollment tokens register one machine once; admin keys hold every permission. Machines also get a service token of their
        own when they register.
      </p>
      {kinds.length > 0 && (
        <CreateToken kinds={kinds} action={action} onCreated={(label, token) => (setSecret({ label, token }), tokens.reload())} />
      )}
      {secret && (
        <SecretOnce label={secret.label} value={secret.token} onDismiss={() => setSecret(null)}>
          {secret.note}
        </SecretOnce>
      )}
      <ActionNote action={action} />
      <div class="filters">
        <label>
          Kind
          <select value={kind} onChange={(e) => setKind(valueOf(e) as Kind | '')}>
            <option value="">all but deploy</option>
            {(Object.keys(KIND_LABEL) as Kind[]).map((k) => (
              <option key={k} value={k}>
                {KIND_LABEL[k]}
              </option>
            ))}
          </select>
        </label>
        <label class="settings-check">
          <input type="checkbox" checked={all} onChange={(e) => setAll((e.target as HTMLInputElement).checked)} />
          Show revoked and expired
        </label>
      </div>
      <Problem error={tokens.error} retry={tokens.reload} />
      {!tokens.ready ? (
        tokens.error ? null : (
          <Loading />
        )
      ) : tokens.items.length === 0 ? (
        <Empty title="No token here">
          <p>{kinds.length > 0 ? 'Create one above.' : 'Nothing you may see matches: ask an admin.'}</p>
        </Empty>
      ) : (
        <table class="plain">
          <caption class="settings-caption">Tokens, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Kind</th>
              <th scope="col">Scopes</th>
              <th scope="col">State</th>
              <th scope="col">Expires</th>
              <th scope="col">Last used</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {tokens.items.map((t) => (
              <TokenRow
                key={t.id}
                t={t}
                identity={identity}
                action={action}
                onChanged={tokens.reload}
                onRotated={(token, note) => setSecret({ label: `New value of "${t.name}"`, token, note })}
              />
            ))}
          </tbody>
        </table>
      )}
      <MoreButton paged={tokens} what="tokens" />
    </section>
  )
}

function CreateToken(p: { kinds: Kind[]; action: Action; onCreated(label: string, token: string): void }) {
  const [kind, setKind] = useState<Kind>(p.kinds[0]!)
  const [name, setName] = useState('')
  const [scopes, setScopes] = useState<Scope[]>(['read'])
  const [expires, setExpires] = useState('')
  const pickScopes = kind === 'service' || kind === 'personal'
  const submit = async (e: Event) => {
    e.preventDefault()
    const body: Body<'/v1/tokens', 'post'> = { kind, name: name.trim() }
    // A personal token with none ticked gets all of its owner's role (the API's default).
    if (pickScopes && (kind === 'service' || scopes.length > 0)) body.scopes = scopes
    // The date picked, to its last second in UTC: "expires on the 31st" includes the 31st.
    if (expires) body.expires_at = new Date(`${expires}T23:59:59Z`).toISOString()
    const ok = await p.action.run('create-token', async () => {
      const t = await api.post('/v1/tokens', { body })
      p.onCreated(`${KIND_LABEL[t.kind]} "${t.name}"`, t.token)
    })
    if (ok) setName('')
  }
  return (
    <form class="stack settings-form" onSubmit={submit} aria-label="Create a token">
      <div class="row">
        <label class="settings-field">
          Kind
          <select value={kind} onChange={(e) => setKind(valueOf(e) as Kind)}>
            {p.kinds.map((k) => (
              <option key={k} value={k}>
                {KIND_LABEL[k]}
              </option>
            ))}
          </select>
        </label>
        <label class="settings-field">
          Name
          <input value={name} required maxLength={200} onInput={(e) => setName(valueOf(e))} />
        </label>
        <label class="settings-field">
          Expires on (optional)
          <input type="date" value={expires} onInput={(e) => setExpires(valueOf(e))} />
        </label>
      </div>
      {pickScopes && (
        <fieldset class="settings-fieldset">
          <legend>Scopes{kind === 'personal' ? ' (within your role; none ticked: all of it)' : ''}</legend>
          {SCOPES.map((s) => (
            <label key={s} class="settings-check">
              <input
                type="checkbox"
                checked={scopes.includes(s)}
                onChange={(e) =>
                  setScopes((e.target as HTMLInputElement).checked ? [...scopes, s] : scopes.filter((x) => x !== s))
                }
              />
              {s}
            </label>
          ))}
        </fieldset>
      )}
      <div>
        <button type="submit" class="primary" disabled={p.action.busy !== null || name.trim() === ''}>
          {p.action.busy === 'create-token' ? 'Creating…' : 'Create token'}
        </button>
      </div>
    </form>
  )
}

const OVERLAPS = [
  { s: 3600, label: '1 hour (default)' },
  { s: 86400, label: '1 day' },
  { s: 604800, label: '7 days' },
  { s: 0, label: 'none: revoke it now' },
]

function TokenRow(p: {
  t: Token
  identity: Identity
  action: Action
  onChanged(): void
  onRotated(token: string, note: string): void
}) {
  const { t, action } = p
  const [overlap, setOverlap] = useState(3600)
  const rotate = () =>
    action.run(`rotate:${t.id}`, async () => {
      const r = await api.post('/v1/tokens/{id}/rotate', { path: { id: t.id }, body: { overlap_seconds: overlap } })
      // Said beside the new value, which takes the focus: a second focused note would steal it.
      p.onRotated(
        r.token.token,
        overlap === 0
          ? 'The old value is revoked.'
          : `The old value keeps working until ${when(r.previous.expires_at)}: switch to the new one before then.`,
      )
      p.onChanged()
    })
  const revoke = () =>
    action.run(`revoke:${t.id}`, async () => {
      await api.delete('/v1/tokens/{id}', { path: { id: t.id } })
      p.onChanged()
      return `"${t.name}" is revoked: it is refused from its next request.`
    })
  return (
    <tr class={t.state === 'active' ? '' : 'settings-row-dim'}>
      <td>
        {t.name} <code class="hint">{t.token_prefix}…</code>
        {t.machine_id && (
          <div class="hint">
            of machine <a href={href(['fleet', t.machine_id])}>{t.machine_id.slice(0, 8)}…</a>
          </div>
        )}
      </td>
      <td>{t.kind}</td>
      <td>{t.scopes.join(', ')}</td>
      <td>
        <StateBadge state={t.state} />
      </td>
      <td title={when(t.expires_at)}>{t.expires_at ? when(t.expires_at) : 'never'}</td>
      <td title={t.last_used_ip ?? undefined}>
        {ago(t.last_used_at)}
        {t.use_count > 0 && <span class="hint"> · {t.use_count} uses</span>}
      </td>
      <td>
        <div class="row">
          {mayRotate(p.identity, t) && (
            <ConfirmButton
              label="Rotate"
              ariaLabel={`Rotate ${t.name}`}
              title={`Rotate "${t.name}"?`}
              confirm="Rotate token"
              disabled={action.busy !== null}
              onConfirm={rotate}
            >
              <p>A new value with the same kind, name and scopes is shown once. The old value keeps working for:</p>
              <label class="settings-field">
                Overlap
                <select value={overlap} onChange={(e) => setOverlap(Number(valueOf(e)))}>
                  {OVERLAPS.map((o) => (
                    <option key={o.s} value={o.s}>
                      {o.label}
                    </option>
                  ))}
                </select>
              </label>
            </ConfirmButton>
          )}
          {mayRevoke(p.identity, t) && (
            <ConfirmButton
              label="Revoke"
              ariaLabel={`Revoke ${t.name}`}
              title={`Revoke "${t.name}"?`}
              confirm="Revoke token"
              danger
              disabled={action.busy !== null}
              onConfirm={revoke}
            >
              <p>
                It is refused from its next request, everywhere.
                {t.kind === 'admin' ? ' Make sure another admin key or an owner remains, or you lose access.' : ''}
              </p>
            </ConfirmButton>
          )}
        </div>
      </td>
    </tr>
  )
}
