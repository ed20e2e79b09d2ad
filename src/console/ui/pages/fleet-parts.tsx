/**
 * @module console/ui/pages/fleet-parts
 * What the fleet list and a machine's page both show: the daemon version against the latest one
 * (`GET /agent/latest-version`, DAEMON_LATEST_VERSION), online / last seen, the status, the policy
 * sync state, and how to install the daemon when there is no machine yet.
 */
import { useEffect } from 'preact/hooks'
import { authorizedFetch, type Ok } from '../api/client.ts'
import { Badge, Empty } from '../components/common.tsx'
import { ago, short, when } from '../format.ts'
import { useLiveRefresh, useLoad } from '../hooks.ts'
import type { LiveState } from '../live.ts'
import { href } from '../router.ts'
import './fleet.css'

export type Machine = Ok<'/v1/machines', 'get'>['machines'][number]
export type MachineDetail = Ok<'/v1/machines/{id}', 'get'>

/** Which policy hash the machine should hold, and which it was last handed (docs/machines.md). */
export type MachinePolicy = Machine['policy']

/**
 * How often a fleet view is fetched again with no live event: a machine that stops reporting sends
 * nothing, so "online" only turns to "offline" on a refetch (the API decides it: 120 s).
 */
const STALE_MS = 60_000

/**
 * Keeps a fleet view current: the `fleet` topic's events (`fleet`, `delivery`, `gap`: docs/live.md)
 * refetch, a burst of them once; a slow timer notices machines that went quiet, which no event
 * announces (`online` is "seen within two heartbeats": docs/machines.md).
 */
export function useFleetLive(reload: () => void): LiveState {
  const live = useLiveRefresh('fleet', reload)
  useEffect(() => {
    const t = setInterval(reload, STALE_MS)
    return () => clearInterval(t)
  }, [])
  return live
}

/** The version the installer hands out now; null when the server has none configured (404). */
export function useLatestVersion(): string | null {
  const latest = useLoad(async (signal) => {
    try {
      const res = await authorizedFetch('/agent/latest-version', { signal })
      return (await res.text()).trim() || null
    } catch {
      // Unset (404) or unreachable: versions are shown without a comparison, nothing is flagged.
      return null
    }
  }, [])
  return latest.data ?? null
}

const SEMVER = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?/

/**
 * Semantic-version order (a pre-release sorts before its release); null when either side is not
 * a version, so a daemon reporting something odd is never flagged on a guess.
 */
export function compareVersions(a: string, b: string): number | null {
  const x = SEMVER.exec(a.trim())
  const y = SEMVER.exec(b.trim())
  if (!x || !y) return null
  for (let i = 1; i <= 3; i++) {
    const d = Number(x[i]) - Number(y[i])
    if (d !== 0) return Math.sign(d)
  }
  if (x[4] === y[4]) return 0
  if (!x[4]) return 1
  if (!y[4]) return -1
  return x[4] < y[4] ? -1 : 1
}

export const isBehind = (version: string | null, latest: string | null): boolean =>
  !!version && !!latest && (compareVersions(version, latest) ?? 0) < 0

export function VersionText({ version, latest }: { version: string | null; latest: string | null }) {
  if (!version) return <span class="hint">unknown</span>
  return (
    <span class="fleet-version">
      <code>{version}</code>
      {isBehind(version, latest) && (
        <Badge kind="fleet-behind">
          <span title={`The installer hands out ${latest}`}>behind {latest}</span>
        </Badge>
      )}
    </span>
  )
}

export function SeenText({ m }: { m: Pick<Machine, 'online' | 'last_seen_at'> }) {
  return (
    <span class="fleet-seen">
      <Badge kind={m.online ? 'online' : 'offline'}>{m.online ? 'online' : 'offline'}</Badge>{' '}
      <span title={when(m.last_seen_at)}>{m.last_seen_at ? `seen ${ago(m.last_seen_at)}` : 'never seen'}</span>
    </span>
  )
}

export function StatusBadge({ status }: { status: Machine['status'] }) {
  return <Badge kind={status === 'active' ? 'fleet-active' : 'fleet-disabled'}>{status}</Badge>
}

export function PolicyBadge({ m }: { m: Machine | MachineDetail }) {
  const p = m.policy
  if (p.current) return <Badge kind="fleet-active">policy current</Badge>
  return (
    <Badge kind="fleet-behind">
      <span title={`Should hold ${short(p.hash, 12)}; last handed ${p.delivered_hash ? short(p.delivered_hash, 12) : 'none'}`}>
        policy behind
      </span>
    </Badge>
  )
}

export function Tags({ tags }: { tags: readonly string[] }) {
  if (tags.length === 0) return <span class="hint">none</span>
  return (
    <ul class="fleet-tags" aria-label="Tags">
      {tags.map((t) => (
        <li key={t}>{t}</li>
      ))}
    </ul>
  )
}

/** The empty fleet: how a machine joins, with this console's own origin as the API URL. */
export function InstallHelp({ canManage }: { canManage: boolean }) {
  return (
    <Empty title="No machine has registered yet">
      <p>
        A machine appears here once the Quint daemon runs on it: the daemon registers with a <strong>deploy token</strong> of this
        organization and then reports every minute.
      </p>
      <ol class="fleet-steps">
        <li>
          {canManage ? (
            <>
              Make a deploy token (one per machine or per team, so you can revoke one without the others) under{' '}
              <a href={href(['settings'], { tab: 'tokens' })}>Settings → Tokens</a>.
            </>
          ) : (
            <>
              Ask an admin of this organization for a deploy token (they make them under{' '}
              <a href={href(['settings'], { tab: 'tokens' })}>Settings → Tokens</a>).
            </>
          )}
        </li>
        <li>On the developer machine, point the installer at this server and run it with the token:</li>
      </ol>
      <pre>
        {`export QUINT_API_URL=${location.origin}\ncurl -fsSL https://install.quintai.dev | sh -s -- --token <your deploy token>`}
      </pre>
      <p class="hint">
        The machine shows up here within a minute of the daemon's first start, with its hostname, OS and daemon version.
      </p>
    </Empty>
  )
}
