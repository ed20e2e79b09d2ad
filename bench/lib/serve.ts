/** A real `serve` process for the suites that load a whole instance: started, waited for, its stderr kept. */
import path from 'node:path'

const MAIN = path.join(import.meta.dir, '../../src/main.ts')

/**
 * Starts `quint-cloud serve` on a free port with `env` over this process's environment (a key set
 * to undefined is removed) and resolves once `/ready` answers 200. `stderr()` is what it printed
 * so far (the first start's credentials). BENCH_BUN_ARGS adds flags for the server's `bun`, to
 * profile it: `BENCH_BUN_ARGS="--cpu-prof-md --cpu-prof-dir=/tmp/prof" bun bench/ingest-cpu.ts`.
 */
export async function startServe(env: Record<string, string | undefined>) {
  const probe = Bun.serve({ port: 0, fetch: () => new Response() })
  const port = probe.port!
  probe.stop(true)
  const full: Record<string, string> = {}
  for (const [k, v] of Object.entries({
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    INGEST_RATE_PER_S: '0',
    ...env,
  }))
    if (v !== undefined) full[k] = v
  const proc = Bun.spawn(['bun', ...(process.env.BENCH_BUN_ARGS ?? '').split(' ').filter(Boolean), MAIN, 'serve'], {
    env: full,
    stdout: 'ignore',
    stderr: 'pipe',
  })
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
    if (ok) return { proc, url, stderr: () => err }
    await Bun.sleep(100)
  }
  throw new Error(`server not ready: ${err}`)
}
