/**
 * @module http/idempotency
 * `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header-07) for the routes marked
 * `idempotent: true` in the registry (issue 14: a retried create used to make a duplicate).
 *
 * A key is scoped to (org, credential, key): another credential, even of the same org, never sees
 * it. The first request claims the key in Postgres (`idempotency_keys`, a tenant table under RLS)
 * before the handler runs; its 2xx answer (status, a few headers, body) is then stored sealed
 * with the master key, because several of these answers carry a secret shown once (a deploy
 * token, a webhook secret, a minted JWT): a retry with the same key and the same request gets
 * exactly that answer again, marked `Idempotent-Replayed: true`, and nothing is created twice.
 * The same key with a different method, path, query or body is a 422; while the first request is
 * still running, a duplicate is a 409 with `Retry-After`. A request that fails (any non-2xx, or
 * an error) releases its key, so the client may retry it as it likes. Keys live 24 hours and are
 * pruned by later claims of the same org; a claim whose request never finished (the instance
 * died) is taken over after two minutes by a retry of the same request.
 */
import { createHash, randomUUID } from 'node:crypto'
import type { Context } from 'hono'
import type { SecretBox } from '../auth/secret-box.ts'
import { BadRequestError, IdempotencyKeyInFlightError, IdempotencyKeyMismatchError } from '../errors.ts'
import { withOrg, type Sql } from '../infra/db.ts'
import type { AppEnv } from './request-context.ts'

export const IDEMPOTENCY_TTL_HOURS = 24
const STALE_CLAIM_S = 120
/** Answers larger than this are not kept (none of the idempotent routes comes close). */
const MAX_STORED_BYTES = 1024 * 1024
const PRUNE_BATCH = 100
/** Headers of the first answer that a replay repeats (the request id and quota headers are per request). */
const REPLAYED_HEADERS = ['content-type', 'location', 'etag', 'cache-control']

