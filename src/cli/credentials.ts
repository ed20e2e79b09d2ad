/**
 * @module cli/credentials
 * The operator's commands for orgs and their opaque credentials (issue 10; docs/tokens.md):
 * `org create|list`, `key create|list|rotate|revoke` (admin keys, qk_) and
 * `token create|list|revoke` (service, deploy and enrollment tokens). They connect like `migrate`
 * and go through the same service as `/v1/tokens`, audited with actor `cli`. A revocation is
 * published through Redis when REDIS_URL is set, so running servers refuse the token from their
 * next request; without Redis, each server's cache drops it within 30 s.
 */
import { parseArgs } from 'node:util'
import { CredentialResolver } from '../auth/credentials.ts'
import type { Config } from '../config.ts'
import { AppError } from '../errors.ts'
import {
  createToken,
  listVisibleTokens,
  revokeToken,
  rotateToken,
  tokenView,
  type CliActor,
} from '../features/api-tokens/service.ts'
import type { TokenKindName } from '../features/api-tokens/schema.ts'
import { createOrg, DuplicateOrgNameError, listOrgs, orgExists } from '../features/orgs/service.ts'
import { SCOPES, type Scope } from '../http/permissions.ts'
import { openDatabase, type Database } from '../infra/database.ts'
import { isUuid } from '../infra/db.ts'
import type { Logger } from '../infra/log.ts'
import { RedisStateStore } from '../infra/redis.ts'
import { normalEmail } from '../lib/email.ts'
import { checkName } from '../lib/names.ts'
import { BusUsageError } from './bus.ts'

/** A usage error of these commands (exit 2, like every usage error). */
export class CredentialsUsageError extends BusUsageError {
  override name = 'CredentialsUsageError'
}

export const ORG_USAGE = `usage: quint-cloud org create --name NAME [--owner-email EMAIL] [--allow-duplicate-name] [--json]
       quint-cloud org list [--json]`
export const KEY_USAGE = `usage: quint-cloud key create --org ID [--name NAME] [--json]
       quint-cloud key list --org ID [--json]
       quint-cloud key rotate --org ID --id ID [--overlap-seconds N] [--json]
       quint-cloud key revoke --org ID --id ID`
export const TOKEN_USAGE = `usage: quint-cloud token create --org ID --kind service|deploy|enrollment --name NAME [--scopes a,b] [--expires-at TIME] [--json]
       quint-cloud token list --org ID [--kind KIND] [--json]
       quint-cloud token revoke --org ID --id ID`

const OPTIONS = {
  name: { type: 'string' },
  'owner-email': { type: 'string' },
  'allow-duplicate-name': { type: 'boolean' },
  org: { type: 'string' },
  id: { type: 'string' },
  kind: { type: 'string' },
  scopes: { type: 'string' },
  'expires-at': { type: 'string' },
  'overlap-seconds': { type: 'string' },
  json: { type: 'boolean' },
} as const

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values']

function parse(args: string[], allowed: (keyof typeof OPTIONS)[], usage: string): Values {
  let values: Values
  try {
    values = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }).values
  } catch (err) {
    throw new CredentialsUsageError(`${(err as Error).message}\n${usage}`)
  }
  const extra = Object.keys(values).filter((k) => !allowed.includes(k as keyof typeof OPTIONS))
  if (extra.length > 0) throw new CredentialsUsageError(`unexpected --${extra.join(', --')}\n${usage}`)
  return values
}

export async function orgCommand(config: Config, log: Logger, args: string[]): Promise<number> {
  const [sub, ...rest] = args
  if (sub === 'list') {
    const { json } = parse(rest, ['json'], ORG_USAGE)
    return withDatabase(config, log, async (db) => {
      const orgs = await listOrgs(db.app)
      if (json) console.log(JSON.stringify(orgs.map((o) => ({ ...o, created_at: o.created_at.toISOString() }))))
      else for (const o of orgs) console.log(`${o.id}  ${o.created_at.toISOString()}  ${o.name}`)
      return 0
    })
  }
  if (sub !== 'create') throw new CredentialsUsageError(ORG_USAGE)
  const v = parse(rest, ['name', 'owner-email', 'allow-duplicate-name', 'json'], ORG_USAGE)
  if (v.name === undefined) throw new CredentialsUsageError('org create needs --name NAME')
  const checked = checkName(v.name)
  if (!checked.ok) throw new CredentialsUsageError(`--name: ${checked.reason}`)
  const ownerEmail = v['owner-email']
  if (ownerEmail !== undefined && normalEmail(ownerEmail) === null) {
    throw new CredentialsUsageError('--owner-email: not an email address (ASCII, one @)')
  }
  return withDatabase(config, log, async (db) => {
    let org
    try {
      org = await createOrg(db.app, checked.name, 'cli', ownerEmail, { uniqueName: !v['allow-duplicate-name'] })
    } catch (err) {
      if (!(err instanceof DuplicateOrgNameError)) throw err
      console.error(`error: ${err.message} Pass --allow-duplicate-name to create another one anyway.`)
      return 1
    }
    if (v.json) {
      console.log(
        JSON.stringify({
          org_id: org.org_id,
          admin_key: org.admin_key,
          deploy_token: org.deploy_token,
          ...(org.owner_invited ? { owner_invited: org.owner_invited } : {}),
        }),
      )
    } else {
      console.log(`org_id       ${org.org_id}\nadmin_key    ${org.admin_key}\ndeploy_token ${org.deploy_token}`)
      if (org.owner_invited) console.log(`owner        ${org.owner_invited} (invited)`)
      console.error('The admin key and deploy token are shown only now.')
    }
    return 0
  })
}

