/**
 * @module console/ui/pages/overrides
 * Human overrides (docs/auth.md "Overrides"): the approvals agents are waiting for, each with the
 * event it is about, approved or denied with a reason (kept with the decision and the audit entry,
 * and sent to the waiting machine on its fleet stream), and what was decided while the page is
 * open.
 *
 * Live, not polled: requests arrive and leave as `approval` events of the `alerts` topic
 * (docs/live.md), whoever decided; after a gap or a reconnect the list is fetched again. Anyone
 * who reads the org sees the requests; only a management credential is offered the decision (the
 * API's rule). `?event=<id>` (from the alert queue) puts that approval first and focuses it.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import { ApiError } from '../api/client.ts'
import { Empty, ErrorNote, Loading, PageHeader } from '../components/common.tsx'
import { ago, short, when } from '../format.ts'
import { useLive } from '../hooks.ts'
import { href } from '../router.ts'
import { canDecideOverrides, useIdentity, type PageProps } from '../session.ts'
import { decide, useApprovals, type Approval, type Decided } from './overrides-data.ts'
import { Field, valueOf } from './policies-fields.tsx'
import './policies.css'
import './overrides.css'

export function Overrides({ route }: PageProps) {
  const identity = useIdentity()
  const decider = canDecideOverrides(identity)
  const approvals = useApprovals(true)
  const [done, setDone] = useState<string | null>(null)
  const notice = useRef<HTMLParagraphElement>(null)
  const live = useLive('alerts', (type, data) => approvals.onLive(type, data))
  // Live again after a drop (or for the first time once the list is in): what ended meanwhile was not heard.
  const wasLive = useRef(false)
  useEffect(() => {
    if (live === 'live' && !wasLive.current && approvals.pending) approvals.reload()
    wasLive.current = live === 'live'
  }, [live])
  useEffect(() => {
    if (done) notice.current?.focus()
  }, [done])

  const wanted = route.query.get('event')
  // The one closest to expiring first: it is the one an agent gives up on next.
  const pending = [...(approvals.pending ?? [])]
    .sort((a, b) => a.expires_at.localeCompare(b.expires_at))
    .sort((a, b) => Number(b.event_id === wanted) - Number(a.event_id === wanted))

  return (
    <section class="overrides-page">
      <PageHeader title="Overrides" live={live}>
        <button type="button" onClick={approvals.reload} disabled={approvals.loading}>
          Refresh
        </button>
      </PageHeader>
      {done && (
        <p class="notice" role="status" tabIndex={-1} ref={notice}>
          {done}
        </p>
      )}
      {!decider && <DecideNote identity={identity.kind} />}
      <ErrorNote error={approvals.error} retry={approvals.reload} />
      <h2>Waiting for a decision</h2>
      {!approvals.pending ? (
        approvals.error ? null : (
          <Loading />
        )
      ) : pending.length === 0 ? (
        <Empty title="No agent is waiting for an approval">
          <p>
            When a policy rule or an agent asks a human to decide (an override token is minted for the event), the request appears
            here at once and stays until it is decided, revoked or expires. Nothing to do now.
          </p>
        </Empty>
      ) : (
        <ul class="approvals">
          {pending.map((a) => (
            <li key={a.override_jti}>
              <ApprovalCard
                approval={a}
                focus={a.event_id === wanted}
                decider={decider}
                onDecided={(r) => {
                  approvals.decidedHere(a, r)
                  setDone(
                    `${r.decision === 'approve' ? 'Approved' : 'Denied'} event ${r.event_id}: the agent's machine is told now.`,
                  )
                }}
                onGone={approvals.reload}
              />
            </li>
          ))}
        </ul>
      )}
      <History decided={approvals.decided} />
    </section>
  )
}

/** Why there are no buttons: deciding is the management credential's (the API refuses others). */
function DecideNote({ identity }: { identity: string }) {
  return (
    <section class="card decide-note" aria-labelledby="decide-note">
      <h2 id="decide-note">Deciding overrides needs an admin</h2>
      <p>
        {identity === 'member'
          ? 'You can see what agents are waiting for. Approvals are decided by an admin or owner of the organization, or with a management credential: '
          : 'This credential can see what agents are waiting for, not decide. Approvals are decided by an admin or owner signed in, or with a management credential: '}
        the organization's admin API key, or an app token with the <code>*</code>, <code>admin</code> or <code>tokens:write</code>{' '}
        scope. The alerts these requests relate to are on the <a href={href(['alerts'])}>Alerts</a> page.
      </p>
    </section>
  )
}

