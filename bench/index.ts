/**
 * `bun run bench`: runs every `bench/*.bench.ts` suite and prints each figure beside the baseline
 * measured in the same run. `bun run bench -- --json` prints one JSON object with every figure;
 * `--only NAME` runs one suite; `--seconds N` sets the measuring time per figure (default 3).
 */
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'

interface Suite {
  name: string
  run(opts: { seconds: number }): Promise<{ figures: Record<string, number>; rows: string[][] }>
}

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: { json: { type: 'boolean' }, only: { type: 'string' }, seconds: { type: 'string' } },
  strict: true,
})
const seconds = Number(values.seconds ?? 3)
if (!(seconds > 0)) throw new Error('--seconds must be a positive number')

const files = [...new Bun.Glob('*.bench.ts').scanSync(import.meta.dir)].sort()
const figures: Record<string, number> = {}
for (const file of files) {
  const suite = (await import(path.join(import.meta.dir, file))) as Suite
  if (values.only && suite.name !== values.only) continue
  const result = await suite.run({ seconds })
  Object.assign(figures, result.figures)
  if (!values.json) {
    console.log(`\n${suite.name}`)
    const widths = [0, 1, 2, 3].map((i) => Math.max(...result.rows.map((r) => (r[i] ?? '').length)))
    for (const r of result.rows) console.log('  ' + r.map((c, i) => c.padEnd(widths[i]!)).join('   '))
  }
}
const machine = {
  cpus: os.cpus().length,
  model: os.cpus()[0]?.model,
  bun: Bun.version,
  platform: `${process.platform}-${process.arch}`,
}
if (values.json) console.log(JSON.stringify({ machine, seconds, figures }))
else console.log(`\n${machine.cpus} × ${machine.model}, Bun ${machine.bun}`)