export async function keyCommand(config: Config, log: Logger, args: string[]): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'create': {
      const v = parse(rest, ['org', 'name', 'json'], KEY_USAGE)
      return create(config, log, actorOf(v, KEY_USAGE), { kind: 'admin', name: v.name ?? 'admin key' }, v.json)
    }
    case 'list': {
      const v = parse(rest, ['org', 'json'], KEY_USAGE)
      return list(config, log, actorOf(v, KEY_USAGE), 'admin', v.json)
    }
    case 'rotate': {
      const v = parse(rest, ['org', 'id', 'overlap-seconds', 'json'], KEY_USAGE)
      const actor = actorOf(v, KEY_USAGE)
      const id = idOf(v, KEY_USAGE)
      const overlap = v['overlap-seconds'] === undefined ? 3600 : Number(v['overlap-seconds'])
      if (!Number.isInteger(overlap) || overlap < 0 || overlap > 30 * 24 * 3600) {
        throw new CredentialsUsageError('--overlap-seconds: an integer from 0 to 2592000 (30 days)')
      }
      return withServices(config, log, actor, async (deps) => {
        const r = await rotateToken(deps, actor, id, overlap, undefined, ['admin'])
        if (v.json)
          console.log(JSON.stringify({ token: { ...tokenView(r.next), token: r.next.token }, previous: tokenView(r.previous) }))
        else {
          console.log(`id     ${r.next.id}\nkey    ${r.next.token}`)
          console.error(`The new key is shown only now. The old one works until ${r.previous.expires_at?.toISOString()}.`)
        }
        return 0
      })
    }
    case 'revoke': {
      const v = parse(rest, ['org', 'id'], KEY_USAGE)
      return revoke(config, log, actorOf(v, KEY_USAGE), idOf(v, KEY_USAGE), ['admin'])
    }
    default:
      throw new CredentialsUsageError(KEY_USAGE)
  }
}

const CLI_KINDS: readonly TokenKindName[] = ['service', 'deploy', 'enrollment']

export async function tokenCommand(config: Config, log: Logger, args: string[]): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'create': {
      const v = parse(rest, ['org', 'kind', 'name', 'scopes', 'expires-at', 'json'], TOKEN_USAGE)
      const actor = actorOf(v, TOKEN_USAGE)
      const kind = kindOf(v.kind, TOKEN_USAGE)
      if (!kind) throw new CredentialsUsageError(`token create needs --kind (${CLI_KINDS.join(', ')})`)
      if (v.name === undefined) throw new CredentialsUsageError('token create needs --name NAME')
      const scopes = v.scopes === undefined ? undefined : [...new Set(v.scopes.split(',').map((s) => s.trim()))]
      const unknown = scopes?.filter((s) => !(SCOPES as readonly string[]).includes(s)) ?? []
      if (unknown.length > 0)
        throw new CredentialsUsageError(`--scopes: unknown ${unknown.join(', ')} (one of ${SCOPES.join(', ')})`)
      const expires = v['expires-at']
      if (expires !== undefined && Number.isNaN(Date.parse(expires)))
        throw new CredentialsUsageError('--expires-at: not a date-time')
      return create(
        config,
        log,
        actor,
        {
          kind,
          name: v.name,
          ...(scopes ? { scopes: scopes as Scope[] } : {}),
          ...(expires ? { expires_at: new Date(expires).toISOString() } : {}),
        },
        v.json,
      )
    }
    case 'list': {
      const v = parse(rest, ['org', 'kind', 'json'], TOKEN_USAGE)
      return list(config, log, actorOf(v, TOKEN_USAGE), kindOf(v.kind, TOKEN_USAGE), v.json)
    }
    case 'revoke': {
      const v = parse(rest, ['org', 'id'], TOKEN_USAGE)
      return revoke(config, log, actorOf(v, TOKEN_USAGE), idOf(v, TOKEN_USAGE), CLI_KINDS)
    }
    default:
      throw new CredentialsUsageError(TOKEN_USAGE)
  }
}

