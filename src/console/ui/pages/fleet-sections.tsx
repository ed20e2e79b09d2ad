/**
 * @module console/ui/pages/fleet-sections
 * The lower half of a machine's page: its activity (events per hour and the latest events, with
 * the way to all of them), the agents seen on it, its latest process snapshot and its agent
 * graphs, as the inventory (`GET /v1/machines/{id}`) and the events API hold them.
 */
import { useMemo } from 'preact/hooks'
import type uPlot from 'uplot'
import { api } from '../api/client.ts'
import { Badge, ErrorNote, Loading } from '../components/common.tsx'
import { Plot } from '../components/plot.tsx'
import { VirtualTable, type Column } from '../components/virtual-table.tsx'
import { ago, count, riskBand, short, when } from '../format.ts'
import { useLoad } from '../hooks.ts'
import { href } from '../router.ts'
import type { MachineDetail } from './fleet-parts.tsx'

const RECENT = 10

export function ActivitySection({ m }: { m: MachineDetail }) {
  // Keyed on the newest event too: a live refetch that brings one refreshes these.
  const deps = [m.id, m.last_event_at]
  const stats = useLoad((signal) => api.get('/v1/events/stats', { query: { machine_id: m.id }, signal }), deps)
  const recent = useLoad((signal) => api.get('/v1/events', { query: { machine_id: m.id, limit: RECENT }, signal }), deps)
  const hourly = useMemo<uPlot.AlignedData>(() => {
    const h = stats.data?.hourly ?? []
    return [h.map((x) => new Date(x.hour).getTime() / 1000), h.map((x) => x.total), h.map((x) => x.blocked)]
  }, [stats.data])
  const allEvents = href(['events'], { machine_id: m.id })
  return (
    <div class="card">
      <h2>Activity</h2>
      <ul class="fleet-counts">
        <li>
          <a href={href(['sessions'], { machine_id: m.id })}>{count(m.session_count)} sessions</a>
        </li>
        <li>
          <a href={href(['alerts'], { machine_id: m.id, status: 'open' })}>{count(m.open_alert_count)} open alerts</a>
        </li>
        <li>Last event: {m.last_event_at ? `${when(m.last_event_at)} (${ago(m.last_event_at)})` : 'none yet'}</li>
      </ul>
      <ErrorNote error={stats.error} retry={stats.reload} />
      {stats.data && stats.data.total > 0 && (
        <>
          <h3 class="fleet-h3">
            Events per hour <small>last 24 h: {count(stats.data.total)}</small>
          </h3>
          <Plot
            label={`Events per hour on this machine over the last 24 hours: ${count(stats.data.total)} in all, ${count(
              stats.data.hourly.reduce((n, h) => n + h.blocked, 0),
            )} blocked`}
            data={hourly}
            height={140}
            options={{
              series: [
                {},
                { label: 'events', stroke: '#6aa5ff', fill: 'rgba(106,165,255,0.15)' },
                { label: 'blocked', stroke: '#ff6b6b', fill: 'rgba(255,107,107,0.2)' },
              ],
              axes: [{ stroke: '#a3adba' }, { stroke: '#a3adba' }],
            }}
          />
        </>
      )}
      <h3 class="fleet-h3">Latest events</h3>
      <ErrorNote error={recent.error} retry={recent.reload} />
      {!recent.data ? (
        recent.error ? null : (
          <Loading />
        )
      ) : recent.data.events.length === 0 ? (
        <p class="hint">No event from this machine yet: its daemon sends what its coding agents do as they do it.</p>
      ) : (
        <table class="plain">
          <caption class="fleet-caption">The {recent.data.events.length} latest events of this machine</caption>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Agent</th>
              <th scope="col">Action</th>
              <th scope="col">Decision</th>
              <th scope="col">Risk</th>
              <th scope="col">Session</th>
            </tr>
          </thead>
          <tbody>
            {recent.data.events.map((e) => (
              <tr key={e.id}>
                <td title={e.timestamp}>{when(e.timestamp)}</td>
                <td>{e.agent_id ?? '—'}</td>
                <td>{e.tool_name ?? e.action ?? e.action_type ?? '—'}</td>
                <td>{e.decision ? <Badge kind={e.decision}>{e.decision}</Badge> : '—'}</td>
                <td>
                  <span class={`sev sev-${riskBand(e.risk_score)}`}>{e.risk_score ?? '—'}</span>
                </td>
                <td>{e.session_id ? <a href={href(['sessions', e.session_id])}>{short(e.session_id)}</a> : '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p>
        <a href={allEvents}>All events of this machine →</a>
      </p>
    </div>
  )
}

export function AgentsSection({ m }: { m: MachineDetail }) {
  return (
    <div class="card">
      <h2>
        Agents <small>{count(m.agent_count)} seen</small>
      </h2>
      {m.agents.length === 0 ? (
        <p class="hint">No agent has reported from this machine yet.</p>
      ) : (
        <table class="plain">
          <caption class="fleet-caption">
            {m.agents.length < m.agent_count ? `The ${m.agents.length} most recently seen` : 'Every agent seen'} on this machine
          </caption>
          <thead>
            <tr>
              <th scope="col">Agent</th>
              <th scope="col">Platform</th>
              <th scope="col">Events</th>
              <th scope="col">Sessions</th>
              <th scope="col">Last seen</th>
            </tr>
          </thead>
          <tbody>
            {m.agents.map((a) => (
              <tr key={a.id}>
                <td>
                  <a href={href(['events'], { machine_id: m.id, agent_id: a.agent_id })}>{a.name ?? a.agent_id}</a>
                </td>
                <td>{a.platform ?? '—'}</td>
                <td>{count(a.event_count)}</td>
                <td>{count(a.session_count)}</td>
                <td title={when(a.last_seen_at)}>{ago(a.last_seen_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  )
}

type Process = MachineDetail['processes'][number]

export function ProcessesSection({ m }: { m: MachineDetail }) {
  const reported = m.processes.reduce<string | null>((t, p) => (t && t > p.reported_at ? t : p.reported_at), null)
  const columns: Column<Process>[] = [
    { key: 'pid', label: 'PID', width: '5rem', cell: (p) => p.pid },
    { key: 'platform', label: 'Platform', width: '8rem', cell: (p) => p.platform },
    {
      key: 'binary',
      label: 'Binary',
      width: 'minmax(12rem, 3fr)',
      cell: (p) => <span title={p.binary_path ?? ''}>{p.binary_path ?? '—'}</span>,
    },
    { key: 'state', label: 'State', width: '6rem', cell: (p) => p.state },
    { key: 'cpu', label: 'CPU %', width: '5rem', cell: (p) => (p.cpu_percent === null ? '—' : p.cpu_percent.toFixed(1)) },
    { key: 'mem', label: 'Memory MB', width: '6rem', cell: (p) => (p.memory_mb === null ? '—' : count(Math.round(p.memory_mb))) },
    { key: 'started', label: 'Started', width: '11rem', cell: (p) => when(p.started_at) },
  ]
  return (
    <div class="card">
      <h2>
        Process snapshot <small>{reported ? `reported ${ago(reported)}` : 'none reported'}</small>
      </h2>
      {m.processes.length === 0 ? (
        <p class="hint">The daemon has not sent a snapshot of the agent processes it watches on this machine.</p>
      ) : (
        <VirtualTable
          label="Agent processes in the latest snapshot"
          rows={m.processes}
          columns={columns}
          rowKey={(p) => `${p.platform}:${p.pid}`}
          height={`${Math.min(m.processes.length, 12) * 32 + 2}px`}
        />
      )}
    </div>
  )
}

export function GraphsSection({ m }: { m: MachineDetail }) {
  return (
    <div class="card">
      <h2>
        Agent graphs <small>{count(m.graph_count)} in all</small>
      </h2>
      {m.graphs.length === 0 ? (
        <p class="hint">No agent graph (an agent and the sub-agents it delegated to) has been reported from this machine.</p>
      ) : (
        <table class="plain">
          <caption class="fleet-caption">
            {m.graphs.length < m.graph_count ? `The ${m.graphs.length} most recently updated` : 'Every'} agent graph
          </caption>
          <thead>
            <tr>
              <th scope="col">Root agent</th>
              <th scope="col">Status</th>
              <th scope="col">Nodes</th>
              <th scope="col">Started</th>
              <th scope="col">Completed</th>
              <th scope="col">Graph</th>
            </tr>
          </thead>
          <tbody>
            {m.graphs.map((g) => (
              <tr key={g.graph_id}>
                <td>{g.root_agent_name ?? g.root_agent_id ?? g.graph_id}</td>
                <td>{g.status ?? '—'}</td>
                <td>{count(g.total_nodes)}</td>
                <td>{when(g.started_at)}</td>
                <td>{g.completed_at ? when(g.completed_at) : 'running'}</td>
                <td>
                  <details>
                    <summary>Raw nodes</summary>
                    <pre class="fleet-json">{JSON.stringify(g.nodes, null, 2)}</pre>
                  </details>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  )
}
