/**
 * The fauxqs SNS/SQS emulator (npm devDependency) as a child process on a free loopback port,
 * spoken to by the real @aws-sdk clients. It runs under Bun (it needs `node:sqlite`, which
 * Node 20 lacks). Start-up failure throws with the emulator's output: never a skipped test.
 */
import path from 'node:path'
import { freePort, ROOT } from './process.ts'

const CLI = path.join(ROOT, 'node_modules/fauxqs/dist/cli.js')

export interface Fauxqs {
  endpoint: string
  /**
   * SIGSTOP: the emulator stays up but answers nothing. Connections are still accepted by the
   * kernel and requests sent, so a caller hangs on its socket instead of being refused: the
   * outage of issue 14 (an endpoint frozen, not down).
   */
  freeze(): void
  /** SIGCONT: it answers again (requests sent meanwhile included). */
  thaw(): void
  stop(): Promise<void>
}

export async function startFauxqs(timeoutMs = 20_000): Promise<Fauxqs> {
  const port = await freePort()
  const proc = Bun.spawn([process.execPath, CLI], {
    cwd: ROOT,
    env: { ...process.env, FAUXQS_PORT: String(port), FAUXQS_LOGGER: 'false', FAUXQS_HOST: 'localhost' },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  let output = ''
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const d = new TextDecoder()
    for await (const chunk of s) output = (output + d.decode(chunk, { stream: true })).slice(-4000)
  }
  void pump(proc.stdout)
  void pump(proc.stderr)
  const endpoint = `http://127.0.0.1:${port}`
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && proc.exitCode === null) {
    try {
      if ((await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) })).ok) {
        return {
          endpoint,
          freeze: () => proc.kill('SIGSTOP'),
          thaw: () => proc.kill('SIGCONT'),
          async stop() {
            proc.kill('SIGKILL')
            await proc.exited
          },
        }
      }
    } catch {
      // not listening yet
    }
    await Bun.sleep(50)
  }
  proc.kill('SIGKILL')
  await proc.exited
  throw new Error(`fauxqs did not start on port ${port} (exit: ${proc.exitCode})\n${output}`)
}
