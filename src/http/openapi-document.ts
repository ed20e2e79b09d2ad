/**
 * @module http/openapi-document
 * Turns the route registry's specs into the OpenAPI 3.1 document served at `/openapi.json`,
 * printed by `quint-cloud openapi` and committed as `openapi.json`. Code generators must accept it
 * as is (issue 14: an unresolved `$ref`, empty schemas, no `servers` and no error responses made
 * `openapi-typescript` abort), so:
 * - every schema carrying a TypeBox `$id` becomes a named component and every `$ref` points into
 *   `#/components/schemas` (an unknown `$ref` throws: CI runs this);
 * - each operation lists the problem+json answers its spec implies: auth → 401 and 403, path or
 *   query parameters → 400, path parameters → 404, a request body → 400, 413, 415 (and 422 when the
 *   registry validates it), every route → 503; plus the 4xx/5xx the route declares itself;
 * - operationIds are unique (a duplicate throws) and every tag is declared.
 */
import type { TSchema } from '@sinclair/typebox'
import type { RouteSpec } from './openapi.ts'

/** What the document needs of a route: its spec as registered (src/http/openapi.ts). */
export type DocumentedRoute = RouteSpec<TSchema | undefined, TSchema | undefined, TSchema | undefined>

export interface DocumentInfo {
  title: string
  version: string
}

const TAG_DESCRIPTIONS: Record<string, string> = {
  ingest: 'Event batches and session lifecycle reports from daemons and SDKs.',
  machines:
    'The public daemon API (registration, heartbeats, policies, events, processes and graphs) and the fleet inventory read by people.',
  events: 'Stored events: filtered lists, one event, window statistics, and the causal chain of an event.',
  sessions: 'Agent sessions: lists, detail with risk summary, sub-agents, the delegation tree and the nested timeline.',
  agents: 'Agents across machines: when seen, where, how many sessions, how risky.',
  org: "The caller's org and its settings (data retention).",
  'deploy tokens': 'Opaque `qt_deploy_` credentials that daemons install with (the deploy-token view of `/v1/tokens`).',
  'audit sync':
    "The public CLI's `sync`: its Ed25519-signed audit entries (verified, chained per key), and the local proxy policy it pulls.",
  installer: 'What the public install script asks before it downloads the daemon.',
  policies:
    'Enforcement policies pushed to daemons (SPEC §11.1): scoped to every machine, some machines or machine tags; versioned and audited.',
  'threat signatures':
    "Indicators (a domain, a URL, a command or file path, an MCP tool, a prompt-injection string) every daemon in scope enforces while they are active, as a managed policy above the org's own.",
  tokens:
    'Every opaque credential: personal (`qt_pk_`), service (`qt_sk_`), deploy (`qt_deploy_`), enrollment (`qt_dk_`) and admin keys (`qk_`): create, list, rotate with an overlap, revoke.',
  'auth tokens': 'Minting the `qt_` JWT hierarchy: app → bearer → agent → sub-agent, session and override tokens.',
  'signing keys': "The org's ES256 signing keys and the public keys that verify its tokens.",
  revocation: 'Revoking tokens (one, or a whole subtree) and rebuilding the revocation filter.',
  auth: 'Who a credential is, and what its RBAC policy allows.',
  overrides: 'Human decisions on blocked events, made with one-shot override tokens.',
  alerts: 'The alerts rules raise: triage queue, detail with the events that led up to them.',
  'alert rules': 'Per-org custom alert rules.',
  'dead-letters': 'Bus messages consumers set aside after repeated failures, and their redrive.',
  webhooks: 'Signed alert webhooks, their secrets and their delivery log.',
  team: "The org's people: invitations, roles (owner, admin, analyst, viewer) and removal.",
  'audit log': 'Who changed what in the org, from where, with the state before and after.',
  live: "The console's live stream: the org's new events, alerts and fleet changes pushed as they commit (Server-Sent Events).",
}

const API_DESCRIPTION = [
  'The cloud back end for AI-agent security: daemons send batches of events; dashboards and customers read events,',
  'sessions, agents, machines and alerts, and manage credentials, rules and webhooks.',
  '',
  'Credentials go in `Authorization: Bearer <token>` (see the `bearer` security scheme). Every error is an RFC 9457',
  '`application/problem+json` document whose `code` names the error; `errors[]` lists the offending fields as JSON',
  'Pointers. 429 and 503 answers carry `Retry-After`: retry after that many seconds.',
].join('\n')