function actorOf(v: Values, usage: string): CliActor {
  const org = v.org?.toLowerCase()
  if (org === undefined || !isUuid(org)) throw new CredentialsUsageError(`--org ID (the org's UUID, from \`org list\`)\n${usage}`)
  return { kind: 'cli', orgId: org }
}

function idOf(v: Values, usage: string): string {
  if (v.id === undefined) throw new CredentialsUsageError(`--id ID\n${usage}`)
  return v.id
}

function kindOf(raw: string | undefined, usage: string): TokenKindName | undefined {
  if (raw === undefined) return undefined
  if (!(CLI_KINDS as readonly string[]).includes(raw))
    throw new CredentialsUsageError(`--kind: one of ${CLI_KINDS.join(', ')}\n${usage}`)
  return raw as TokenKindName
}

async function create(
  config: Config,
  log: Logger,
  actor: CliActor,
  input: Parameters<typeof createToken>[2],
  json: boolean | undefined,
): Promise<number> {
  return withServices(config, log, actor, async (deps) => {
    const t = await createToken(deps, actor, input)
    if (json) console.log(JSON.stringify({ ...tokenView(t), token: t.token }))
    else {
      console.log(`id     ${t.id}\ntoken  ${t.token}`)
      console.error('The raw value is shown only now.')
    }
    return 0
  })
}

async function list(config: Config, log: Logger, actor: CliActor, kind: TokenKindName | undefined, json: boolean | undefined) {
  return withServices(config, log, actor, async (deps) => {
    const rows = (await listVisibleTokens(deps, actor, kind ? { kind } : {}, 10_000, null)).map((r) => tokenView(r))
    const shown = kind === undefined ? rows.filter((r) => r.kind !== 'admin' && r.kind !== 'personal') : rows
    if (json) console.log(JSON.stringify(shown))
    else {
      for (const r of shown) {
        console.log(
          [r.id, r.kind, r.state, r.token_prefix + '…', r.last_used_at ?? 'never used', r.expires_at ?? 'no expiry', r.name].join(
            '  ',
          ),
        )
      }
    }
    return 0
  })
}

async function revoke(config: Config, log: Logger, actor: CliActor, id: string, only: readonly TokenKindName[]) {
  return withServices(config, log, actor, async (deps) => {
    await revokeToken(deps, actor, id, undefined, only)
    console.error('revoked')
    return 0
  })
}

async function withDatabase<T>(config: Config, log: Logger, run: (db: Database) => Promise<T>): Promise<T> {
  const db = await openDatabase(config, log)
  try {
    return await run(db)
  } finally {
    await db.close()
  }
}

/**
 * The database, and (REDIS_URL) a resolver that publishes revocations to the running servers,
 * once the org named is known to exist.
 */
async function withServices(
  config: Config,
  log: Logger,
  actor: CliActor,
  run: (deps: { sql: Database['app']; resolver: CredentialResolver }) => Promise<number>,
): Promise<number> {
  return withDatabase(config, log, async (db) => {
    if (!(await orgExists(db.app, actor.orgId))) {
      console.error(`error: no org ${actor.orgId} (see \`quint-cloud org list\`)`)
      return 1
    }
    const redis = config.REDIS_URL
      ? new RedisStateStore({ url: config.REDIS_URL, commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS, log })
      : null
    try {
      // Connected before the change, so that a revocation is published, not left to the caches' 30 s.
      await redis?.whenReady(5_000).catch(() => {
        console.error('warning: Redis is not reachable: running servers refuse a revoked token within 30 s')
      })
      return await run({ sql: db.app, resolver: new CredentialResolver(db.app, log, { jwt: null, shared: redis }) })
    } catch (err) {
      // The service's refusals (404, 403, 409, 422) are the operator's mistakes: said plainly, exit 1.
      if (!(err instanceof AppError)) throw err
      const fields = err.extensions.errors as { path: string; message: string }[] | undefined
      console.error(`error: ${err.message}${fields ? ` ${fields.map((f) => `${f.path}: ${f.message}`).join('; ')}` : ''}`)
      return 1
    } finally {
      await redis?.close()
    }
  })
}
