/**
 * docker/Dockerfile without a Docker engine (issue 14: the image could not be built, because its
 * build stage did not copy `patches/` and `bun install --frozen-lockfile` failed). The test reads
 * the Dockerfile, lays out exactly the files its build stage's COPY lines copy from this checkout
 * (after .dockerignore), runs that stage's RUN lines there, copies what the runtime stage takes
 * from the build stage to where it puts it, and runs the executable from there: the CLI, the
 * OpenAPI document, and `serve` (as a non-root user when the test runs as root) answering /docs
 * and the image's HEALTHCHECK command.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { removeDataDir } from '../../src/infra/embedded-postgres.ts'
import { HOOK_TIMEOUT_MS } from '../helpers/db.ts'
import { freePort, ROOT } from '../helpers/process.ts'

interface Instruction {
  keyword: string
  args: string
}

interface Stage {
  from: string
  name: string | null
  instructions: Instruction[]
}

/** Stages and their instructions; line continuations joined, comments dropped, ARGs substituted in FROM. */
function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const args: Record<string, string> = {}
  const stages: Stage[] = []
  const lines = text.replace(/\\\n/g, ' ').split('\n')
  for (const raw of lines) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const [, keyword = '', rest = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? []
    const kw = keyword.toUpperCase()
    if (kw === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!
      const from = m[1]!.replace(/\$\{(\w+)\}/g, (_, name: string) => args[name] ?? '')
      stages.push({ from, name: m[2] ?? null, instructions: [] })
    } else if (kw === 'ARG' && stages.length === 0) {
      const [name, value = ''] = rest.split('=')
      args[name!] = value
    } else {
      stages.at(-1)?.instructions.push({ keyword: kw, args: rest })
    }
  }
  return { args, stages }
}

/** .dockerignore rules (Docker's pattern matcher: last matching rule wins; a match on a parent directory counts). */
function dockerIgnore(text: string): (relative: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!')
      const pattern = path.posix.normalize((negate ? l.slice(1) : l).trim()).replace(/^\/+/, '')
      let re = ''
      for (let i = 0; i < pattern.length; i++) {
        const ch = pattern[i]!
        if (ch === '*' && pattern[i + 1] === '*') {
          re += pattern[i + 2] === '/' ? '(?:.*/)?' : '.*'
          i += pattern[i + 2] === '/' ? 2 : 1
        } else if (ch === '*') re += '[^/]*'
        else if (ch === '?') re += '[^/]'
        else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&')
      }
      return { negate, re: new RegExp(`^${re}$`) }
    })
  return (relative) => {
    const parts = relative.split('/')
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'))
    let excluded = false
    for (const rule of rules) if (candidates.some((c) => rule.re.test(c))) excluded = !rule.negate
    return excluded
  }
}