const BEARER_DESCRIPTION = [
  'One of:',
  '- an admin API key: `qk_` + 64 hex (scope `admin`);',
  '- a deploy token: `qt_deploy_` + 32 hex, or a machine service token `qt_sk_…` (scope `ingest` only: a machine never',
  "  reads the org's data);",
  '- a signed ES256 JWT of the token hierarchy, sent with its type prefix: `qt_app_`, `qt_bearer_`, `qt_agent_`,',
  '  `qt_subagent_`, `qt_session_` or `qt_override_` followed by the JWT. Bearer, agent, sub-agent and session tokens',
  '  carry `ingest` only; an app token carries the `scopes` it was minted with.',
  '',
  "Reading the org's events, sessions, agents, machines and alerts needs the `read` scope: the admin key, or an app token",
  'minted with `read` (docs/rbac.md has the table of which credential may call what).',
  '',
  'Missing, unknown, expired or revoked credentials get 401; a valid one without the scope an operation needs gets 403.',
].join('\n')

const problem = (description: string, headers?: Record<string, unknown>) => ({
  description,
  ...(headers ? { headers } : {}),
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
})

const RETRY_AFTER = {
  'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer', minimum: 0 } },
}

/** Problem answers shared by many operations, referenced from each. */
const COMMON_RESPONSES = {
  BadRequest: problem('Malformed request: invalid JSON or UTF-8, or a bad path or query parameter (`errors[]` names it).'),
  Unauthorized: problem('Missing, malformed, unknown, expired or revoked credential.', {
    'WWW-Authenticate': { description: 'The `Bearer` challenge.', schema: { type: 'string' } },
  }),
  Forbidden: problem('The credential is valid but may not do this (scope, token type or RBAC).'),
  NotFound: problem('No such resource in the caller\u2019s org.'),
  PayloadTooLarge: problem('The body (counted after decompression) or one of its lists is over its limit.'),
  UnsupportedMediaType: problem('The body is not `application/json`, or its Content-Encoding is not identity, gzip or deflate.'),
  UnprocessableContent: problem('The body is well-formed JSON but fails validation (`errors[]` has a JSON Pointer per problem).'),
  ServiceUnavailable: problem(
    'Starting, draining, or a dependency (the database, the event bus) is unavailable: retry later.',
    RETRY_AFTER,
  ),
  IdempotencyKeyInFlight: problem('A request with this Idempotency-Key is still being processed.', RETRY_AFTER),
  IdempotencyKeyMismatch: problem('This Idempotency-Key was already used for a different request (method, path, query or body).'),
  Error: problem('Unexpected error.'),
} as const

const IDEMPOTENCY_KEY = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  description:
    'Any 1–255 visible ASCII characters, new for each new request. A retry with the same key and the same request gets the ' +
    'first 2xx answer again (`Idempotent-Replayed: true`) instead of doing the work twice; keys are kept 24 hours.',
  schema: { type: 'string', minLength: 1, maxLength: 257 },
}

type CommonResponse = keyof typeof COMMON_RESPONSES

const ref = (name: CommonResponse) => ({ $ref: `#/components/responses/${name}` })

export const PROBLEM_SCHEMA = {
  type: 'object',
  description: 'RFC 9457 problem details. Some errors add fields (for example `limit_events`).',
  required: ['type', 'title', 'status', 'code'],
  properties: {
    type: { type: 'string', description: '`urn:quint:problem:<code>`.' },
    title: { type: 'string' },
    status: { type: 'integer' },
    code: { type: 'string', description: 'Stable, machine-readable error code (`validation_failed`, `unauthorized`, …).' },
    detail: { type: 'string' },
    instance: { type: 'string', description: '`urn:request:<request id>`: quote it when reporting a problem.' },
    errors: {
      type: 'array',
      items: {
        type: 'object',
        required: ['path', 'message'],
        properties: {
          path: { type: 'string', description: 'JSON Pointer of the offending value.' },
          message: { type: 'string' },
        },
      },
    },
  },
  additionalProperties: true,
}