const LABELS: Record<string, string> = {
  approve: 'Approve: let the call go through',
  reject: 'Deny: keep it blocked',
}
const verb = (d: string) => (d === 'approve' ? 'Approve' : d === 'reject' ? 'Deny' : d ? `Decide: ${d}` : 'Decide')

/** Who asked, as a person reads it (never a secret: the API sends none). */
function requester(r: Approval['requested_by']): string {
  if (!r) return 'an earlier credential'
  if (r.kind === 'jwt') {
    const who = r.name ?? r.agent_id ?? short(r.id)
    return r.type === 'agent' ? `agent ${who}` : r.type === 'subagent' ? `sub-agent ${who}` : `${r.type ?? 'a'} token ${who}`
  }
  return `${r.type === 'api_key' ? 'admin key' : `${r.type ?? 'a'} token`} ${r.name ? `“${r.name}”` : short(r.id)}`
}

/** What the agent wants to do: the stored event's tool and arguments, shortened. */
function attempt(e: NonNullable<Approval['event']>): string {
  const args = e.arguments === null || e.arguments === undefined ? '' : JSON.stringify(e.arguments)
  const what = [e.tool_name ?? e.action ?? e.action_type, args].filter(Boolean).join(' ')
  return what.length > 240 ? `${what.slice(0, 240)}…` : what
}