/** Splits `COPY [--flag=…] src… dest` (shell form; the exec form is not used here). */
function copyArgs(args: string): { from: string | null; sources: string[]; dest: string } {
  const words = args.split(/\s+/)
  let from: string | null = null
  while (words[0]?.startsWith('--')) {
    const flag = words.shift()!
    if (flag.startsWith('--from=')) from = flag.slice('--from='.length)
  }
  const dest = words.pop()!
  for (const s of words) if (/[*?[]/.test(s)) throw new Error(`COPY source with a wildcard (${s}): teach this test to expand it`)
  return { from, sources: words, dest }
}

/** Parses `ENV a=b c=` (the key=value form). */
function envOf(args: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of args.matchAll(/(\w+)=("[^"]*"|\S*)/g)) out[m[1]!] = m[2]!.replace(/^"|"$/g, '')
  return out
}

const dockerfile = parseDockerfile(fs.readFileSync(path.join(ROOT, 'docker/Dockerfile'), 'utf8'))
const ignored = dockerIgnore(fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8'))
const build = dockerfile.stages[0]!
const runtime = dockerfile.stages.at(-1)!
const workdir = (stage: Stage) => stage.instructions.filter((i) => i.keyword === 'WORKDIR').at(-1)?.args ?? '/'

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-docker-'))
// The runtime user must be able to reach the executable and the Postgres binaries.
fs.chmodSync(tmp, 0o755)
const context = path.join(tmp, 'build')
const image = path.join(tmp, 'image')
const copied: string[] = []

/** Copies a context path as COPY does: a directory's contents into dest, skipping ignored files. */
function copyFromContext(source: string, dest: string): void {
  const from = path.join(ROOT, source)
  if (!fs.existsSync(from) || ignored(source))
    throw new Error(`COPY ${source}: not in the build context (missing or .dockerignore'd)`)
  const stat = fs.statSync(from)
  if (stat.isFile()) {
    fs.mkdirSync(path.dirname(dest), { recursive: true })
    fs.copyFileSync(from, dest)
    copied.push(source)
    return
  }
  fs.mkdirSync(dest, { recursive: true })
  for (const entry of fs.readdirSync(from)) {
    const rel = path.posix.join(source, entry)
    if (ignored(rel)) continue
    copyFromContext(rel, path.join(dest, entry))
  }
}

async function sh(command: string, cwd: string, env: Record<string, string>) {
  const proc = Bun.spawn(['sh', '-c', command], { cwd, env, stdout: 'pipe', stderr: 'pipe' })
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ])
  return { code, stdout, stderr }
}

const buildLog: string[] = []

beforeAll(async () => {
  const dir = workdir(build)
  // A clean environment, as in a build container, but with this machine's package cache settings:
  // the install resolves from the cache CI's own install filled (no network at run time).
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir() }
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && /^(?:BUN_INSTALL|XDG_CACHE_HOME)/.test(k)) env[k] = v
  for (const step of build.instructions) {
    if (step.keyword === 'ENV') Object.assign(env, envOf(step.args))
    if (step.keyword === 'COPY') {
      const { sources, dest } = copyArgs(step.args)
      const target = path.join(context, path.posix.resolve(dir, dest).slice(dir.length))
      for (const s of sources) {
        copyFromContext(
          s.replace(/^\.\/|\/$/g, ''),
          sources.length > 1 || dest.endsWith('/') ? path.join(target, path.basename(s)) : target,
        )
      }
    }
    if (step.keyword === 'RUN') {
      const out = await sh(step.args, context, env)
      buildLog.push(`RUN ${step.args} → ${out.code}\n${out.stderr.slice(-3000)}`)
      if (out.code !== 0) throw new Error(`build stage failed:\n${buildLog.join('\n')}`)
    }
  }
  for (const step of runtime.instructions) {
    if (step.keyword !== 'COPY') continue
    const { from, sources, dest } = copyArgs(step.args)
    expect(from).toBe(build.name)
    for (const s of sources) {
      const source = path.join(context, path.posix.relative(dir, s))
      fs.mkdirSync(path.dirname(path.join(image, dest)), { recursive: true })
      fs.cpSync(source, path.join(image, dest), { recursive: true, verbatimSymlinks: true })
    }
  }
}, 300_000)

afterAll(() => {
  removeDataDir(path.join(tmp, 'data'))
  fs.rmSync(tmp, { recursive: true, force: true })
}, HOOK_TIMEOUT_MS)

