/**
 * @module console/ui/pages/signatures-page
 * Threat signatures (docs/threat-signatures.md): the list, filtered by status in the URL, with
 * the proposed ones (distilled from detections, waiting for an admin) first and approvable in
 * place; one signature with its status changes, the retro-hunt (backfill) and its editor.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import { api, type Query } from '../api/client.ts'
import { Badge, Empty, ErrorNote, Loading, PageHeader } from '../components/common.tsx'
import { ago, count, when } from '../format.ts'
import { useLoad } from '../hooks.ts'
import { href, navigate, type Route } from '../router.ts'
import { can, useIdentity } from '../session.ts'
import { scopeText } from './policies-draft.ts'
import { valueOf } from './policies-fields.tsx'
import { emptySignature, fromSignature, type Signature } from './signatures-draft.ts'
import { SignatureEditor } from './signatures-editor.tsx'

type Status = NonNullable<Query<'/v1/threat-signatures', 'get'>['status']>
const STATUSES: readonly Status[] = ['proposed', 'active', 'expired', 'resolved', 'false_positive']

export function Signatures({ route, id }: { route: Route; id: string | undefined }) {
  if (id === 'new') {
    return (
      <>
        <PageHeader title="New threat signature" />
        <SignatureEditor initial={emptySignature()} />
      </>
    )
  }
  if (id) return <SignatureDetail id={id} saved={route.query.get('saved')} />
  return <SignatureList status={(route.query.get('status') as Status | null) ?? undefined} />
}

function SignatureList({ status }: { status: Status | undefined }) {
  const manage = can(useIdentity(), 'manage')
  const list = useLoad(
    (signal) => api.get('/v1/threat-signatures', { query: { limit: 200, ...(status ? { status } : {}) }, signal }),
    [status],
  )
  const [failure, setFailure] = useState<Error | null>(null)
  const rows = [...(list.data?.threat_signatures ?? [])].sort(
    (a, b) => Number(b.status === 'proposed') - Number(a.status === 'proposed'),
  )
  const approve = async (s: Signature) => {
    setFailure(null)
    try {
      await api.patch('/v1/threat-signatures/{id}', { path: { id: s.id }, body: { status: 'active' } })
      list.reload()
    } catch (err) {
      setFailure(err as Error)
    }
  }
  return (
    <>
      <PageHeader title="Threat signatures">
        <label class="inline">
          Status
          <select
            value={status ?? ''}
            onChange={(e) => navigate(href(['policies', 'signatures'], { status: valueOf(e) || undefined }))}
          >
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s.replace('_', ' ')}
              </option>
            ))}
          </select>
        </label>
        {manage && (
          <a class="button primary" href={href(['policies', 'signatures', 'new'])}>
            New signature
          </a>
        )}
      </PageHeader>
      <ErrorNote error={failure ?? list.error} retry={list.reload} />
      {!list.data ? (
        list.error ? null : (
          <Loading />
        )
      ) : rows.length === 0 ? (
        <Empty title={status ? `No ${status.replace('_', ' ')} signatures` : 'No threat signatures yet'}>
          <p>
            Signatures appear here when a detection is distilled into one (an exfiltration host is blocked at once; paths and
            commands are proposed for you to approve), or when you{' '}
            {manage ? <a href={href(['policies', 'signatures', 'new'])}>create one</a> : 'create one (admins)'} for an indicator
            you know: a host, a command, a path, an MCP tool.
          </p>
        </Empty>
      ) : (
        <table class="plain">
          <caption class="visually-hidden">Threat signatures, proposed first</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Indicator</th>
              <th scope="col">Action</th>
              <th scope="col">Status</th>
              <th scope="col">Source</th>
              <th scope="col">Created</th>
              {manage && <th scope="col">Decide</th>}
            </tr>
          </thead>
          <tbody>
            {rows.map((s) => (
              <tr key={s.id}>
                <th scope="row">
                  <a href={href(['policies', 'signatures', s.id])}>{s.name}</a>
                </th>
                <td>
                  <small>{s.kind.replace('_', ' ')}</small> <code>{s.value ?? 'flow shape'}</code>
                </td>
                <td>
                  <Badge kind={s.action}>{s.action}</Badge> <Badge kind={s.severity}>{s.severity}</Badge>
                </td>
                <td>
                  <Badge kind={s.enforced ? 'ok' : 'muted'}>{s.status.replace('_', ' ')}</Badge>
                </td>
                <td>
                  {s.source_alert_id ? <a href={href(['alerts', s.source_alert_id])}>{s.source} from an alert</a> : s.source}
                </td>
                <td>{ago(s.created_at)}</td>
                {manage && (
                  <td>
                    {s.status === 'proposed' && (
                      <button type="button" onClick={() => void approve(s)} aria-label={`Approve ${s.name}`}>
                        Approve
                      </button>
                    )}
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  )
}

const STATUS_ACTIONS: { to: 'active' | 'expired' | 'resolved' | 'false_positive'; label: string; from: string[] }[] = [
  { to: 'active', label: 'Approve and enforce', from: ['proposed'] },
  { to: 'active', label: 'Enforce again', from: ['expired', 'resolved', 'false_positive'] },
  { to: 'expired', label: 'Withdraw', from: ['proposed', 'active'] },
  { to: 'resolved', label: 'Mark resolved', from: ['proposed', 'active'] },
  { to: 'false_positive', label: 'Mark false positive', from: ['proposed', 'active'] },
]

function SignatureDetail({ id, saved }: { id: string; saved: string | null }) {
  const manage = can(useIdentity(), 'manage')
  const sig = useLoad((signal) => api.get('/v1/threat-signatures/{id}', { path: { id }, signal }), [id])
  const [failure, setFailure] = useState<Error | null>(null)
  const [message, setMessage] = useState<string | null>(null)
  const [days, setDays] = useState(7)
  const [busy, setBusy] = useState(false)
  const notice = useRef<HTMLParagraphElement>(null)
  useEffect(() => {
    if ((saved || message) && sig.data) notice.current?.focus()
  }, [saved, message, !!sig.data])

  const s = sig.data
  const act = async (what: () => Promise<string>) => {
    setBusy(true)
    setFailure(null)
    try {
      setMessage(await what())
      sig.reload()
    } catch (err) {
      setFailure(err as Error)
    } finally {
      setBusy(false)
    }
  }
  if (!s) return <>{sig.error ? <ErrorNote error={sig.error} retry={sig.reload} /> : <Loading />}</>
  return (
    <>
      <PageHeader title={s.name}>
        {manage &&
          STATUS_ACTIONS.filter((a) => a.from.includes(s.status)).map((a) => (
            <button
              key={a.label}
              type="button"
              class={a.to === 'active' ? 'primary' : ''}
              disabled={busy}
              onClick={() =>
                void act(async () => {
                  await api.patch('/v1/threat-signatures/{id}', { path: { id }, body: { status: a.to } })
                  return `Status set to ${a.to.replace('_', ' ')}.`
                })
              }
            >
              {a.label}
            </button>
          ))}
      </PageHeader>
      {(saved || message) && (
        <p class="notice" role="status" tabIndex={-1} ref={notice}>
          {message ??
            `Signature ${saved}. ${s.enforced ? 'It is in force on every machine in its scope.' : 'It is not in force.'}`}
        </p>
      )}
      <ErrorNote error={failure} />
      <section class="card" aria-labelledby="sig-facts">
        <h2 id="sig-facts">About</h2>
        <dl class="facts">
          <dt>Indicator</dt>
          <dd>
            {s.kind.replace('_', ' ')} <code>{s.value ?? JSON.stringify(s.flow_shape?.shape)}</code>
          </dd>
          <dt>Action</dt>
          <dd>
            {s.action}, severity {s.severity}
          </dd>
          <dt>Status</dt>
          <dd>
            {s.status.replace('_', ' ')} ({s.enforced ? 'in force now' : 'not in force'})
          </dd>
          <dt>Applies to</dt>
          <dd>{scopeText(s.scope)}</dd>
          <dt>Expires</dt>
          <dd>{s.expires_at ? when(s.expires_at) : 'never'}</dd>
          <dt>Source</dt>
          <dd>
            {s.source}
            {s.source_alert_id && (
              <>
                {' '}
                from <a href={href(['alerts', s.source_alert_id])}>this alert</a>
              </>
            )}
          </dd>
        </dl>
        {manage && (
          <div class="row backfill">
            <label class="inline">
              Retro-hunt the last
              <select value={String(days)} onChange={(e) => setDays(Number(valueOf(e)))}>
                {[1, 7, 14, 30].map((d) => (
                  <option key={d} value={String(d)}>
                    {d} day{d === 1 ? '' : 's'}
                  </option>
                ))}
              </select>
            </label>
            <button
              type="button"
              disabled={busy}
              onClick={() =>
                void act(async () => {
                  const r = await api.post('/v1/threat-signatures/{id}/backfill', { path: { id }, body: { days } })
                  return `Retro-hunt over ${r.days} days: ${count(r.evaluated)} actions read, ${count(r.matched)} matched, ${count(r.created)} new alerts raised.`
                })
              }
            >
              Raise alerts over history
            </button>
          </div>
        )}
      </section>
      {manage && (
        <SignatureEditor
          key={s.updated_at}
          initial={fromSignature(s)}
          existing={s}
          onUpdated={() => {
            setMessage('Signature updated.')
            sig.reload()
          }}
        />
      )}
    </>
  )
}
