/**
 * The ingest benchmarks' server, load and baseline: a real `serve` process on a throw-away
 * embedded Postgres, 500-event batches, and one client COPYing the same rows into the same tables.
 */
import fs from 'node:fs'
import { loadConfig } from '../../src/config.ts'
import { openDatabase } from '../../src/infra/database.ts'
import { createPool, type Sql } from '../../src/infra/db.ts'
import { createLogger } from '../../src/infra/log.ts'
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

/**
 * `serve` on `dataDir`. The first start prints the bootstrap org's deploy token; a later start on
 * the same directory is handed it. `env` adds settings (QUINT_CONSUMERS=none: the front door alone).
 */
export async function startServer(dataDir: string, opts: { token?: string; env?: Record<string, string> } = {}) {
  const server = await startServe({
    QUINT_DATA_DIR: dataDir,
    QUINT_BOOTSTRAP_ORG: 'bench',
    CONSUMER_POLL_MS: '100',
    DATABASE_URL: undefined,
    ...opts.env,
  })
  const token = opts.token ?? /deploy token\s+: (qt_deploy_[0-9a-f]+)/.exec(server.stderr())?.[1]
  if (!token) throw new Error('no deploy token printed')
  return { proc: server.proc, url: server.url, token }
}

/**
 * The owner's view of a bench server's database (beside the server, not through it): the bus
 * backlog read from Postgres (a /metrics scrape every few milliseconds would itself take a good
 * part of a core from the server), and a wait until every consumer drained.
 */
export async function attachOwner(dataDir: string) {
  const database = await openDatabase(
    loadConfig({ QUINT_DATA_DIR: dataDir, QUINT_BOOTSTRAP_ORG: '' }),
    createLogger('warn', 'stderr'),
  )
  const owner = createPool(database.ownerTarget, { max: 1 })
  const backlog = async () => (await owner<{ n: number }[]>`select count(*)::int as n from bus_pending`)[0]!.n
  return {
    owner,
    backlog,
    async drained() {
      while ((await backlog()) !== 0) await Bun.sleep(5)
    },
    async close() {
      await owner.end()
      await database.close()
    },
  }
}

/** POSTs one batch; resolves with its latency once answered 200 with every event accepted. */
export async function postBatch(server: { url: string; token: string }, body: string): Promise<number> {
  const t = performance.now()
  const res = await fetch(`${server.url}/v1/ingest`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
    body,
  })
  const out = (await res.json()) as { accepted?: number }
  if (res.status !== 200 || out.accepted !== BATCH)
    throw new Error(`ingest answered ${res.status}: ${JSON.stringify(out).slice(0, 300)}`)
  return performance.now() - t
}

/**
 * The raw baseline: one client COPYing `rows` events into the dedupe ledger and `actions` of
 * `orgId`, in one transaction, as the owner (COPY FROM cannot run under RLS). Returns its wall
 * time, and the CPU time of its backend and of this process while it ran (Linux, from /proc).
 */
export async function rawCopy(owner: Sql, orgId: string, rows: number, runId: string) {
  const now = new Date().toISOString()
  const ledger: string[] = []
  const actions: string[] = []
  const cpu0 = process.cpuUsage()
  for (let i = 0; i < rows; i++) {
    const id = crypto.randomUUID()
    const key = `e:raw-${runId}-${i}`
    ledger.push(`${orgId}\t${key}\t${id}\t${now}`)
    actions.push(
      [
        orgId,
        id,
        now,
        key,
        `raw-${runId}-${i}`,
        now,
        `raw-s${i % 64}`,
        `agent-${i % 16}`,
        '2',
        'proxy',
        'claude-code',
        'tools/call',
        'Read',
        `{"file_path": "/repo/src/module-${i % 997}.ts"}`,
        'allow',
        'f',
        String(i % 100),
        `{"process_name": "claude", "process_pid": "${40000 + (i % 16)}"}`,
        '{}',
        'f',
      ].join('\t'),
    )
  }
  let backendMs = 0
  const t = performance.now()
  await owner.begin(async (tx) => {
    const pid = (await tx<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid
    const before = processCpuMs(pid)
    for (const [sql, lines] of [
      [tx`copy event_keys (org_id, event_key, action_id, action_created_at) from stdin`, ledger],
      [
        tx`copy actions (org_id, id, created_at, event_key, event_id, occurred_at, session_key, agent_key, schema_version,
                        source, platform, action_type, tool_name, arguments, decision, blocked, risk_score, labels, extra,
                        redacted) from stdin`,
        actions,
      ],
    ] as const) {
      const stream = await sql.writable()
      await new Promise<void>((resolve, reject) => {
        stream.on('error', reject)
        stream.on('finish', resolve)
        stream.end(lines.join('\n') + '\n')
      })
    }
    backendMs = processCpuMs(pid) - before
  })
  const seconds = (performance.now() - t) / 1000
  const client = process.cpuUsage(cpu0)
  return { rows, seconds, backendMs, clientMs: (client.user + client.system) / 1000 }
}

/** CPU time (user + system) of every thread of a process so far, in ms (USER_HZ = 100). */
export function processCpuMs(pid: number): number {
  let ticks = 0
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    ticks += Number(f[11]) + Number(f[12])
  }
  return ticks * 10
}
