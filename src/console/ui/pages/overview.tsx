/**
 * @module console/ui/pages/overview
 * The first screen: the last 24 hours at a glance (events per hour and what was blocked, the
 * decisions, the risk distribution), what needs a person now (open alerts by severity), and
 * whether the fleet is reporting (machines online, ingest completeness). Each figure links to the
 * page that explains it; new events and alerts move it live.
 */
import { useEffect, useMemo } from 'preact/hooks'
import type uPlot from 'uplot'
import { api, type Ok } from '../api/client.ts'
import { Empty, ErrorNote, Loading, PageHeader } from '../components/common.tsx'
import { Plot, bars } from '../components/plot.tsx'
import { count, SEVERITIES, type Severity } from '../format.ts'
import { useLiveRefresh, useLoad } from '../hooks.ts'
import { href } from '../router.ts'
import type { PageProps } from '../session.ts'

type Stats = Ok<'/v1/events/stats', 'get'>
const PAGE = 200
export const READY_MARK = 'quint:overview-ready'

interface Figures {
  stats: Stats
  alerts: Record<Severity, { n: number; more: boolean }>
  machines: { online: number; total: number; more: boolean }
  ingest: Ok<'/v1/ingest/stats', 'get'>['totals']
}

async function figures(signal: AbortSignal): Promise<Figures> {
  const [stats, online, all, ingest, ...alerts] = await Promise.all([
    api.get('/v1/events/stats', { signal }),
    api.get('/v1/machines', { query: { online: true, limit: PAGE }, signal }),
    api.get('/v1/machines', { query: { limit: PAGE }, signal }),
    api.get('/v1/ingest/stats', { query: { limit: 1 }, signal }),
    ...SEVERITIES.map((severity) => api.get('/v1/alerts', { query: { status: 'open', severity, limit: PAGE }, signal })),
  ])
  return {
    stats,
    alerts: Object.fromEntries(
      SEVERITIES.map((s, i) => [s, { n: alerts[i]!.alerts.length, more: alerts[i]!.next_cursor !== null }]),
    ) as Figures['alerts'],
    machines: { online: online.machines.length, total: all.machines.length, more: all.next_cursor !== null },
    ingest: ingest.totals,
  }
}

export function Overview(_: PageProps) {
  const loaded = useLoad(figures, [])
  // A new event or alert moves the figures: refetched at most once a second.
  const live = useLiveRefresh('events,alerts', loaded.reload)
  const f = loaded.data
  // The moment the figures are on screen: `bun run bench` reads it (console.overview_ready_ms).
  useEffect(() => {
    if (f && performance.getEntriesByName(READY_MARK).length === 0) performance.mark(READY_MARK)
  }, [f])
  return (
    <section aria-label="Overview" data-ready={f ? 'true' : undefined}>
      <PageHeader title="Overview" live={live} />
      <ErrorNote error={loaded.error} retry={loaded.reload} />
      {!f ? (
        loaded.error ? null : (
          <Loading />
        )
      ) : f.stats.total === 0 && f.machines.total === 0 ? (
        <NoData />
      ) : (
        <OverviewBody f={f} />
      )}
    </section>
  )
}

function NoData() {
  return (
    <Empty title="Nothing has arrived yet">
      <p>
        Install the Quint daemon on a developer machine with a deploy token of this org: it registers the machine and sends what
        its coding agents do. Make one per machine under <a href={href(['settings'], { tab: 'tokens' })}>Settings → Tokens</a>,
        then on the machine:
      </p>
      <pre>{`curl -fsSL https://install.quintai.dev | sh -s -- --token qt_deploy_…\nexport QUINT_API_URL=${location.origin}   # or api_url in /etc/quint/config.yaml`}</pre>
      <p>
        Events appear here as they arrive; see <a href="/docs">the API reference</a> to send them yourself.
      </p>
    </Empty>
  )
}