/** The OpenAPI 3.1 document of `routes`. */
export function openApiDocument(routes: readonly DocumentedRoute[], info: DocumentInfo): Record<string, unknown> {
  const schemas = new Components()
  const paths: Record<string, Record<string, unknown>> = {}
  const operationIds = new Map<string, string>()
  const tags: string[] = []
  for (const spec of routes) {
    const path = spec.path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}')
    const where = `${spec.method.toUpperCase()} ${path}`
    const earlier = operationIds.get(spec.operationId)
    if (earlier) throw new Error(`OpenAPI: operationId "${spec.operationId}" is used by both ${earlier} and ${where}`)
    operationIds.set(spec.operationId, where)
    for (const tag of spec.tags) if (!tags.includes(tag)) tags.push(tag)

    const parameters = [
      ...parametersOf(spec.params, 'path', schemas),
      ...parametersOf(spec.query, 'query', schemas),
      ...(spec.idempotent ? [{ $ref: '#/components/parameters/IdempotencyKey' }] : []),
    ]
    const requestSchema = spec.body ?? spec.rawBody
    ;(paths[path] ??= {})[spec.method] = {
      operationId: spec.operationId,
      summary: spec.summary,
      tags: spec.tags,
      security: spec.permission === 'public' ? [] : [{ bearer: [] }],
      'x-permission': spec.permission,
      ...(parameters.length ? { parameters } : {}),
      ...(requestSchema
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: schemas.use(requestSchema, `${where} body`) } },
            },
          }
        : {}),
      responses: responsesOf(spec, where, schemas),
    }
  }
  return {
    openapi: '3.1.0',
    info: { ...info, description: API_DESCRIPTION },
    servers: [
      { url: '/', description: 'The instance serving this document (a local `quint-cloud serve`: http://localhost:8000).' },
    ],
    tags: tags.map((name) => ({ name, description: TAG_DESCRIPTIONS[name] ?? `Operations on ${name}.` })),
    paths,
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'qk_… or qt_…', description: BEARER_DESCRIPTION },
      },
      schemas: { Problem: PROBLEM_SCHEMA, ...schemas.named() },
      ...used(paths, 'parameters', { IdempotencyKey: IDEMPOTENCY_KEY }),
      ...used(paths, 'responses', COMMON_RESPONSES),
    },
  }
}

/** `{[kind]: components}` with only the components `paths` refers to (unused ones are lint warnings). */
function used(paths: unknown, kind: 'parameters' | 'responses', components: Record<string, unknown>): Record<string, unknown> {
  const text = JSON.stringify(paths)
  const entries = Object.entries(components).filter(([name]) => text.includes(`"#/components/${kind}/${name}"`))
  return entries.length ? { [kind]: Object.fromEntries(entries) } : {}
}

function responsesOf(spec: DocumentedRoute, where: string, schemas: Components): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const derived: [number, CommonResponse][] = []
  if (spec.params || spec.query || spec.body || spec.rawBody || spec.idempotent) derived.push([400, 'BadRequest'])
  if (spec.permission !== 'public') derived.push([401, 'Unauthorized'], [403, 'Forbidden'])
  if (spec.params) derived.push([404, 'NotFound'])
  if (spec.body || spec.rawBody) derived.push([413, 'PayloadTooLarge'], [415, 'UnsupportedMediaType'])
  // A rawBody route judges its body item by item (per-item results), never with a 422 for the whole.
  if (spec.body) derived.push([422, 'UnprocessableContent'])
  if (spec.idempotent)
    derived.push([409, 'IdempotencyKeyInFlight'], [422, spec.body ? 'UnprocessableContent' : 'IdempotencyKeyMismatch'])
  // Every registered route reads Postgres, and any request is refused while starting or draining.
  derived.push([503, 'ServiceUnavailable'])
  const declared = Object.entries(spec.responses).map(([status, r]) => [Number(status), r] as const)
  for (const [status, r] of declared) {
    const headers = r.headers
      ? Object.fromEntries(
          Object.entries(r.headers).map(([name, description]) => [name, { description, schema: { type: 'string' } }]),
        )
      : undefined
    if (status >= 400) {
      out[status] = problem(r.description, status === 429 || status === 503 ? { ...RETRY_AFTER, ...headers } : headers)
      continue
    }
    out[status] = {
      description: r.description,
      ...(headers ? { headers } : {}),
      ...(r.schema
        ? { content: { [r.contentType ?? 'application/json']: { schema: schemas.use(r.schema, `${where} ${status}`) } } }
        : {}),
    }
  }
  for (const [status, name] of derived) out[status] ??= ref(name)
  // Integer keys iterate in ascending order, `default` after them: a stable committed document.
  out.default = ref('Error')
  return out
}

