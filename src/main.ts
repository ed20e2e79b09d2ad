#!/usr/bin/env bun
/**
 * @module main
 * Composition root and CLI. `bun src/main.ts <command>` and the compiled `quint-cloud <command>`
 * take the same commands. Exit codes: 0 success, 1 failure, 2 bad usage or configuration.
 */
import { parseArgs } from 'node:util'
import { offlineApp, VERSION } from './app.ts'
import { configMarkdown, ConfigError, loadConfig, type Config } from './config.ts'
import { openDatabase } from './infra/database.ts'
import { createLogger, scrub, type Logger } from './infra/log.ts'
import { PortInUseError, serve } from './cli/serve.ts'
import { busCommand, BusUsageError } from './cli/bus.ts'
import { deadLettersCommand } from './cli/dead-letters.ts'
import { keyCommand, orgCommand, tokenCommand } from './cli/credentials.ts'
import { purgeCommand } from './cli/purge.ts'

/** Each command's own help (`quint-cloud <command> --help`), also listed by `quint-cloud help`. */
const COMMANDS: Record<string, string> = {
  serve: `serve
    Run the service (the default command). Embedded Postgres under QUINT_DATA_DIR unless
    DATABASE_URL is set. Configuration comes from the environment only (\`quint-cloud config\`).`,
  migrate: `migrate [--json]
    Apply pending database migrations and exit.`,
  org: `org create --name NAME [--owner-email EMAIL] [--allow-duplicate-name] [--json] | org list [--json]
    Create an org; prints its org id, admin API key and a deploy token, once. With
    --owner-email, that person is invited as its owner (claimed at their first sign-in). A name
    another org has is refused unless --allow-duplicate-name. \`org list\` prints every org.`,
  key: `key create|list|rotate|revoke --org ID [--name NAME] [--id ID] [--overlap-seconds N] [--json]
    An org's admin keys (qk_): create one (shown once), list them, rotate one (the old key keeps
    working for --overlap-seconds, default 3600), revoke one (docs/tokens.md).`,
  token: `token create|list|revoke --org ID [--kind service|deploy|enrollment] [--name NAME] [--scopes a,b]
        [--expires-at TIME] [--id ID] [--json]
    An org's service, deploy and enrollment tokens: create (shown once), list, revoke
    (docs/tokens.md). Revocations reach running servers through Redis when REDIS_URL is set.`,
  openapi: `openapi
    Print the OpenAPI 3.1 document (also served at GET /openapi.json).`,
  bus: `bus setup [--prefix NAME] [--max-receive-count N] [--json]
    Create the cluster-mode SNS FIFO topic, SQS FIFO queues (with DLQs) and subscriptions
    (needs AWS_REGION; AWS_ENDPOINT_URL for an emulator), and print the variables that point
    quint-cloud at them (docs/cluster.md).`,
  'dead-letters': `dead-letters list [--org ID] [--consumer NAME] [--limit N] [--json]
       | dead-letters redrive (--id ID | --all) [--org ID] [--consumer NAME] [--json]
    List, across orgs, the bus messages consumers set aside after BUS_MAX_ATTEMPTS failed
    attempts, or hand them back to their consumer (docs/dead-letters.md).`,
  purge: `purge [--json]
    Run one retention purge now: each org's actions, sessions and alerts past its retention_days,
    the dedupe ledgers past theirs, and month partitions no org needs (docs/retention.md). Safe
    beside running servers, which run the same purge every RETENTION_INTERVAL_S.`,
  healthcheck: `healthcheck [--url URL]
    Exit 0 if the service answers /ready with 200, else 1, bad usage included (for container
    health checks, which reserve 2). URL is a base URL (http://host:8000) or the full /ready URL;
    default: this configuration's HOST and PORT.`,
  config: `config [--markdown] [--write FILE]
    Print the effective configuration (secrets scrubbed), the reference table (--markdown), or
    update FILE's table between its config markers (--write).`,
}

const USAGE = `quint-cloud ${VERSION}

Usage: quint-cloud <command> [options]
       quint-cloud <command> --help

Commands:
${Object.values(COMMANDS)
  .map((text) => `  ${text.replace(/\n {4}/g, '\n      ')}`)
  .join('\n')}
  help | --help | --version

Configuration is read from the environment only; see README.md or \`quint-cloud config\`.`

class UsageError extends Error {
  override name = 'UsageError'
}

