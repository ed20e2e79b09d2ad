/**
 * @module console/ui/pages/policies-detail
 * One policy: its rules in evaluation order, where it applies, its versions, and whether the
 * machines in its scope already hold it. Arriving here from a save (`?saved=`) says so and
 * puts focus on that message, so a keyboard or screen-reader user knows the save took.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import { api } from '../api/client.ts'
import { Badge, ErrorNote, Loading, PageHeader } from '../components/common.tsx'
import { ago, count, when } from '../format.ts'
import { useLoad } from '../hooks.ts'
import { href, navigate } from '../router.ts'
import { can, useIdentity } from '../session.ts'
import { DeliveryPanel } from './policies-delivery.tsx'
import { Confirm } from './policies-dialog.tsx'
import { scopeText } from './policies-draft.ts'

export function PolicyDetail({ id, saved }: { id: string; saved: string | null }) {
  const identity = useIdentity()
  const manage = can(identity, 'manage')
  const policy = useLoad((signal) => api.get('/v1/policies/{id}', { path: { id }, signal }), [id])
  const versions = useLoad((signal) => api.get('/v1/policies/{id}/versions', { path: { id }, signal }), [id])
  const [confirming, setConfirming] = useState(false)
  const [busy, setBusy] = useState(false)
  const [failure, setFailure] = useState<Error | null>(null)
  const notice = useRef<HTMLParagraphElement>(null)
  useEffect(() => {
    if (saved && policy.data) notice.current?.focus()
  }, [saved, !!policy.data])

  const p = policy.data
  const remove = async () => {
    setBusy(true)
    try {
      await api.delete('/v1/policies/{id}', { path: { id } })
      navigate(href(['policies']))
    } catch (err) {
      setFailure(err as Error)
      setConfirming(false)
    } finally {
      setBusy(false)
    }
  }
  const toggle = async () => {
    if (!p) return
    setFailure(null)
    try {
      await api.patch('/v1/policies/{id}', { path: { id }, body: { enabled: !p.enabled } })
      policy.reload()
      versions.reload()
    } catch (err) {
      setFailure(err as Error)
    }
  }

  if (!p) {
    return (
      <>
        <PageHeader title="Policy" />
        <ErrorNote error={policy.error} retry={policy.reload} />
        {!policy.error && <Loading />}
      </>
    )
  }
  return (
    <>
      <PageHeader title={p.name}>
        {manage && (
          <>
            <a class="button" href={href(['policies', p.id, 'edit'])}>
              Edit
            </a>
            <button type="button" onClick={() => void toggle()}>
              {p.enabled ? 'Disable' : 'Enable'}
            </button>
            <button type="button" class="danger" onClick={() => setConfirming(true)}>
              Delete
            </button>
          </>
        )}
      </PageHeader>
      {saved && (
        <p class="notice" role="status" tabIndex={-1} ref={notice}>
          Policy {saved === 'updated' ? 'updated' : 'created'} (version {p.version}). It reaches the machines in its scope now:
          those holding the fleet stream at once, the others at their next heartbeat.
        </p>
      )}
      <ErrorNote error={failure} />
      <div class="split">
        <div class="stack">
          <section class="card" aria-labelledby="policy-facts">
            <h2 id="policy-facts">About</h2>
            <dl class="facts">
              <dt>State</dt>
              <dd>{p.enabled ? <Badge kind="ok">enabled</Badge> : <Badge kind="muted">disabled</Badge>}</dd>
              <dt>Priority</dt>
              <dd>{count(p.priority)}</dd>
              <dt>Applies to</dt>
              <dd>{scopeText(p.scope)}</dd>
              <dt>Version</dt>
              <dd>
                {p.version}, changed {ago(p.updated_at)}
              </dd>
              {p.description && (
                <>
                  <dt>Description</dt>
                  <dd>{p.description}</dd>
                </>
              )}
            </dl>
          </section>
          <section class="card" aria-labelledby="policy-rules">
            <h2 id="policy-rules">Rules, in order</h2>
            <table class="plain compact">
              <thead>
                <tr>
                  <th scope="col">#</th>
                  <th scope="col">Tool</th>
                  <th scope="col">Agent</th>
                  <th scope="col">Conditions (any)</th>
                  <th scope="col">Action</th>
                </tr>
              </thead>
              <tbody>
                {p.rules.map((r, i) => (
                  <tr key={i}>
                    <td>{i + 1}</td>
                    <td>
                      <code>{r.tool}</code>
                    </td>
                    <td>
                      <code>{r.agent ?? '*'}</code>
                    </td>
                    <td>
                      {r.conditions?.length
                        ? r.conditions.map((c) => (
                            <div key={c}>
                              <code>{c}</code>
                            </div>
                          ))
                        : 'none: tool and agent decide'}
                    </td>
                    <td>
                      <Badge kind={r.action}>{r.action}</Badge>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
        </div>
        <div class="stack">
          <DeliveryPanel scope={p.scope} enabled={p.enabled} />
          <section class="card" aria-labelledby="policy-versions">
            <h2 id="policy-versions">Versions</h2>
            <ErrorNote error={versions.error} retry={versions.reload} />
            <ol class="versions" reversed>
              {(versions.data?.versions ?? []).slice(0, 10).map((v) => (
                <li key={v.version}>
                  v{v.version} {when(v.changed_at)}
                  {v.changed_by ? <small> by {v.changed_by}</small> : null}
                </li>
              ))}
            </ol>
          </section>
        </div>
      </div>
      <Confirm
        open={confirming}
        title="Delete this policy?"
        confirmLabel="Delete policy"
        danger
        busy={busy}
        onCancel={() => setConfirming(false)}
        onConfirm={() => void remove()}
      >
        <p>
          “{p.name}” stops being enforced on {scopeText(p.scope)} as soon as each machine fetches its policies again. Its versions
          stay in the history.
        </p>
      </Confirm>
    </>
  )
}
