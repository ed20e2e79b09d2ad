/** @module console/ui/pages/signin — the console's front door: the identity provider, or an API key. */
import { useState } from 'preact/hooks'
import { api } from '../api/client.ts'
import { signInWithKey, signOut, startSignIn, type ConsoleSettings } from '../auth.ts'

export function SignIn(p: { settings: ConsoleSettings; problem: string | null; onSignedIn(): void }) {
  const [key, setKey] = useState('')
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)
  const { oidc } = p.settings

  const submit = async (e: Event) => {
    e.preventDefault()
    setBusy(true)
    setError(null)
    signInWithKey(key)
    try {
      await api.get('/v1/auth/whoami')
      p.onSignedIn()
    } catch (err) {
      signOut()
      setError((err as Error).message)
    } finally {
      setBusy(false)
    }
  }

  return (
    <main class="signin" id="main">
      <h1>quint-cloud</h1>
      <p class="lede">What your coding agents did, as it happens.</p>
      {(p.problem || error) && (
        <p class="error" role="alert">
          {error ?? p.problem}
        </p>
      )}
      {oidc && (
        <button
          type="button"
          class="primary wide"
          onClick={() => void startSignIn(oidc).catch((err: Error) => setError(err.message))}
        >
          Sign in with your identity provider
        </button>
      )}
      <form onSubmit={submit} class="card">
        <label for="api-key">{oidc ? 'Or paste an API key' : 'Paste an API key'}</label>
        <input
          id="api-key"
          type="password"
          autoComplete="off"
          spellcheck={false}
          placeholder="qk_…"
          value={key}
          onInput={(e) => setKey((e.target as HTMLInputElement).value)}
          required
        />
        <button type="submit" class={oidc ? '' : 'primary'} disabled={busy || key.trim() === ''}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        <p class="hint">
          The first start of a new server prints the <code>default</code> org's admin API key on its standard error, once.{' '}
          <code>quint-cloud key create --org ID</code> makes another. The key stays in this tab only.
        </p>
      </form>
    </main>
  )
}

/** A person who belongs to several organizations names the one this tab works in. */
export function OrgPicker(p: { orgs: string[]; onChosen(org: string): void }) {
  return (
    <main class="signin" id="main">
      <h1>Choose an organization</h1>
      <p class="lede">You belong to several. This tab works in the one you choose; sign out to choose again.</p>
      <ul class="stack">
        {p.orgs.map((org) => (
          <li key={org}>
            <button type="button" class="wide" onClick={() => p.onChosen(org)}>
              <code>{org}</code>
            </button>
          </li>
        ))}
      </ul>
    </main>
  )
}
