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
import type { AppEnv } from './request-context.ts'

// @sinclair/typebox 0.34 ships no string formats; unknown formats fail every value.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/i
if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', (v) => UUID.test(v))
if (!FormatRegistry.Has('date-time')) {
  FormatRegistry.Set('date-time', (v) => DATE_TIME.test(v) && !Number.isNaN(Date.parse(v)))
}

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete'
type Maybe<T extends TSchema | undefined> = T extends TSchema ? Static<T> : undefined

export interface RouteSpec<P extends TSchema | undefined, Q extends TSchema | undefined, B extends TSchema | undefined> {
  method: Method
  /** Hono path syntax (`/v1/deploy-tokens/:id`); OpenAPI gets `{id}`. */
  path: string
  operationId: string
  summary: string
  tags: string[]
  /** Declares bearer auth in the document; enforcement is the `middleware` given to `add`. */
  auth: boolean
  params?: P
  query?: Q
  body?: B
  /** Documented request body the handler reads and validates itself (per-item batch routes). */
  rawBody?: TSchema
  /** Maximum body size in bytes (default 64 KiB). */
  bodyLimit?: number
  responses: Record<number, { description: string; schema?: TSchema; headers?: Record<string, string> }>
}

export interface RouteInput<P, Q, B> {
  params: P
  query: Q
  body: B
}

const DEFAULT_BODY_LIMIT = 64 * 1024

export class RouteRegistry {
  readonly #specs: RouteSpec<TSchema | undefined, TSchema | undefined, TSchema | undefined>[] = []

  private readonly app: Hono<AppEnv>

  constructor(app: Hono<AppEnv>) {
    this.app = app
  }

  add<P extends TSchema | undefined = undefined, Q extends TSchema | undefined = undefined, B extends TSchema | undefined = undefined>(
    spec: RouteSpec<P, Q, B>,
    middleware: MiddlewareHandler<AppEnv>[],
    handler: (c: Context<AppEnv>, input: RouteInput<Maybe<P>, Maybe<Q>, Maybe<B>>) => Response | Promise<Response>,
  ): void {
    this.#specs.push(spec)
    const params = spec.params && TypeCompiler.Compile(spec.params)
    const query = spec.query && TypeCompiler.Compile(spec.query)
    const body = spec.body && TypeCompiler.Compile(spec.body)
    const limit = spec.bodyLimit ?? DEFAULT_BODY_LIMIT
    this.app.on([spec.method.toUpperCase()], [spec.path], ...middleware, async (c: Context<AppEnv>) => {
      const input = {
        params: params ? check(params, c.req.param(), 'params') : undefined,
        query: query ? check(query, c.req.query(), 'query') : undefined,
        body: body ? check(body, await readJson(c.req.raw, limit), 'body') : undefined,
      }
      return handler(c, input as RouteInput<Maybe<P>, Maybe<Q>, Maybe<B>>)
    })
  }

  /** The OpenAPI 3.1 document for every registered route. */
  document(info: { title: string; version: string }): Record<string, unknown> {
    const paths: Record<string, Record<string, unknown>> = {}
    for (const spec of this.#specs) {
      const path = spec.path.replace(/:([A-Za-z_]+)/g, '{$1}')
      const parameters = [
        ...parametersOf(spec.params, 'path'),
        ...parametersOf(spec.query, 'query'),
      ]
      const responses: Record<string, unknown> = {}
      for (const [status, r] of Object.entries(spec.responses)) {
        responses[status] = {
          description: r.description,
          ...(r.schema ? { content: { 'application/json': { schema: plain(r.schema) } } } : {}),
        }
      }
      responses.default = {
        description: 'Error (RFC 9457 problem details)',
        content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
      }
      ;(paths[path] ??= {})[spec.method] = {
        operationId: spec.operationId,
        summary: spec.summary,
        tags: spec.tags,
        ...(spec.auth ? { security: [{ bearer: [] }] } : { security: [] }),
        ...(parameters.length ? { parameters } : {}),
        ...(spec.body ?? spec.rawBody
          ? { requestBody: { required: true, content: { 'application/json': { schema: plain((spec.body ?? spec.rawBody)!) } } } }
          : {}),
        responses,
      }
    }
    return {
      openapi: '3.1.0',
      info,
      paths,
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'qk_ admin key or qt_ token' } },
        schemas: { Problem: PROBLEM_SCHEMA },
      },
    }
  }
}

function check<T extends TSchema>(compiled: TypeCheck<T>, raw: unknown, where: 'params' | 'query' | 'body'): Static<T> {
  // Query and path values arrive as strings: convert ("25" → 25) before checking.
  const value = where === 'body' ? raw : Value.Convert(compiled.Schema(), raw)
  if (compiled.Check(value)) return value
  const errors: FieldError[] = []
  for (const e of compiled.Errors(value)) {
    if (errors.length >= 20) break
    if (!errors.some((x) => x.path === (e.path || '/'))) errors.push({ path: e.path || '/', message: e.message })
  }
  if (where === 'body') throw new ValidationError(errors)
  throw new BadRequestError(`Invalid ${where === 'params' ? 'path parameter' : 'query parameter'}.`, errors)
}

function parametersOf(schema: TSchema | undefined, location: 'path' | 'query'): unknown[] {
  if (!schema || !('properties' in schema)) return []
  const required = new Set<string>((schema.required as string[] | undefined) ?? [])
  return Object.entries(schema.properties as Record<string, TSchema>).map(([name, s]) => ({
    name,
    in: location,
    required: location === 'path' || required.has(name),
    schema: plain(s),
    ...(s.description ? { description: s.description } : {}),
  }))
}

/** TypeBox schemas carry symbol keys; a JSON round trip leaves plain JSON Schema. */
function plain(schema: TSchema): unknown {
  return JSON.parse(JSON.stringify(schema))
}

const PROBLEM_SCHEMA = {
  type: 'object',
  required: ['type', 'title', 'status', 'code'],
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    code: { type: 'string' },
    detail: { type: 'string' },
    instance: { type: 'string' },
    errors: {
      type: 'array',
      items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } },
    },
  },
}