// An sf-string per the draft (`"…"`), or the same characters bare as most clients send them:
// visible ASCII without `"` and `\`, 1–255 of them.
const KEY = /^(?:"([!#-[\]-~]{1,255})"|([!#-[\]-~]{1,255}))$/

/** The header's key, or a 400 naming what a key may be. */
export function parseIdempotencyKey(raw: string): string {
  const m = KEY.exec(raw.trim())
  if (!m) {
    throw new BadRequestError(
      'Idempotency-Key must be 1–255 visible ASCII characters without `"` or `\\` (a UUID is a good key), bare or as a quoted string.',
    )
  }
  return (m[1] ?? m[2])!
}

interface Stored {
  h: Record<string, string>
  b: string
}

interface Existing {
  state: 'in_flight' | 'done'
  fingerprint: Buffer
  status: number | null
  response: Buffer | null
}

interface ClaimRequest {
  orgId: string
  credential: string
  key: string
  method: string
  path: string
  fingerprint: Buffer
  claim: string
}

export class IdempotencyStore {
  private readonly sql: Sql
  private readonly secrets: SecretBox

  constructor(sql: Sql, secrets: SecretBox) {
    this.sql = sql
    this.secrets = secrets
  }

  /**
   * Claims the key for this request (null), or returns the row another request holds or
   * completed; undefined when that row was released between the two statements.
   */
  #claim(r: ClaimRequest): Promise<Existing | null | undefined> {
    const { credential, key, method, path, fingerprint, claim } = r
    return withOrg(this.sql, r.orgId, async (tx) => {
      // Expired keys of this org go a batch at a time, on the way: no sweeper to run or forget.
      await tx`
        delete from idempotency_keys where ctid = any(array(
          select ctid from idempotency_keys where expires_at <= now() limit ${PRUNE_BATCH}))`
      const claimed = await tx`
        insert into idempotency_keys (org_id, credential, key, method, path, fingerprint, claim, expires_at)
        values (app_current_org(), ${credential}, ${key}, ${method}, ${path}, ${fingerprint}, ${claim},
                now() + make_interval(hours => ${IDEMPOTENCY_TTL_HOURS}))
        on conflict (org_id, credential, key) do update
           set method = excluded.method, path = excluded.path, fingerprint = excluded.fingerprint,
               claim = excluded.claim, state = 'in_flight', status = null, response = null,
               created_at = now(), expires_at = excluded.expires_at
         where idempotency_keys.expires_at <= now()
            or (idempotency_keys.state = 'in_flight' and idempotency_keys.fingerprint = excluded.fingerprint
                and idempotency_keys.created_at < now() - make_interval(secs => ${STALE_CLAIM_S}))
        returning 1`
      if (claimed.length > 0) return null
      const [row] = await tx<Existing[]>`
        select state, fingerprint, status, response from idempotency_keys
         where credential = ${credential} and key = ${key}`
      // Released meanwhile: nothing to replay and no claim of ours; the caller claims again.
      return row ?? undefined
    })
  }

  /**
   * Runs `handler` at most once per key: without the header, or without an authenticated caller,
   * it simply runs. `input` is the validated query and body (the fingerprint with method and path).
   */
  async run(
    c: Context<AppEnv>,
    input: { query: unknown; body: unknown },
    handler: () => Response | Promise<Response>,
  ): Promise<Response> {
    const header = c.req.header('idempotency-key')
    const principal = c.get('principal')
    if (header === undefined || !principal) return handler()
    const key = parseIdempotencyKey(header)
    const orgId = principal.orgId
    const credential = principal.tokenId
    const method = c.req.method
    const path = c.req.path
    const fingerprint = requestFingerprint(method, path, input.query, input.body)
    const claim = randomUUID()
    const context = JSON.stringify(['idempotency', orgId, credential, key])

    // A claim released between our insert and our select leaves no row to read: claim again
    // (a bounded number of times), never run the handler without a claim.
    let existing: Existing | null | undefined
    for (let round = 0; round < 3 && existing === undefined; round++) {
      existing = await this.#claim({ orgId, credential, key, method, path, fingerprint, claim })
    }
    if (existing === undefined) throw new IdempotencyKeyInFlightError()

    if (existing) {
      if (!Buffer.from(existing.fingerprint).equals(fingerprint)) throw new IdempotencyKeyMismatchError()
      if (existing.state === 'in_flight' || existing.status === null || existing.response === null)
        throw new IdempotencyKeyInFlightError()
      const stored = JSON.parse(this.secrets.open(existing.response, context).toString('utf8')) as Stored
      return new Response(Buffer.from(stored.b, 'base64'), {
        status: existing.status,
        headers: { ...stored.h, 'Idempotent-Replayed': 'true' },
      })
    }

    const release = () =>
      withOrg(
        this.sql,
        orgId,
        (tx) => tx`delete from idempotency_keys where credential = ${credential} and key = ${key} and claim = ${claim}`,
      )
    let res: Response
    try {
      res = await handler()
    } catch (err) {
      await release().catch((e: unknown) => c.get('log')?.warn({ err: e }, 'could not release an idempotency key'))
      throw err
    }
    if (res.status < 200 || res.status > 299) {
      await release().catch((e: unknown) => c.get('log')?.warn({ err: e }, 'could not release an idempotency key'))
      return res
    }
    const bytes = Buffer.from(await res.arrayBuffer())
    const headers: Record<string, string> = {}
    for (const name of REPLAYED_HEADERS) {
      const v = res.headers.get(name)
      if (v !== null) headers[name] = v
    }
    try {
      if (bytes.byteLength > MAX_STORED_BYTES) {
        await release()
      } else {
        const sealed = this.secrets.seal(JSON.stringify({ h: headers, b: bytes.toString('base64') } satisfies Stored), context)
        await withOrg(
          this.sql,
          orgId,
          (tx) => tx`
          update idempotency_keys
             set state = 'done', status = ${res.status}, response = ${sealed},
                 expires_at = now() + make_interval(hours => ${IDEMPOTENCY_TTL_HOURS})
           where credential = ${credential} and key = ${key} and claim = ${claim}`,
        )
      }
    } catch (err) {
      // The work is done and committed: answer it. The key stays claimed; a retry gets 409 until
      // the claim is stale, then runs again (logged so an operator can tell).
      c.get('log')?.warn({ err }, 'could not store the answer of an idempotent request')
    }
    return new Response(bytes, { status: res.status, headers: res.headers })
  }
}

/** SHA-256 of the request as far as a key is concerned: method, path, validated query and body. */
export function requestFingerprint(method: string, path: string, query: unknown, body: unknown): Buffer {
  return createHash('sha256')
    .update(canonicalJson([method, path, query ?? null, body ?? null]))
    .digest()
}

/** JSON with object keys sorted: the same request always has the same fingerprint. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, (v as Record<string, unknown>)[k]]),
    )
  })
}
