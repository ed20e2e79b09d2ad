/** Runs the real CLI (`bun src/main.ts …`) as a child process, as an operator would. */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { removeDataDir } from '../../src/infra/embedded-postgres.ts'

export const ROOT = path.resolve(import.meta.dir, '../..')
const MAIN = path.join(ROOT, 'src/main.ts')

/** Environment for a child: no inherited DATABASE_URL unless given, logs at info. */
export function childEnv(extra: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'DATABASE_URL') env[k] = v
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v
  return env
}

export async function runCli(args: string[], env: Record<string, string>) {
  const proc = Bun.spawn(['bun', MAIN, ...args], { cwd: ROOT, env, stdout: 'pipe', stderr: 'pipe' })
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ])
  return { code, stdout, stderr }
}

const spawned = new Set<{ proc: ReturnType<typeof Bun.spawn>; dataDir?: string }>()
const scratch: string[] = []

/** A fresh data dir for a server or command this test file runs; `cleanUp` removes it. */
export function scratchDataDir(prefix = 'quint-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  scratch.push(dir)
  return dir
}

/** Kills what the file started and removes its data dirs (with a relocated cluster, if any). */
export async function cleanUp(): Promise<void> {
  await killSpawned()
  for (const dir of scratch.splice(0)) removeDataDir(dir)
}

/**
 * Kills every server a test started and still running, and the embedded Postgres under its data
 * dir: a test that fails or times out must not leave a database behind.
 */
export async function killSpawned(): Promise<void> {
  for (const s of spawned) {
    s.proc.kill('SIGKILL')
    await s.proc.exited
    if (s.dataDir) {
      try {
        const pid = Number(fs.readFileSync(path.join(s.dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0])
        if (pid > 0) process.kill(pid, 'SIGINT')
      } catch {
        // no postmaster left
      }
    }
  }
  spawned.clear()
}

export interface RunningServer {
  proc: ReturnType<typeof Bun.spawn>
  url: string
  stdout(): string
  stderr(): string
  exited: Promise<number>
}

export async function freePort(): Promise<number> {
  const s = Bun.serve({ port: 0, fetch: () => new Response() })
  const port = s.port!
  s.stop(true)
  return port
}

/** Starts `serve` and waits until /ready answers 200 (or the process dies). */
export async function startServer(env: Record<string, string>, timeoutMs = 60_000): Promise<RunningServer> {
  const port = await freePort()
  const proc = Bun.spawn(['bun', MAIN, 'serve'], {
    cwd: ROOT,
    env: { ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const entry = { proc, dataDir: env.QUINT_DATA_DIR }
  spawned.add(entry)
  void proc.exited.then(() => spawned.delete(entry))
  let out = ''
  let err = ''
  const pump = async (s: ReadableStream<Uint8Array>, add: (t: string) => void) => {
    const d = new TextDecoder()
    for await (const chunk of s) add(d.decode(chunk, { stream: true }))
  }
  void pump(proc.stdout, (t) => (out += t))
  void pump(proc.stderr, (t) => (err += t))
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + timeoutMs
  let dead = false
  void proc.exited.then(() => (dead = true))
  while (Date.now() < deadline && !dead) {
    try {
      if ((await fetch(`${url}/ready`)).status === 200) {
        return { proc, url, stdout: () => out, stderr: () => err, exited: proc.exited }
      }
    } catch {
      // not listening yet
    }
    await Bun.sleep(100)
  }
  proc.kill('SIGKILL')
  throw new Error(`server did not become ready (exit: ${dead ? proc.exitCode : 'none'})\n${err}\n${out.slice(-2000)}`)
}

export interface CreatedOrg {
  org_id: string
  admin_key: string
  deploy_token: string
}

/** Creates an org with the real CLI (`org create --json`), as an operator would; works while a server runs. */
export async function createOrg(env: Record<string, string>, name: string): Promise<CreatedOrg> {
  const res = await runCli(['org', 'create', '--name', name, '--json'], env)
  if (res.code !== 0) throw new Error(`org create exited ${res.code}: ${res.stderr}`)
  return JSON.parse(res.stdout) as CreatedOrg
}
