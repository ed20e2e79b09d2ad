/**
 * @module console/ui/pages/policies
 * What every daemon enforces (docs/policies.md) and the threat signatures compiled above it
 * (docs/threat-signatures.md): the lists, the editors with their simulation preview, and, after
 * a save, which machines already hold it.
 *
 * Routes: `#/policies`, `#/policies/new` (`?from_alert=<alert id>` prefills it from that alert),
 * `#/policies/<id>`, `#/policies/<id>/edit`, and `#/policies/signatures[/new|/<id>]`.
 */
import { api, type Ok } from '../api/client.ts'
import { Badge, Empty, ErrorNote, Loading, PageHeader } from '../components/common.tsx'
import { ago, count } from '../format.ts'
import { useLoad } from '../hooks.ts'
import { href, type Route } from '../router.ts'
import { can, useIdentity, type PageProps } from '../session.ts'
import { emptyDraft, fromAlert, fromPolicy, scopeText } from './policies-draft.ts'
import { PolicyDetail } from './policies-detail.tsx'
import { PolicyEditor } from './policies-editor.tsx'
import { Signatures } from './signatures-page.tsx'
import './policies.css'

type Policy = Ok<'/v1/policies/{id}', 'get'>

export function Policies({ route }: PageProps) {
  const [, first, second] = route.parts
  const section = first === 'signatures' ? 'signatures' : 'policies'
  return (
    <section class="policies-page">
      <nav class="tabs" aria-label="Policies and signatures">
        <a href={href(['policies'])} aria-current={section === 'policies' ? 'page' : undefined}>
          Policies
        </a>
        <a href={href(['policies', 'signatures'])} aria-current={section === 'signatures' ? 'page' : undefined}>
          Threat signatures
        </a>
      </nav>
      {section === 'signatures' ? (
        <Signatures route={route} id={second} />
      ) : !first ? (
        <PolicyList />
      ) : first === 'new' ? (
        <NewPolicy route={route} />
      ) : second === 'edit' ? (
        <EditPolicy id={first} />
      ) : (
        <PolicyDetail id={first} saved={route.query.get('saved')} />
      )}
    </section>
  )
}

/** Every policy (an org has at most 500), in the daemon's order: priority, highest first. */
async function allPolicies(signal: AbortSignal): Promise<Policy[]> {
  const out: Policy[] = []
  let cursor: string | undefined
  do {
    const page = await api.get('/v1/policies', { query: { limit: 200, ...(cursor ? { cursor } : {}) }, signal })
    out.push(...page.policies)
    cursor = page.next_cursor ?? undefined
  } while (cursor && out.length < 1000)
  return out.sort((a, b) => b.priority - a.priority || a.created_at.localeCompare(b.created_at))
}

function PolicyList() {
  const identity = useIdentity()
  const list = useLoad(allPolicies, [])
  const manage = can(identity, 'manage')
  return (
    <>
      <PageHeader title="Policies">
        {manage && (
          <a class="button primary" href={href(['policies', 'new'])}>
            New policy
          </a>
        )}
      </PageHeader>
      <ErrorNote error={list.error} retry={list.reload} />
      {!list.data ? (
        list.error ? null : (
          <Loading />
        )
      ) : list.data.length === 0 ? (
        <Empty title="No policies yet">
          <p>
            A policy tells every daemon in its scope what to refuse (block), record (flag) or send for approval before a tool call
            goes through. {manage ? <a href={href(['policies', 'new'])}>Write one</a> : 'An admin can write one'}, or open an
            alert on the <a href={href(['alerts'])}>Alerts</a> page and choose “Create policy” to start from what it caught.
          </p>
        </Empty>
      ) : (
        <table class="plain">
          <caption class="visually-hidden">Policies, in the order daemons evaluate them</caption>
          <thead>
            <tr>
              <th scope="col">Priority</th>
              <th scope="col">Name</th>
              <th scope="col">Rules</th>
              <th scope="col">Scope</th>
              <th scope="col">State</th>
              <th scope="col">Changed</th>
            </tr>
          </thead>
          <tbody>
            {list.data.map((p) => (
              <tr key={p.id}>
                <td class="num">{count(p.priority)}</td>
                <th scope="row">
                  <a href={href(['policies', p.id])}>{p.name}</a>
                </th>
                <td>
                  {p.rules.slice(0, 2).map((r, i) => (
                    <div key={i}>
                      <Badge kind={r.action}>{r.action}</Badge> <code>{r.tool}</code>
                      {r.agent && r.agent !== '*' ? (
                        <>
                          {' '}
                          by <code>{r.agent}</code>
                        </>
                      ) : null}
                      {r.conditions?.length ? ` if ${r.conditions.length} condition${r.conditions.length === 1 ? '' : 's'}` : ''}
                    </div>
                  ))}
                  {p.rules.length > 2 && <small>and {p.rules.length - 2} more</small>}
                </td>
                <td>{scopeText(p.scope)}</td>
                <td>{p.enabled ? <Badge kind="ok">enabled</Badge> : <Badge kind="muted">disabled</Badge>}</td>
                <td>
                  v{p.version}, {ago(p.updated_at)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  )
}

function NewPolicy({ route }: { route: Route }) {
  const fromAlertId = route.query.get('from_alert')
  const alert = useLoad(
    (signal) =>
      fromAlertId
        ? api.get('/v1/alerts/{id}', { path: { id: fromAlertId }, query: { preceding: 0 }, signal })
        : Promise.resolve(null),
    [fromAlertId],
  )
  return (
    <>
      <PageHeader title="New policy" />
      <ErrorNote error={alert.error} retry={alert.reload} />
      {alert.loading && !alert.data ? (
        <Loading />
      ) : alert.data ? (
        <PolicyEditor
          key={alert.data.id}
          initial={fromAlert(alert.data)}
          origin={`Prefilled from the alert “${alert.data.title}”: check the rule, preview, then save.`}
        />
      ) : alert.error ? null : (
        <PolicyEditor initial={emptyDraft()} />
      )}
    </>
  )
}

function EditPolicy({ id }: { id: string }) {
  const policy = useLoad((signal) => api.get('/v1/policies/{id}', { path: { id }, signal }), [id])
  return (
    <>
      <PageHeader title="Edit policy" />
      <ErrorNote error={policy.error} retry={policy.reload} />
      {policy.data ? (
        <PolicyEditor key={policy.data.version} initial={fromPolicy(policy.data)} existing={policy.data} />
      ) : policy.error ? null : (
        <Loading />
      )}
    </>
  )
}