function ApprovalCard(p: {
  approval: Approval
  focus: boolean
  decider: boolean
  onDecided(r: { event_id: string; decision: string; reason: string | null; decided_at: string }): void
  onGone(): void
}) {
  const a = p.approval
  const [decision, setDecision] = useState('')
  const [reason, setReason] = useState('')
  const [errors, setErrors] = useState<Record<string, string[]>>({})
  const [failure, setFailure] = useState<Error | null>(null)
  const [busy, setBusy] = useState(false)
  const heading = useRef<HTMLHeadingElement>(null)
  useEffect(() => {
    if (p.focus) heading.current?.focus()
  }, [p.focus])
  const id = `approval-${a.override_jti}`

  const submit = async (e: Event) => {
    e.preventDefault()
    const hints: Record<string, string[]> = {}
    if (!decision) hints['/decision'] = [a.allowed_decisions.length > 1 ? 'choose approve or deny' : 'choose the decision']
    if (reason.trim() === '') hints['/reason'] = ['required: say why, for the record and for the developer whose agent waits']
    else if (reason.length > 500) hints['/reason'] = ['at most 500 characters']
    setErrors(hints)
    setFailure(null)
    if (Object.keys(hints).length) {
      requestAnimationFrame(() => (document.querySelector(`#${id} [aria-invalid="true"]`) as HTMLElement | null)?.focus())
      return
    }
    setBusy(true)
    try {
      p.onDecided(await decide(a, decision, reason.trim()))
    } catch (err) {
      if (err instanceof ApiError && err.problem.errors?.length) {
        const filed: Record<string, string[]> = {}
        for (const x of err.problem.errors) (filed[x.path === '/reason' ? '/reason' : '/decision'] ??= []).push(x.message)
        setErrors(filed)
      } else {
        setFailure(err as Error)
        // Used, expired or revoked meanwhile: it is no longer pending.
        if (err instanceof ApiError && err.status === 409) p.onGone()
      }
    } finally {
      setBusy(false)
    }
  }

  const facts = (
    <>
      <h3 id={`${id}-title`} tabIndex={-1} ref={heading}>
        Event <code>{a.event_id}</code>
      </h3>
      <dl class="facts">
        <dt>Asked</dt>
        <dd>
          {ago(a.requested_at)} by {requester(a.requested_by)}
        </dd>
        <dt>Reason given</dt>
        <dd>{a.reason ?? 'none'}</dd>
        <dt>Wants to</dt>
        <dd>
          {a.event ? (
            <>
              <code class="attempt">{attempt(a.event)}</code> <a href={href(['events', a.event.id])}>the event</a>
            </>
          ) : (
            'not known yet: the event is not stored (the agent may send it once decided)'
          )}
        </dd>
        {a.event && (
          <>
            <dt>Where</dt>
            <dd>
              {a.machine?.hostname ?? (a.machine ? short(a.machine.id) : 'no machine')}
              {a.event.agent_id ? `, agent ${a.event.agent_id}` : ''}
              {a.event.session_id ? (
                <>
                  {', '}
                  <a href={href(['sessions', a.event.session_id])}>session {short(a.event.session_id, 16)}</a>
                </>
              ) : null}
            </dd>
          </>
        )}
        <dt>Expires</dt>
        <dd>
          <strong>{ago(a.expires_at)}</strong> ({when(a.expires_at)})
        </dd>
      </dl>
    </>
  )
  if (!p.decider) {
    return (
      <article id={id} class="card approval" aria-labelledby={`${id}-title`}>
        {facts}
      </article>
    )
  }

  return (
    <form id={id} class="card approval" onSubmit={submit} noValidate aria-labelledby={`${id}-title`}>
      {facts}
      <ErrorNote error={failure} />
      <fieldset aria-describedby={errors['/decision'] ? `${id}-decision-error` : undefined}>
        <legend>Decision</legend>
        <div class="row">
          {a.allowed_decisions.map((d, i) => (
            <label class="inline" key={d}>
              <input
                type="radio"
                name={`${id}-decision`}
                value={d}
                checked={decision === d}
                aria-invalid={i === 0 && errors['/decision'] ? 'true' : undefined}
                onChange={() => setDecision(d)}
              />
              {LABELS[d] ?? d}
            </label>
          ))}
        </div>
        {errors['/decision'] && (
          <ul id={`${id}-decision-error`} class="field-error">
            {errors['/decision'].map((m) => (
              <li key={m}>{m}</li>
            ))}
          </ul>
        )}
      </fieldset>
      <Field id={`${id}-reason`} label="Reason (required)" errors={errors['/reason']}>
        {(aria) => <textarea {...aria} rows={2} maxLength={500} value={reason} onInput={(e) => setReason(valueOf(e))} />}
      </Field>
      <div class="row">
        <button type="submit" class={decision === 'reject' ? 'danger' : 'primary'} disabled={busy}>
          {busy ? 'Sending…' : verb(decision)}
        </button>
        <small>Token {short(a.override_jti)}; decides once.</small>
      </div>
    </form>
  )
}

/** Who decided, as `decided_by` names it (`jwt:override:<jti>`, `api_key:<id>`, …). */
function decidedBy(by: string | null): string {
  if (by === null) return 'this console'
  if (by.startsWith('jwt:override:')) return 'the override token'
  const [kind, ...rest] = by.split(':')
  return `${kind === 'api_key' ? 'admin key' : (kind ?? '').replace('_', ' ')} ${short(rest.at(-1))}`
}

function History({ decided }: { decided: Decided[] }) {
  return (
    <section aria-labelledby="override-history" class="history">
      <h2 id="override-history">Decided while this page is open</h2>
      {decided.length === 0 ? (
        <p class="hint">
          Nothing decided since this page opened. Each decision is kept with its event (
          <code>GET /overrides/&#123;event_id&#125;</code>) and in the audit log.
        </p>
      ) : (
        <table class="plain compact">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Event</th>
              <th scope="col">Decision</th>
              <th scope="col">Reason</th>
              <th scope="col">By</th>
            </tr>
          </thead>
          <tbody>
            {decided.map((d) => (
              <tr key={d.override_jti}>
                <td>{when(d.decided_at)}</td>
                <td>
                  <code>{d.event_id}</code>
                </td>
                <td>{d.decision === 'reject' ? 'denied' : d.decision === 'approve' ? 'approved' : d.decision}</td>
                <td>{d.reason ?? '—'}</td>
                <td>{decidedBy(d.decided_by)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  )
}