describe('docker/Dockerfile', () => {
  test('builds on the Bun version in use, and its build context holds nothing but what it copies', () => {
    expect(build.from).toBe(`oven/bun:${Bun.version}-debian`)
    expect(build.name).not.toBeNull()
    for (const p of ['node_modules/hono/package.json', 'dist/quint-cloud', '.git/HEAD', '.quint/pg', '.env', 'src/app.test.ts']) {
      expect(ignored(p), p).toBe(true)
    }
    expect(copied).toContain('patches/postgres@3.4.9.patch')
    expect(copied).toContain('bun.lock')
  })

  test('the runtime stage is small, non-root, with a health check through the executable', () => {
    expect(runtime.from).toMatch(/^(?:debian:[\w.-]+-slim|gcr\.io\/distroless\/cc[\w.:-]*)$/)
    const user = runtime.instructions.filter((i) => i.keyword === 'USER').at(-1)?.args ?? 'root'
    expect(user).toMatch(/^[1-9]\d*(?::[1-9]\d*)?$/)
    const health = runtime.instructions.find((i) => i.keyword === 'HEALTHCHECK')?.args ?? ''
    expect(health).toContain('CMD ["/app/quint-cloud", "healthcheck"]')
    expect(runtime.instructions.find((i) => i.keyword === 'ENTRYPOINT')?.args).toBe('["/app/quint-cloud"]')
    // Only what the executable needs: itself and the embedded Postgres binaries.
    expect(fs.readdirSync(path.join(image, 'app')).sort()).toEqual(['node_modules', 'quint-cloud'])
  })

  test('the built executable runs its CLI and prints the committed OpenAPI document', async () => {
    const bin = path.join(image, 'app/quint-cloud')
    const env = { PATH: '/usr/bin:/bin' }
    const help = await sh(`'${bin}' --help`, tmp, env)
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('Usage: quint-cloud <command>')
    const openapi = await sh(`'${bin}' openapi`, tmp, env)
    expect(openapi.code, openapi.stderr).toBe(0)
    expect(openapi.stdout).toBe(fs.readFileSync(path.join(ROOT, 'openapi.json'), 'utf8'))
  })

  test('serves from the image layout: ready on the embedded Postgres, /docs with its bundle, the console, and the HEALTHCHECK passes', async () => {
    const bin = path.join(image, 'app/quint-cloud')
    const data = path.join(tmp, 'data')
    fs.mkdirSync(data, { mode: 0o700 })
    // As the image does: an unprivileged user (nobody here; uid 10001 in the image).
    const asUser: { uid?: number; gid?: number } = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {}
    if (asUser.uid !== undefined) fs.chownSync(data, asUser.uid, asUser.gid ?? asUser.uid)
    const port = await freePort()
    const env: Record<string, string> = { PATH: '/usr/bin:/bin' }
    for (const step of runtime.instructions) if (step.keyword === 'ENV') Object.assign(env, envOf(step.args))
    Object.assign(env, { QUINT_DATA_DIR: data, PORT: String(port), SHUTDOWN_TIMEOUT_MS: '10000' })
    const server = Bun.spawn([bin, 'serve'], { cwd: '/', env, stdout: 'pipe', stderr: 'pipe', ...asUser })
    const stderr = new Response(server.stderr).text()
    void new Response(server.stdout).text()
    try {
      const health = JSON.parse(
        /CMD (\[.*\])/.exec(runtime.instructions.find((i) => i.keyword === 'HEALTHCHECK')!.args)![1]!,
      ) as string[]
      const check = () =>
        Bun.spawn([path.join(image, health[0]!), ...health.slice(1)], { env, stdout: 'ignore', stderr: 'ignore', ...asUser })
          .exited
      const deadline = Date.now() + 50_000
      while ((await check()) !== 0) {
        if (Date.now() > deadline || server.exitCode !== null)
          throw new Error(`not ready: ${await Promise.race([stderr, Bun.sleep(100)])}`)
        await Bun.sleep(200)
      }
      const page = await fetch(`http://127.0.0.1:${port}/docs`)
      expect(page.status).toBe(200)
      const src = /<script src="([^"]+)"/.exec(await page.text())![1]!
      const bundle = await fetch(`http://127.0.0.1:${port}${src}`)
      expect(bundle.status).toBe(200)
      const body = await bundle.arrayBuffer()
      expect(body.byteLength).toBe(
        fs.statSync(path.join(ROOT, 'node_modules/@scalar/api-reference/dist/browser/standalone.js')).size,
      )
      // The console (issue 12) is inside the executable: its page and every file it loads.
      const consolePage = await fetch(`http://127.0.0.1:${port}/`)
      expect(consolePage.status).toBe(200)
      const html = await consolePage.text()
      const files = [...html.matchAll(/(?:src|href)="([^"]+\.(?:js|css))"/g)].map((m) => m[1]!)
      expect(files.some((f) => f.endsWith('.js'))).toBe(true)
      expect(files.some((f) => f.endsWith('.css'))).toBe(true)
      for (const file of files) {
        const res = await fetch(new URL(file, `http://127.0.0.1:${port}/`))
        expect(res.status).toBe(200)
        if (file.endsWith('.js')) expect(await res.text()).toContain('quint.console.credential')
      }
    } finally {
      server.kill('SIGTERM')
      expect(await server.exited).toBe(0)
    }
  }, 60_000)
})
