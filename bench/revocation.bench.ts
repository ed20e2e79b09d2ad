/**
 * revocation: `RevocationFilter.check` (memory mode; cluster mode checks the same local copy) on
 * a filter at its design load (1M revoked jtis, p = 0.8 %), beside a bare `Set.has` of the same
 * `${orgId}:${jti}` strings in the same run. Half the probes are revoked jtis, half random. A
 * single check is far below the timer's resolution, so each sample times a batch of checks and
 * the figures are per check.
 */
import { createRevocationFilter, type RevocationEntry } from '../src/auth/jwt/revocation-filter.ts'
import { createLogger } from '../src/infra/log.ts'
import { percentile, round } from './lib/measure.ts'

export const name = 'revocation'

const ITEMS = 1_000_000
const BATCH = 256

function measure(fn: (e: RevocationEntry) => unknown, probes: RevocationEntry[], ms: number) {
  const warmEnd = performance.now() + Math.min(300, ms / 4)
  let i = 0
  let sink = 0
  while (performance.now() < warmEnd) if (fn(probes[i++ % probes.length]!)) sink++
  const samples: number[] = []
  const end = performance.now() + ms
  let checks = 0
  const start = performance.now()
  while (performance.now() < end) {
    const t = performance.now()
    for (let j = 0; j < BATCH; j++) if (fn(probes[i++ % probes.length]!)) sink++
    samples.push(((performance.now() - t) * 1000) / BATCH)
    checks += BATCH
  }
  const elapsed = (performance.now() - start) / 1000
  samples.sort((a, b) => a - b)
  return { ops_per_s: checks / elapsed, p50_us: percentile(samples, 50), p99_us: percentile(samples, 99), sink }
}

export async function run(opts: { seconds: number }) {
  const log = createLogger('warn', 'stderr')
  const filter = createRevocationFilter({ log, expectedItems: ITEMS, falsePositiveRate: 0.008 })
  const org = crypto.randomUUID()
  const revoked = Array.from({ length: ITEMS }, () => ({ orgId: org, jti: crypto.randomUUID() }))
  await filter.rebuild(revoked)
  const probes: RevocationEntry[] = []
  for (let i = 0; i < 100_000; i++) probes.push(i % 2 ? revoked[i]! : { orgId: org, jti: crypto.randomUUID() })
  const set = new Set(revoked.map((e) => `${e.orgId}:${e.jti}`))
  const ms = opts.seconds * 1000
  const check = measure((e) => filter.check(e.orgId, e.jti) === true, probes, ms)
  const raw = measure((e) => set.has(`${e.orgId}:${e.jti}`), probes, ms)
  const s = filter.stats()
  await filter.close()
  return {
    figures: {
      'revocation.check_p50_us': round(check.p50_us, 4),
      'revocation.check_p99_us': round(check.p99_us, 4),
      'revocation.check_ops_per_s': round(check.ops_per_s, 0),
      'revocation.raw_set_p50_us': round(raw.p50_us, 4),
      'revocation.raw_set_ops_per_s': round(raw.ops_per_s, 0),
      'revocation.ratio': round(check.ops_per_s / raw.ops_per_s, 4),
      'revocation.fill_ratio': round(s.setBits / s.bits, 4),
    },
    rows: [
      [
        'bloom check (1M revoked, k = 7)',
        `${round(check.ops_per_s, 0)} ops/s`,
        `p50 ${round(check.p50_us, 3)} µs`,
        `p99 ${round(check.p99_us, 3)} µs`,
      ],
      [
        'baseline: Set.has of the same key',
        `${round(raw.ops_per_s, 0)} ops/s`,
        `p50 ${round(raw.p50_us, 3)} µs`,
        `p99 ${round(raw.p99_us, 3)} µs`,
      ],
      [
        'ratio check/raw',
        `${round(check.ops_per_s / raw.ops_per_s, 4)}`,
        `fill ${round(s.setBits / s.bits, 3)}`,
        `${s.bits} bits`,
      ],
    ],
  }
}
