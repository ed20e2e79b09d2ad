/**
 * @module console/ui/api/client
 * The console's one way to the API: typed by `./openapi.ts`, which `bun run openapi:write`
 * generates from the OpenAPI document (test/contract/openapi.test.ts fails when it drifts), so a
 * route or schema change the console does not follow fails the type check.
 *
 * Errors come back as `ApiError` carrying the RFC 9457 problem the API answered.
 */
import type { paths } from './openapi.ts'

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete'
type Json<R> = R extends { content: { 'application/json': infer T } } ? T : undefined
type Op<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>
type Responses<O> = O extends { responses: infer R } ? R : never
/** The body of the operation's success answer (200, 201, 202 or 204). */
export type Ok<P extends keyof paths, M extends Method> =
  Responses<Op<P, M>> extends infer R
    ? 200 extends keyof R
      ? Json<R[200]>
      : 201 extends keyof R
        ? Json<R[201]>
        : 202 extends keyof R
          ? Json<R[202]>
          : undefined
    : never
type Params<O> = O extends { parameters: infer Pa } ? Pa : never
export type Query<P extends keyof paths, M extends Method> = Params<Op<P, M>> extends { query?: infer Q } ? NonNullable<Q> : never
type PathParams<O> = Params<O> extends { path?: infer Pp } ? NonNullable<Pp> : never
export type Body<P extends keyof paths, M extends Method> =
  Op<P, M> extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never
/** A schema of the document's components, by name. */
export type Schema<N extends keyof import('./openapi.ts').components['schemas']> = import('./openapi.ts').components['schemas'][N]

export type PathsWith<M extends Method> = { [P in keyof paths]: paths[P][M] extends undefined | never ? never : P }[keyof paths]

export interface Problem {
  type?: string
  title?: string
  status: number
  detail?: string
  code?: string
  errors?: { path?: string; message: string }[]
  /** `org_required`: the orgs the person belongs to. */
  orgs?: string[]
}

export class ApiError extends Error {
  readonly problem: Problem
  constructor(problem: Problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${problem.status}`)
    this.problem = problem
  }
  get status(): number {
    return this.problem.status
  }
}

export interface CallOptions<P extends keyof paths, M extends Method> {
  path?: PathParams<Op<P, M>>
  query?: Query<P, M>
  body?: Body<P, M>
  signal?: AbortSignal
}

/** Where a request gets its `Authorization`, and who hears that the credential no longer works. */
export interface Credential {
  authorization(): Promise<string | null>
  /** The org chosen by a person who belongs to several (`X-Quint-Org`), or null. */
  org(): string | null
  rejected(problem: Problem): void
}

let credential: Credential | null = null
export const useCredential = (c: Credential | null): void => {
  credential = c
}

export function urlOf(template: string, path?: Record<string, unknown>, query?: Record<string, unknown>): string {
  const filled = template.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(String(path?.[name] ?? '')))
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v === undefined || v === null || v === '') continue
    for (const one of Array.isArray(v) ? v : [v]) params.append(k, String(one))
  }
  const qs = params.toString()
  return qs ? `${filled}?${qs}` : filled
}

export async function authorizedFetch(url: string, init: RequestInit = {}): Promise<Response> {
  const auth = await credential?.authorization()
  const headers = new Headers(init.headers)
  if (auth) headers.set('Authorization', auth)
  const org = credential?.org()
  if (org) headers.set('X-Quint-Org', org)
  const res = await fetch(url, { ...init, headers })
  if (!res.ok) {
    const problem = await problemOf(res)
    // The credential no longer opens this org: expired, revoked, or the person was removed.
    if (res.status === 401 || problem.code === 'not_a_member') credential?.rejected(problem)
    throw new ApiError(problem)
  }
  return res
}

async function problemOf(res: Response): Promise<Problem> {
  try {
    const body = (await res.json()) as Problem
    return { ...body, status: res.status }
  } catch {
    return { status: res.status, title: res.statusText || `HTTP ${res.status}` }
  }
}

async function call<P extends keyof paths, M extends Method>(
  method: M,
  template: P,
  o: CallOptions<P, M> = {},
): Promise<Ok<P, M>> {
  const url = urlOf(template as string, o.path as Record<string, unknown>, o.query as Record<string, unknown>)
  const res = await authorizedFetch(url, {
    method: method.toUpperCase(),
    ...(o.body !== undefined ? { body: JSON.stringify(o.body), headers: { 'content-type': 'application/json' } } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  })
  if (res.status === 204) return undefined as Ok<P, M>
  return (await res.json()) as Ok<P, M>
}

export const api = {
  get: <P extends PathsWith<'get'>>(p: P, o?: CallOptions<P, 'get'>) => call('get', p, o),
  post: <P extends PathsWith<'post'>>(p: P, o?: CallOptions<P, 'post'>) => call('post', p, o),
  put: <P extends PathsWith<'put'>>(p: P, o?: CallOptions<P, 'put'>) => call('put', p, o),
  patch: <P extends PathsWith<'patch'>>(p: P, o?: CallOptions<P, 'patch'>) => call('patch', p, o),
  delete: <P extends PathsWith<'delete'>>(p: P, o?: CallOptions<P, 'delete'>) => call('delete', p, o),
}
