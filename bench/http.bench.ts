/**
 * http: requests/s and latency of GET /health through the full app stack, beside bare Bun.serve
 * answering the same body, under the same keep-alive load from this process.
 */
import path from 'node:path'
import { httpLoad, round } from './lib/measure.ts'

export const name = 'http'

async function serve(mode: 'raw' | 'app') {
  const proc = Bun.spawn(['bun', path.join(import.meta.dir, 'lib/http-target.ts'), mode], {
    stdout: 'ignore', // the app's access log: written, as in production, but not kept
    stderr: 'pipe',
  })
  const reader = proc.stderr.getReader()
  let text = ''
  while (!text.includes('\n')) {
    const { value, done } = await reader.read()
    if (done) throw new Error(`${mode} target exited`)
    text += new TextDecoder().decode(value)
  }
  return { proc, url: `http://127.0.0.1:${text.trim()}/health` }
}

export async function run(opts: { seconds: number }) {
  const concurrency = 32
  const raw = await serve('raw')
  const app = await serve('app')
  // Alternate short slices so both targets see the same machine conditions (this box's CPU is
  // shared; its speed drifts by 2-3x within a minute): the ratio stays meaningful.
  const slices = Math.max(4, Math.round(opts.seconds * 2))
  const got = { raw: [] as Awaited<ReturnType<typeof httpLoad>>[], app: [] as Awaited<ReturnType<typeof httpLoad>>[] }
  try {
    for (let i = 0; i < slices; i++) {
      got.raw.push(await httpLoad(raw.url, concurrency, (opts.seconds * 1000) / slices))
      got.app.push(await httpLoad(app.url, concurrency, (opts.seconds * 1000) / slices))
    }
  } finally {
    for (const t of [raw, app]) {
      t.proc.kill()
      await t.proc.exited
    }
  }
  const sum = (xs: { rps: number }[]) => xs.reduce((n, x) => n + x.rps, 0) / xs.length
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const r = { rps: sum(got.raw), p50: median(got.raw.map((x) => x.p50_ms)), p99: median(got.raw.map((x) => x.p99_ms)) }
  const a = { rps: sum(got.app), p50: median(got.app.map((x) => x.p50_ms)), p99: median(got.app.map((x) => x.p99_ms)) }
  const errors = [...got.raw, ...got.app].reduce((n, x) => n + x.errors, 0)
  return {
    figures: {
      'http.app_rps': round(a.rps, 0),
      'http.raw_rps': round(r.rps, 0),
      'http.ratio': round(a.rps / r.rps, 3),
      'http.app_p99_ms': round(a.p99, 3),
      'http.raw_p99_ms': round(r.p99, 3),
    },
    rows: [
      ['GET /health, full app stack', `${round(a.rps, 0)} req/s`, `p50 ${round(a.p50, 3)} ms`, `p99 ${round(a.p99, 3)} ms`],
      ['baseline: bare Bun.serve', `${round(r.rps, 0)} req/s`, `p50 ${round(r.p50, 3)} ms`, `p99 ${round(r.p99, 3)} ms`],
      ['ratio app/raw', `${round(a.rps / r.rps, 3)}`, `${concurrency} conns, ${slices} alternating slices`, `errors ${errors}`],
    ],
  }
}
