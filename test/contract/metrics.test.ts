/**
 * Our own Prometheus metrics pass `promtool check metrics` (issue 14): names, suffixes, units,
 * help texts. Every metric family of the composed app is exercised once (counters and
 * histograms show no series until touched), so a metric added later is linted without naming it
 * here. promtool is Debian's `prometheus` package; .ci/run installs it. Missing, the test fails.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { Counter, Gauge, Histogram, Summary } from 'prom-client'
import type { TestDatabase } from '../helpers/db.ts'
import { HOOK_TIMEOUT_MS, testDatabase } from '../helpers/db.ts'
import { testApp } from '../helpers/app.ts'

let db: TestDatabase
beforeAll(async () => {
  db = await testDatabase()
}, HOOK_TIMEOUT_MS)
afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

test('promtool check metrics finds nothing wrong with any quint_ metric', async () => {
  const promtool = Bun.which('promtool')
  if (!promtool) throw new Error('promtool is not installed (Debian package `prometheus`; .ci/run installs it)')
  const t = testApp(db)
  const registry = t.metrics.registry
  let ours = 0
  for (const metric of registry.getMetricsAsArray()) {
    if (!metric.name.startsWith('quint_')) continue
    ours++
    const labels = Object.fromEntries(((metric as unknown as { labelNames?: string[] }).labelNames ?? []).map((l) => [l, 'x']))
    if (metric instanceof Counter) metric.inc(labels)
    else if (metric instanceof Histogram || metric instanceof Summary) metric.observe(labels, 0.01)
    else if (metric instanceof Gauge) metric.set(labels, 1)
  }
  expect(ours).toBeGreaterThan(5)
  const text = await (await t.app.fetch(new Request('http://test/metrics'))).text()
  const families = text.split(/\n(?=# HELP )/).filter((block) => block.startsWith('# HELP quint_'))
  expect(families.length).toBe(ours)
  const proc = Bun.spawn([promtool, 'check', 'metrics'], {
    stdin: new TextEncoder().encode(`${families.join('\n').trimEnd()}\n`),
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  expect({ code, out, err }).toEqual({ code: 0, out: '', err: '' })
})

test('every quint_ingest_ metric is documented in docs/ingest-stats.md, and every one documented exists', async () => {
  const t = testApp(db)
  const ours = t.metrics.registry
    .getMetricsAsArray()
    .map((m) => m.name)
    .filter((name) => name.startsWith('quint_ingest_'))
    .sort()
  const doc = await Bun.file(new URL('../../docs/ingest-stats.md', import.meta.url)).text()
  const documented = [...new Set(doc.match(/quint_ingest_[a-z_]+/g) ?? [])].sort()
  expect(ours).toContain('quint_ingest_edge_dropped_total')
  expect(ours).toContain('quint_ingest_queryable_lag_seconds')
  expect(documented).toEqual(ours)
})
