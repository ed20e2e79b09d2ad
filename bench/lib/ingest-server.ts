/** The ingest benchmarks' server and load: a real `serve` process on a throw-away embedded Postgres. */
import { startServe } from './serve.ts'

export const BATCH = 500

let seq = 0
/** A 500-event v2 batch with fresh ids (duplicates would be cheaper than real traffic). */
export function batchBody(run: string): string {
  const now = new Date().toISOString()
  const events = []
  for (let i = 0; i < BATCH; i++) {
    const n = seq++
    events.push({
      schema_version: 2,
      event_id: `${run}-${n}`,
      timestamp: now,
      source: 'proxy',
      platform: 'claude-code',
      action_type: 'tools/call',
      session_id: `${run}-s${n % 64}`,
      agent_id: `agent-${n % 16}`,
      tool_name: 'Read',
      arguments_json: `{"file_path":"/repo/src/module-${n % 997}.ts"}`,
      decision: 'allow',
      risk_score: n % 100,
      labels: { process_name: 'claude', process_pid: String(40000 + (n % 16)) },
    })
  }
  return JSON.stringify({ events })
}

export async function startServer(dataDir: string) {
  const server = await startServe({
    QUINT_DATA_DIR: dataDir,
    QUINT_BOOTSTRAP_ORG: 'bench',
    CONSUMER_POLL_MS: '100',
    DATABASE_URL: undefined,
  })
  const token = /deploy token\s+: (qt_deploy_[0-9a-f]+)/.exec(server.stderr())?.[1]
  if (!token) throw new Error('no deploy token printed')
  return { proc: server.proc, url: server.url, token }
}
