/**
 * @module http/openapi
 * Route registry: every route is declared once with TypeBox schemas for its params, query, body
 * and responses. The same schema objects validate the request (400 for params/query, 422 for the
 * body, each error with a JSON Pointer) and produce `/openapi.json`.
 */
import { FormatRegistry, type Static, type TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { Value } from '@sinclair/typebox/value'
import type { Context, Hono, MiddlewareHandler } from 'hono'
import { BadRequestError, ValidationError, type FieldError } from '../errors.ts'
import { readJson } from './body.ts'
import { openApiDocument } from './openapi-document.ts'
import type { IdempotencyStore } from './idempotency.ts'
import type { Permission } from './permissions.ts'
import type { AppEnv } from './request-context.ts'
import { unstorableText } from './text-guard.ts'

// @sinclair/typebox 0.34 ships no string formats; unknown formats fail every value.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/
const EPOCH_MS = 0
const YEAR_10000_MS = Date.UTC(10000, 0, 1)
export const DATE_TIME_MESSAGE =
  'must be an RFC 3339 date-time of a real date between 1970 and 9999, offset within ±15:59, e.g. 2026-01-31T12:00:00Z'

/**
 * RFC 3339, a real calendar date and time, at an instant from 1970 to 9999 (issue 14): `Date.parse`
 * rolls 02-31 over to March and takes year 0, which Postgres then refuses (a 500), and no window of
 * ours (partitions, retention, expiry) reaches outside those years.
 */
export function isDateTime(v: string): boolean {
  const m = DATE_TIME.exec(v)
  if (!m) return false
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ]
  // Below 1969 no offset brings the instant to 1970 (and Date.UTC maps years 0–99 to 1900–1999).
  if (y < 1969 || mo < 1 || mo > 12 || h > 23 || mi > 59 || s > 59) return false
  if (d < 1 || d > new Date(Date.UTC(y, mo, 0)).getUTCDate()) return false
  let offsetMin = 0
  if (m[7]) {
    const [oh, om] = [Number(m[8]), Number(m[9])]
    // RFC 3339 allows offsets to ±23:59; Postgres takes ±15:59 and no real zone is past ±14:00.
    if (oh > 15 || om > 59) return false
    offsetMin = (m[7] === '-' ? -1 : 1) * (oh * 60 + om)
  }
  const t = Date.UTC(y, mo - 1, d, h, mi, s) - offsetMin * 60_000
  return t >= EPOCH_MS && t < YEAR_10000_MS
}

if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', (v) => UUID.test(v))
// Set unconditionally: this is the one definition every schema of the service is checked against.
FormatRegistry.Set('date-time', isDateTime)

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete'
type Maybe<T extends TSchema | undefined> = T extends TSchema ? Static<T> : undefined

export interface RouteSpec<P extends TSchema | undefined, Q extends TSchema | undefined, B extends TSchema | undefined> {
  method: Method
  /** Hono path syntax (`/v1/deploy-tokens/:id`); OpenAPI gets `{id}`. */
  path: string
  operationId: string
  summary: string
  tags: string[]
  /**
   * What the caller needs (src/http/permissions.ts). The registry puts this permission's guard in
   * front of the route and declares bearer auth in the document for all but `public`.
   */
  permission: Permission
  /** Run after the permission's guard, before validation (the ingest quota's headers). */
  middleware?: MiddlewareHandler<AppEnv>[]
  params?: P
  query?: Q
  body?: B
  /** Documented request body the handler reads and validates itself (per-item batch routes). */
  rawBody?: TSchema
  /** Maximum body size in bytes (default 64 KiB). */
  bodyLimit?: number
  /**
   * Honour `Idempotency-Key` (src/http/idempotency.ts): a retried request with the same key gets
   * the first answer back instead of doing the work twice. For creates and other non-idempotent POSTs.
   */
  idempotent?: boolean
  /** `contentType`: of `schema`, when not JSON (`text/plain` for the installer's version). */
  responses: Record<number, { description: string; schema?: TSchema; headers?: Record<string, string>; contentType?: string }>
}

/** The middleware that enforces each permission but `public` (composed in src/app.ts). */
export type Guards = Record<Exclude<Permission, 'public'>, MiddlewareHandler<AppEnv>>

export interface RouteInput<P, Q, B> {
  params: P
  query: Q
  body: B
}

const DEFAULT_BODY_LIMIT = 64 * 1024

export class RouteRegistry {
  readonly #specs: RouteSpec<TSchema | undefined, TSchema | undefined, TSchema | undefined>[] = []

  private readonly app: Hono<AppEnv>
  readonly #idempotency: IdempotencyStore | null
  readonly #guards: Guards

  /**
   * `guards`: the middleware that enforces each permission; `idempotency`: where `idempotent`
   * routes keep their keys (absent, the header is ignored).
   */
  constructor(app: Hono<AppEnv>, guards: Guards, options: { idempotency?: IdempotencyStore | null } = {}) {
    this.app = app
    this.#guards = guards
    this.#idempotency = options.idempotency ?? null
  }

  /** Every registered route, in registration order (tests walk them; the document is built from them). */
  get specs(): readonly RouteSpec<TSchema | undefined, TSchema | undefined, TSchema | undefined>[] {
    return this.#specs
  }