function OverviewBody({ f }: { f: Figures }) {
  const hourly = useMemo<uPlot.AlignedData>(
    () => [
      f.stats.hourly.map((h) => new Date(h.hour).getTime() / 1000),
      f.stats.hourly.map((h) => h.total),
      f.stats.hourly.map((h) => h.blocked),
    ],
    [f.stats],
  )
  const bands = ['none', 'low', 'medium', 'high', 'critical', 'unscored'] as const
  const risk = useMemo<uPlot.AlignedData>(() => [bands.map((_, i) => i), bands.map((b) => f.stats.by_risk_band[b])], [f.stats])
  const decisions = Object.entries(f.stats.by_decision).sort((a, b) => b[1] - a[1])
  const openAlerts = SEVERITIES.reduce((n, s) => n + f.alerts[s].n, 0)
  const completeness = f.ingest.received === 0 ? null : (100 * (f.ingest.accepted + f.ingest.duplicates)) / f.ingest.received
  return (
    <div class="grid">
      <div class="tile wide">
        <h2>
          Events per hour <small>last 24 h: {count(f.stats.total)}</small>
        </h2>
        <Plot
          label={`Events per hour over the last 24 hours: ${count(f.stats.total)} in all`}
          data={hourly}
          options={{
            series: [
              {},
              { label: 'events', stroke: '#6aa5ff', fill: 'rgba(106,165,255,0.15)' },
              { label: 'blocked', stroke: '#ff6b6b', fill: 'rgba(255,107,107,0.2)' },
            ],
            axes: [{ stroke: '#9aa4b2' }, { stroke: '#9aa4b2' }],
          }}
        />
      </div>
      <div class="tile">
        <h2>Open alerts</h2>
        <p class="big">
          <a href={href(['alerts'])}>{count(openAlerts)}</a>
        </p>
        <ul class="severity-list">
          {SEVERITIES.map((s) => (
            <li key={s}>
              <a href={href(['alerts'], { severity: s })} class={`sev sev-${s}`}>
                {s}
              </a>
              <span>
                {count(f.alerts[s].n)}
                {f.alerts[s].more ? '+' : ''}
              </span>
            </li>
          ))}
        </ul>
      </div>
      <div class="tile">
        <h2>Machines online</h2>
        <p class="big">
          <a href={href(['fleet'])}>
            {count(f.machines.online)}
            {f.machines.online >= PAGE ? '+' : ''}
          </a>
          <small>
            {' '}
            of {count(f.machines.total)}
            {f.machines.more ? '+' : ''}
          </small>
        </p>
        <h2>Ingest completeness</h2>
        <p class="big">{completeness === null ? '—' : `${completeness.toFixed(2)} %`}</p>
        <p class="hint">
          {count(f.ingest.rejected_total)} rejected, {count(f.ingest.edge_dropped)} dropped by daemons (
          {f.ingest.lag_ms ? `lag p99 ${count(f.ingest.lag_ms.p99)} ms` : 'no lag measured'})
        </p>
      </div>
      <div class="tile">
        <h2>Decisions</h2>
        <ul class="bars" aria-label="Events per decision, last 24 hours">
          {decisions.map(([d, n]) => (
            <li key={d}>
              <a href={href(['events'], { decision: d === 'none' ? undefined : d })}>{d}</a>
              <span class="bar" style={{ width: `${(100 * n) / Math.max(1, f.stats.total)}%` }} />
              <span>{count(n)}</span>
            </li>
          ))}
        </ul>
      </div>
      <div class="tile">
        <h2>Risk distribution</h2>
        <Plot
          label={`Events per risk band: ${bands.map((b) => `${b} ${f.stats.by_risk_band[b]}`).join(', ')}`}
          data={risk}
          height={160}
          options={{
            scales: { x: { time: false, range: [-0.5, bands.length - 0.5] } },
            series: [{}, { label: 'events', paths: bars, fill: '#c58cff', stroke: '#c58cff', points: { show: false } }],
            axes: [
              {
                stroke: '#9aa4b2',
                splits: () => bands.map((_, i) => i),
                values: (_u, ticks) => ticks.map((i) => bands[i] ?? ''),
              },
              { stroke: '#9aa4b2' },
            ],
            legend: { show: false },
          }}
        />
      </div>
      <div class="tile">
        <h2>Top tools</h2>
        <ol class="top">
          {f.stats.top_tools.map((t) => (
            <li key={t.tool_name}>
              <a href={href(['events'], { tool_name: t.tool_name })}>{t.tool_name}</a> <span>{count(t.count)}</span>
            </li>
          ))}
        </ol>
      </div>
    </div>
  )
}
