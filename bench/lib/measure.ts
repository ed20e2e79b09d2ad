/** Small measurement helpers shared by the suites: percentiles and an HTTP load loop. */

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]!
}

export interface Timing {
  ops_per_s: number
  p50_us: number
  p99_us: number
}

/** Runs `fn` repeatedly for `ms` (after a warm-up) and reports throughput and latency. */
export async function timeLoop(fn: () => unknown, ms: number): Promise<Timing> {
  const warmEnd = performance.now() + Math.min(500, ms / 4)
  while (performance.now() < warmEnd) await fn()
  const samples: number[] = []
  const end = performance.now() + ms
  const start = performance.now()
  while (performance.now() < end) {
    const t = performance.now()
    await fn()
    samples.push((performance.now() - t) * 1000)
  }
  const elapsed = (performance.now() - start) / 1000
  samples.sort((a, b) => a - b)
  return { ops_per_s: samples.length / elapsed, p50_us: percentile(samples, 50), p99_us: percentile(samples, 99) }
}

/** `concurrency` keep-alive loops of GET `url` for `ms`; returns requests/s and latency in ms. */
export async function httpLoad(url: string, concurrency: number, ms: number) {
  const latencies: number[] = []
  let errors = 0
  const warmEnd = performance.now() + Math.min(200, ms / 4)
  const end = warmEnd + ms
  const worker = async () => {
    while (performance.now() < end) {
      const t = performance.now()
      try {
        const res = await fetch(url)
        await res.arrayBuffer()
        if (res.status !== 200) errors++
        else if (t >= warmEnd) latencies.push(performance.now() - t)
      } catch {
        errors++
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  latencies.sort((a, b) => a - b)
  return {
    rps: latencies.length / (ms / 1000),
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    errors,
  }
}

export const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits
