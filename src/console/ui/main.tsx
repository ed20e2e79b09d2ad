/**
 * @module console/ui/main
 * The console's entry (issue 12): sign-in gate, the frame (navigation, who is signed in), and the
 * page for the current hash route.
 */
import { render } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { api, ApiError, useCredential, type Ok } from './api/client.ts'
import { chooseOrg, completeSignIn, credential, hasCredential, settingsOf, signOut } from './auth.ts'
import { ErrorNote, Loading } from './components/common.tsx'
import { useRoute } from './router.ts'
import { OrgPicker, SignIn } from './pages/signin.tsx'
import { Overview } from './pages/overview.tsx'
import { Events } from './pages/events.tsx'
import { Sessions } from './pages/sessions.tsx'
import { Alerts } from './pages/alerts.tsx'
import { Fleet } from './pages/fleet.tsx'
import { Policies } from './pages/policies.tsx'
import { Overrides } from './pages/overrides.tsx'
import { Settings } from './pages/settings.tsx'
import type { Identity } from './session.ts'
import { IdentityContext } from './session.ts'

const settings = settingsOf(document)

const PAGES = [
  { path: 'overview', label: 'Overview', page: Overview },
  { path: 'events', label: 'Events', page: Events },
  { path: 'sessions', label: 'Sessions', page: Sessions },
  { path: 'alerts', label: 'Alerts', page: Alerts },
  { path: 'fleet', label: 'Fleet', page: Fleet },
  { path: 'policies', label: 'Policies', page: Policies },
  { path: 'overrides', label: 'Overrides', page: Overrides },
  { path: 'settings', label: 'Settings', page: Settings },
] as const

function App() {
  const [identity, setIdentity] = useState<Identity | null>(null)
  const [problem, setProblem] = useState<string | null>(null)
  const [checking, setChecking] = useState(true)
  const route = useRoute()

  const [orgs, setOrgs] = useState<string[] | null>(null)

  const check = async () => {
    setChecking(true)
    try {
      const back = await completeSignIn(settings.oidc)
      if (back && 'error' in back) setProblem(back.error)
      setIdentity(hasCredential() ? ((await api.get('/v1/auth/whoami')) as Ok<'/v1/auth/whoami', 'get'>) : null)
      setOrgs(null)
    } catch (err) {
      setIdentity(null)
      // A person in several orgs names one (docs/people.md): they pick it here.
      if (err instanceof ApiError && err.problem.code === 'org_required' && err.problem.orgs?.length) {
        setOrgs(err.problem.orgs)
        return
      }
      if (hasCredential()) setProblem((err as Error).message)
      signOut()
    } finally {
      setChecking(false)
    }
  }

  useEffect(() => {
    useCredential(
      credential((p) => {
        signOut()
        setIdentity(null)
        setProblem(
          p.code === 'token_expired'
            ? 'Your session expired: sign in again.'
            : `Signed out: ${p.detail ?? p.title ?? 'the credential was refused'}.`,
        )
      }),
    )
    void check()
  }, [])

  if (checking) return <Loading />
  if (orgs)
    return (
      <OrgPicker
        orgs={orgs}
        onChosen={(org) => {
          chooseOrg(org)
          void check()
        }}
      />
    )
  if (!identity) return <SignIn settings={settings} problem={problem} onSignedIn={() => void check()} />

  const current = PAGES.find((p) => p.path === (route.parts[0] ?? 'overview'))
  const Page = current?.page
  return (
    <IdentityContext.Provider value={identity}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <div class="frame">
        <nav class="nav" aria-label="Console">
          <div class="brand">quint</div>
          <ul>
            {PAGES.map((p) => (
              <li key={p.path}>
                <a href={`#/${p.path}`} aria-current={p === current ? 'page' : undefined}>
                  {p.label}
                </a>
              </li>
            ))}
          </ul>
          <div class="who">
            <span title={identity.org_id}>{describe(identity)}</span>
            <button
              type="button"
              class="link"
              onClick={() => {
                signOut()
                setIdentity(null)
                setProblem(null)
              }}
            >
              Sign out
            </button>
            <span class="version">v{settings.version}</span>
          </div>
        </nav>
        <main id="main" class="main" tabIndex={-1}>
          {Page ? <Page route={route} /> : <ErrorNote error={new Error(`No page at #/${route.parts.join('/')}.`)} />}
        </main>
      </div>
    </IdentityContext.Provider>
  )
}

function describe(i: Identity): string {
  if (i.kind === 'member') return `${i.email} (${i.role})`
  if (i.kind === 'opaque') return i.type === 'api_key' ? 'Admin API key' : `${i.type} token`
  return `${i.type} token`
}

render(<App />, document.getElementById('app')!)
