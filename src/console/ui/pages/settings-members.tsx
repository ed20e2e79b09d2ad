/**
 * @module console/ui/pages/settings-members
 * Members and roles (`/v1/team`, docs/people.md): who may sign in, with which role; invitations
 * by email, role changes and removals for whoever holds `members` (owners, the admin key).
 */
import { useRef, useState } from 'preact/hooks'
import { api, type Body, type Ok } from '../api/client.ts'
import { Badge, Empty, Loading } from '../components/common.tsx'
import { ago, when } from '../format.ts'
import { useLoad } from '../hooks.ts'
import { can, useIdentity, type PageProps } from '../session.ts'
import { ActionNote, ConfirmButton, Problem, useAction, valueOf, type Action } from './settings-ui.tsx'

type Member = Ok<'/v1/team', 'get'>['members'][number]
type Role = Body<'/v1/team', 'post'>['role']

const ROLES: { role: Role; may: string }[] = [
  { role: 'viewer', may: 'reads events, sessions, agents, machines, alerts and the team' },
  { role: 'analyst', may: 'also triages alerts' },
  { role: 'admin', may: 'also manages tokens, machines, rules, webhooks, retention; reads the audit log' },
  { role: 'owner', may: 'also manages members and admin keys' },
]

export function MembersTab(_: PageProps) {
  const identity = useIdentity()
  const manage = can(identity, 'members')
  const team = useLoad((signal) => api.get('/v1/team', { signal }), [])
  const action = useAction()
  const members = team.data?.members ?? []
  return (
    <div class="stack">
      <p class="lede">
        People sign in with your identity provider; an invitation is claimed by the first sign-in whose provider has verified that
        address. Removing someone, or changing their role, revokes their personal tokens.
      </p>
      {manage ? (
        <InviteForm action={action} onInvited={team.reload} />
      ) : (
        <p class="hint">Only owners (and the organization's admin key) invite, change roles and remove members.</p>
      )}
      <ActionNote action={action} />
      <Problem error={team.error} retry={team.reload} />
      {!team.data ? (
        team.error ? null : (
          <Loading />
        )
      ) : members.length === 0 ? (
        <Empty title="Nobody is a member yet">
          <p>
            {manage
              ? 'Invite the first owner above: they sign in with your identity provider and manage the team from then on.'
              : 'Ask whoever holds the admin key to invite the first owner.'}
          </p>
        </Empty>
      ) : (
        <table class="plain">
          <caption class="settings-caption">{members.length} members and invitations</caption>
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">Status</th>
              <th scope="col">Invited</th>
              {manage && <th scope="col">Actions</th>}
            </tr>
          </thead>
          <tbody>
            {members.map((m) => (
              <MemberRow key={m.id} m={m} manage={manage} action={action} onChanged={team.reload} />
            ))}
          </tbody>
        </table>
      )}
      <details class="settings-roles">
        <summary>What each role may do</summary>
        <ul>
          {ROLES.map((r) => (
            <li key={r.role}>
              <strong>{r.role}</strong>: {r.may}
            </li>
          ))}
        </ul>
      </details>
    </div>
  )
}

function InviteForm({ action, onInvited }: { action: Action; onInvited(): void }) {
  const [email, setEmail] = useState('')
  const [role, setRole] = useState<Role>('viewer')
  const field = useRef<HTMLInputElement>(null)
  const submit = async (e: Event) => {
    e.preventDefault()
    const ok = await action.run('invite', async () => {
      const m = await api.post('/v1/team', { body: { email: email.trim(), role } })
      onInvited()
      return `Invited ${m.email} as ${m.role}: the invitation is pending until they sign in.`
    })
    if (ok) setEmail('')
    else field.current?.focus()
  }
  return (
    <form class="card settings-form" onSubmit={submit} aria-labelledby="invite-h">
      <h2 id="invite-h">Invite a member</h2>
      <div class="row">
        <label class="settings-field">
          Email address
          <input ref={field} type="email" required autoComplete="off" value={email} onInput={(e) => setEmail(valueOf(e))} />
        </label>
        <label class="settings-field">
          Role
          <select value={role} onChange={(e) => setRole(valueOf(e) as Role)}>
            {ROLES.map((r) => (
              <option key={r.role} value={r.role}>
                {r.role}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" class="primary" disabled={action.busy !== null || email.trim() === ''}>
          {action.busy === 'invite' ? 'Inviting…' : 'Invite'}
        </button>
      </div>
    </form>
  )
}

function MemberRow(p: { m: Member; manage: boolean; action: Action; onChanged(): void }) {
  const { m, action } = p
  const [role, setRole] = useState<Role>(m.role)
  const change = () =>
    action.run(`role:${m.id}`, async () => {
      try {
        const after = await api.put('/v1/team/{id}', { path: { id: m.id }, body: { role } })
        p.onChanged()
        return `${after.email} is now ${after.role}.`
      } catch (err) {
        // Back to the role they still have; the refusal is explained in the note above the list.
        setRole(m.role)
        throw err
      }
    })
  const remove = () =>
    action.run(`remove:${m.id}`, async () => {
      await api.delete('/v1/team/{id}', { path: { id: m.id } })
      p.onChanged()
      return m.status === 'pending' ? `The invitation of ${m.email} is withdrawn.` : `${m.email} is removed.`
    })
  return (
    <tr>
      <td>{m.email}</td>
      <td>
        {p.manage ? (
          <div class="row">
            <label class="settings-sr-only" for={`role-${m.id}`}>
              Role of {m.email}
            </label>
            <select id={`role-${m.id}`} value={role} onChange={(e) => setRole(valueOf(e) as Role)}>
              {ROLES.map((r) => (
                <option key={r.role} value={r.role}>
                  {r.role}
                </option>
              ))}
            </select>
            {role !== m.role && (
              <ConfirmButton
                label="Change role"
                ariaLabel={`Change role of ${m.email}`}
                title={`Make ${m.email} ${role}?`}
                confirm={`Make ${role}`}
                disabled={action.busy !== null}
                onConfirm={change}
              >
                <p>
                  {m.email} goes from <strong>{m.role}</strong> to <strong>{role}</strong> from their next request. Their personal
                  tokens are revoked: they were made under the old role.
                </p>
              </ConfirmButton>
            )}
          </div>
        ) : (
          m.role
        )}
      </td>
      <td>
        <Badge kind={m.status === 'active' ? 'settings-ok' : 'settings-warn'}>{m.status}</Badge>
        {m.joined_at && <span class="hint"> joined {ago(m.joined_at)}</span>}
      </td>
      <td title={when(m.created_at)}>{ago(m.created_at)}</td>
      {p.manage && (
        <td>
          <ConfirmButton
            label={m.status === 'pending' ? 'Withdraw' : 'Remove'}
            ariaLabel={`${m.status === 'pending' ? 'Withdraw the invitation of' : 'Remove'} ${m.email}`}
            title={m.status === 'pending' ? `Withdraw the invitation of ${m.email}?` : `Remove ${m.email}?`}
            confirm={m.status === 'pending' ? 'Withdraw invitation' : 'Remove member'}
            danger
            disabled={action.busy !== null}
            onConfirm={remove}
          >
            <p>
              {m.status === 'pending'
                ? 'The address can no longer claim this invitation. You can invite it again later.'
                : `${m.email} is refused from their next request, and their personal tokens are revoked.`}
            </p>
          </ConfirmButton>
        </td>
      )}
    </tr>
  )
}