async function main(argv: string[]): Promise<number> {
  const [command = 'serve', ...rest] = argv
  if (command === 'help' || command === '--help' || command === '-h') {
    const [topic] = rest
    if (topic !== undefined && !COMMANDS[topic]) throw new UsageError(`unknown command "${topic}"`)
    console.log(topic === undefined ? USAGE : `Usage: quint-cloud ${COMMANDS[topic]}`)
    return 0
  }
  if (command === '--version' || command === 'version') {
    console.log(VERSION)
    return 0
  }
  // `<command> --help` anywhere after the command prints that command's help and does nothing.
  if (rest.includes('--help') || rest.includes('-h')) {
    const help = COMMANDS[command]
    if (!help) throw new UsageError(`unknown command "${command}"`)
    console.log(`Usage: quint-cloud ${help}`)
    return 0
  }
  if (command === 'config') return configCommand(rest)
  if (command === 'healthcheck') {
    // Docker reserves exit code 2 of a HEALTHCHECK: anything wrong here is "unhealthy" (1).
    return healthcheck(rest).catch((err: unknown) => {
      console.error(`error: ${scrub(err instanceof Error ? err.message : String(err))}`)
      return 1
    })
  }

  const config = loadConfig()
  switch (command) {
    case 'serve': {
      noArgs(rest, 'serve')
      await serve(config, createLogger(config.LOG_LEVEL))
      return -1 // keep running; exit happens on signal
    }
    case 'migrate':
      return migrateCommand(config, rest)
    case 'org':
      return orgCommand(config, cliLogger(config), rest)
    case 'key':
      return keyCommand(config, cliLogger(config), rest)
    case 'token':
      return tokenCommand(config, cliLogger(config), rest)
    case 'bus':
      return busCommand(config, rest)
    case 'dead-letters':
      return deadLettersCommand(config, cliLogger(config), rest)
    case 'purge':
      return purgeCommand(config, cliLogger(config), rest)
    case 'openapi':
      noArgs(rest, 'openapi')
      return openapiCommand(config)
    default:
      throw new UsageError(`unknown command "${command}"`)
  }
}

function noArgs(args: string[], command: string): void {
  if (args.length > 0) throw new UsageError(`${command} takes no arguments (got ${args.join(' ')})`)
}

function parse<T extends Record<string, { type: 'string' | 'boolean' }>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

/** One-off commands log to stderr so stdout carries only their result. */
function cliLogger(config: Config): Logger {
  return createLogger(config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL, 'stderr')
}

async function migrateCommand(config: Config, args: string[]): Promise<number> {
  const { json } = parse(args, { json: { type: 'boolean' } })
  const db = await openDatabase(config, cliLogger(config))
  await db.close()
  if (json) console.log(JSON.stringify(db.migration))
  else if (db.migration.applied.length === 0) console.log(`database is up to date (version ${db.migration.current})`)
  else for (const m of db.migration.applied) console.log(`applied ${String(m.version).padStart(4, '0')}_${m.name}`)
  return 0
}

async function openapiCommand(config: Config): Promise<number> {
  const { routes, close } = offlineApp(config, cliLogger(config))
  console.log(JSON.stringify(routes.document({ title: 'quint-cloud', version: VERSION }), null, 2))
  await close()
  return 0
}

async function healthcheck(args: string[]): Promise<number> {
  const { url } = parse(args, { url: { type: 'string' } })
  const config = loadConfig()
  // A wildcard bind is reached on loopback; a specific address only on itself.
  const host = ['0.0.0.0', '::', '[::]'].includes(config.HOST)
    ? '127.0.0.1'
    : config.HOST.includes(':')
      ? `[${config.HOST}]`
      : config.HOST
  const target = readyUrl(url ?? `http://${host}:${config.PORT}`)
  try {
    const res = await fetch(target, { signal: AbortSignal.timeout(3000) })
    if (res.ok) return 0
    console.error(`${target}: ${res.status}`)
  } catch (err) {
    console.error(`${target}: ${(err as Error).message}`)
  }
  return 1
}

/** A base URL (`http://host:8000`, with or without a path prefix) gets `/ready` appended. */
function readyUrl(given: string): string {
  let url: URL
  try {
    url = new URL(given)
  } catch {
    throw new UsageError(`--url: not a URL: ${given}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--url: must be http(s): ${given}`)
  const base = url.pathname.replace(/\/+$/, '')
  url.pathname = base.endsWith('/ready') ? base : `${base}/ready`
  return url.toString()
}

async function configCommand(args: string[]): Promise<number> {
  const { markdown, write } = parse(args, { markdown: { type: 'boolean' }, write: { type: 'string' } })
  const table = configMarkdown()
  if (write) {
    const file = Bun.file(write)
    const text = await file.text()
    const start = '<!-- config:start -->'
    const end = '<!-- config:end -->'
    const i = text.indexOf(start)
    const j = text.indexOf(end)
    if (i < 0 || j < i) throw new UsageError(`${write} has no ${start} … ${end} section`)
    await Bun.write(write, `${text.slice(0, i + start.length)}\n${table}\n${text.slice(j)}`)
    return 0
  }
  if (markdown) console.log(table)
  else {
    try {
      const { dataDir, bootstrapOrg, ...rest } = loadConfig()
      // Keys and secrets by name (a 64-hex master key has no shape to recognise), DSNs by shape.
      const secret = /(_KEY|_SECRET|_PASSWORD|_TOKEN)$/
      const shown = Object.fromEntries(
        Object.entries({ ...rest, dataDir, bootstrapOrg }).map(([k, v]) => [
          k,
          typeof v === 'string' ? (secret.test(k) ? '[REDACTED]' : scrub(v)) : v,
        ]),
      )
      console.log(JSON.stringify(shown, null, 2))
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      console.error(err.message)
      return 2
    }
  }
  return 0
}

main(Bun.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code)
  },
  (err: unknown) => {
    if (err instanceof PortInUseError) {
      console.error(`error: ${err.message}`)
      process.exit(2)
    }
    if (err instanceof UsageError || err instanceof BusUsageError) {
      console.error(`error: ${err.message}\nRun \`quint-cloud help\` for usage.`)
      process.exit(2)
    }
    if (err instanceof ConfigError) {
      console.error(err.message)
      process.exit(2)
    }
    console.error(`error: ${scrub(err instanceof Error ? err.message : String(err))}`)
    process.exit(1)
  },
)