function parametersOf(schema: TSchema | undefined, location: 'path' | 'query', schemas: Components): unknown[] {
  if (!schema || !('properties' in schema)) return []
  const required = new Set<string>((schema.required as string[] | undefined) ?? [])
  return Object.entries(schema.properties as Record<string, TSchema>).map(([name, s]) => {
    const { description, ...rest } = plain(s) as Record<string, unknown>
    return {
      name,
      in: location,
      required: location === 'path' || required.has(name),
      schema: schemas.use(rest, `${location} parameter ${name}`),
      ...(typeof description === 'string' ? { description } : {}),
    }
  })
}

/** TypeBox schemas carry symbol keys; a JSON round trip leaves plain JSON Schema. */
function plain(schema: unknown): unknown {
  return JSON.parse(JSON.stringify(schema))
}

const COMPONENT_NAME = /^[A-Za-z0-9._-]+$/
const SCHEMAS = '#/components/schemas/'
// TypeBox writes Type.Record(Type.String(), X) as this pattern; `additionalProperties` says the
// same to generators that ignore patternProperties.
const ANY_KEY = '^(.*)$'

/**
 * The named schemas of the document: every schema with a TypeBox `$id` (recursive ones such as
 * `AlertRuleCondition`, whose self-references are bare `$ref: "<id>"`) is stored once under its
 * id and replaced by a `$ref` to it. References are checked once every route is in (`named`).
 */
class Components {
  readonly #raw = new Map<string, { text: string; body: unknown; where: string }>()
  readonly #refs: { target: string; where: string }[] = []

  /** `schema` as it goes into the document. */
  use(schema: unknown, where: string): unknown {
    const json = plain(schema)
    this.#collect(json, where)
    return this.#rewrite(json, where)
  }

  /** Every named schema, after checking that each `$ref` of the document resolves. */
  named(): Record<string, unknown> {
    const out: Record<string, unknown> = {}
    for (const id of [...this.#raw.keys()].sort()) {
      const { body, where } = this.#raw.get(id)!
      out[id] = this.#rewrite(body, where)
    }
    const missing = this.#refs.filter((r) => !this.#raw.has(r.target))
    if (missing.length) {
      throw new Error(`OpenAPI: unresolved $ref ${missing.map((r) => `"${r.target}" (${r.where})`).join(', ')}`)
    }
    return out
  }

  #collect(node: unknown, where: string): void {
    if (node === null || typeof node !== 'object') return
    if (Array.isArray(node)) {
      for (const x of node) this.#collect(x, where)
      return
    }
    const o = node as Record<string, unknown>
    if (typeof o.$id === 'string') {
      const { $id: id, ...body } = o
      if (!COMPONENT_NAME.test(id)) throw new Error(`OpenAPI: schema $id "${id}" (${where}) is not a valid component name`)
      const text = JSON.stringify(body)
      const known = this.#raw.get(id)
      if (known && known.text !== text) throw new Error(`OpenAPI: two different schemas share the $id "${id}" (${where})`)
      if (!known) this.#raw.set(id, { text, body, where })
    }
    for (const v of Object.values(o)) this.#collect(v, where)
  }

  #rewrite(node: unknown, where: string): unknown {
    if (node === null || typeof node !== 'object') return node
    if (Array.isArray(node)) return node.map((x) => this.#rewrite(x, where))
    const o = node as Record<string, unknown>
    if (typeof o.$id === 'string') return { $ref: `#/components/schemas/${o.$id}` }
    if (typeof o.$ref === 'string') {
      const target = o.$ref.startsWith(SCHEMAS) ? o.$ref.slice(SCHEMAS.length) : o.$ref
      this.#refs.push({ target, where })
      return { ...o, $ref: `${SCHEMAS}${target}` }
    }
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(o)) {
      out[k] =
        k === 'properties' || k === 'patternProperties' || k === '$defs' ? this.#rewriteEach(v, where) : this.#rewrite(v, where)
    }
    const patterns = out.patternProperties as Record<string, unknown> | undefined
    if (patterns && Object.keys(patterns).length === 1 && ANY_KEY in patterns && out.additionalProperties === undefined) {
      out.additionalProperties = patterns[ANY_KEY]
      delete out.patternProperties
    }
    return out
  }

  /** A map of names to schemas (`properties`): the names are data, not keywords. */
  #rewriteEach(v: unknown, where: string): unknown {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.#rewrite(x, where)]))
  }
}