  add<
    P extends TSchema | undefined = undefined,
    Q extends TSchema | undefined = undefined,
    B extends TSchema | undefined = undefined,
  >(
    spec: RouteSpec<P, Q, B>,
    handler: (c: Context<AppEnv>, input: RouteInput<Maybe<P>, Maybe<Q>, Maybe<B>>) => Response | Promise<Response>,
  ): void {
    const guard = spec.permission === 'public' ? [] : [this.#guards[spec.permission]]
    this.#specs.push(spec)
    const params = spec.params && TypeCompiler.Compile(spec.params)
    const query = spec.query && TypeCompiler.Compile(spec.query)
    const body = spec.body && TypeCompiler.Compile(spec.body)
    const limit = spec.bodyLimit ?? DEFAULT_BODY_LIMIT
    const idempotency = spec.idempotent ? this.#idempotency : null
    this.app.on([spec.method.toUpperCase()], [spec.path], ...guard, ...(spec.middleware ?? []), async (c: Context<AppEnv>) => {
      checkQueryKeys(c, spec.query !== undefined || spec.method !== 'get')
      const input = {
        params: params ? check(params, c.req.param(), 'params') : undefined,
        query: query ? check(query, c.req.query(), 'query') : undefined,
        body: body ? check(body, await readJson(c.req.raw, limit), 'body') : undefined,
      }
      const run = () => handler(c, input as RouteInput<Maybe<P>, Maybe<Q>, Maybe<B>>)
      return idempotency ? idempotency.run(c, { query: input.query, body: input.body }, run) : run()
    })
  }

  /** The OpenAPI 3.1 document for every registered route (./openapi-document.ts). */
  document(info: { title: string; version: string }): Record<string, unknown> {
    return openApiDocument(this.#specs, info)
  }
}

function check<T extends TSchema>(compiled: TypeCheck<T>, raw: unknown, where: 'params' | 'query' | 'body'): Static<T> {
  // Query and path values arrive as strings: convert ("25" → 25) before checking, but only
  // strings written the plain way (TypeBox would turn "5.5", "1e1" or "0x10" into 5, 1 and 16).
  // Checked first: Value.Convert may convert the object in place.
  let errors: FieldError[] = where === 'body' ? [] : unplainScalars(compiled.Schema(), raw)
  const value = where === 'body' ? raw : Value.Convert(compiled.Schema(), raw)
  if (errors.length === 0 && compiled.Check(value)) {
    // Valid by the schema, but Postgres cannot store a NUL or an unpaired surrogate (issue 14).
    errors = unstorableText(compiled.Schema(), value, compiled.References())
    if (errors.length === 0) return value
  } else {
    for (const e of compiled.Errors(value)) {
      if (errors.length >= 20) break
      const message = typeof e.value === 'string' && isDateTimeSchema(e.schema) ? DATE_TIME_MESSAGE : e.message
      if (!errors.some((x) => x.path === (e.path || '/'))) errors.push({ path: e.path || '/', message })
    }
  }
  if (where === 'body') throw new ValidationError(errors)
  throw new BadRequestError(`Invalid ${where === 'params' ? 'path parameter' : 'query parameter'}.`, errors)
}

/** A 400 naming one query parameter, as the registry answers a malformed one (for checks a schema cannot state). */
export const badQueryParam = (name: string, message: string) =>
  new BadRequestError('Invalid query parameter.', [{ path: `/${name}`, message }])

/**
 * A parameter given twice is refused (a proxy reading the last value would see another request
 * than ours, which reads the first); a GET route that declares no query parameters refuses any,
 * as routes with a query schema refuse unknown ones (issue 9).
 */
function checkQueryKeys(c: Context<AppEnv>, declared: boolean): void {
  const errors: FieldError[] = []
  for (const [name, values] of Object.entries(c.req.queries())) {
    if (!declared) errors.push({ path: `/${name}`, message: 'This route takes no query parameters' })
    else if (values.length > 1) errors.push({ path: `/${name}`, message: 'Given more than once' })
    if (errors.length >= 20) break
  }
  if (errors.length > 0) throw new BadRequestError('Invalid query parameter.', errors)
}

const PLAIN: Record<string, { re: RegExp; message: string }> = {
  integer: { re: /^-?(0|[1-9]\d{0,15})$/, message: 'Expected an integer written in decimal digits' },
  number: { re: /^-?(0|[1-9]\d{0,15})(\.\d{1,15})?$/, message: 'Expected a decimal number' },
  boolean: { re: /^(true|false)$/, message: 'Expected true or false' },
}

/** Query or path strings for integer, number and boolean properties that are not written plainly. */
function unplainScalars(schema: TSchema, raw: unknown): FieldError[] {
  const properties = (schema as { properties?: Record<string, TSchema> }).properties
  if (!properties || typeof raw !== 'object' || raw === null) return []
  const errors: FieldError[] = []
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    const type = properties[name]?.type
    const rule = typeof type === 'string' ? PLAIN[type] : undefined
    if (rule && typeof value === 'string' && !rule.re.test(value)) errors.push({ path: `/${name}`, message: rule.message })
  }
  return errors
}

/** A date-time string, possibly optional-or-null (a union): its failures get one clear message. */
function isDateTimeSchema(schema: TSchema): boolean {
  const anyOf = (schema as { anyOf?: TSchema[] }).anyOf
  return schema.format === 'date-time' || (Array.isArray(anyOf) && anyOf.some((s) => s.format === 'date-time'))
}
