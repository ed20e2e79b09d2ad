/** The ingest benchmarks' server and load: a real `serve` process on a throw-away embedded Postgres. */
import path from 'node:path'

export const BATCH = 500
const MAIN = path.join(import.meta.dir, '../../src/main.ts')

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
  const probe = Bun.serve({ port: 0, fetch: () => new Response() })
  const port = probe.port!
  probe.stop(true)
  const env = {
    ...process.env,
    QUINT_DATA_DIR: dataDir,
    QUINT_BOOTSTRAP_ORG: 'bench',
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    INGEST_RATE_PER_S: '0',
    CONSUMER_POLL_MS: '100',
  } as Record<string, string>
  delete env.DATABASE_URL
  const proc = Bun.spawn(['bun', MAIN, 'serve'], { env, stdout: 'ignore', stderr: 'pipe' })
  let err = ''
  void (async () => {
    for await (const chunk of proc.stderr) err += new TextDecoder().decode(chunk)
  })()
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 600; i++) {
    if (proc.exitCode !== null) throw new Error(`server exited: ${err}`)
    const ok = await fetch(`${url}/ready`).then(
      (r) => r.status === 200,
      () => false,
    )
    if (ok) {
      const token = /deploy token\s+: (qt_deploy_[0-9a-f]+)/.exec(err)?.[1]
      if (!token) throw new Error('no deploy token printed')
      return { proc, url, token }
    }
    await Bun.sleep(100)
  }
  throw new Error(`server not ready: ${err}`)
}
