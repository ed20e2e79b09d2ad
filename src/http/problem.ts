/**
 * @module http/problem
 * The one place an error becomes an HTTP response: RFC 9457 `application/problem+json` with
 * `type`, `title`, `status`, `detail`, `instance` (the request id) and a stable `code`.
 * 5xx bodies never carry internal messages; the error is logged with its stack instead.
 */
import { HTTPException } from 'hono/http-exception'
import { AppError, UnavailableError } from '../errors.ts'
import { isTransientDbError } from '../infra/db.ts'
import { ThrottledLog, type Logger } from '../infra/log.ts'

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

const CODES: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'insufficient_permissions',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  500: 'internal_error',
  503: 'unavailable',
}

export interface ProblemInit {
  status: number
  code: string
  detail?: string
  instance?: string
  headers?: Record<string, string>
  extensions?: Record<string, unknown>
}

export function problem(init: ProblemInit): Response {
  const body = {
    type: `urn:quint:problem:${init.code}`,
    title: TITLES[init.status] ?? 'Error',
    status: init.status,
    code: init.code,
    ...(init.detail ? { detail: init.detail } : {}),
    ...(init.instance ? { instance: init.instance } : {}),
    ...init.extensions,
  }
  return new Response(JSON.stringify(body), {
    status: init.status,
    headers: { 'content-type': 'application/problem+json', ...init.headers },
  })
}

/** Maps any thrown value to a problem response; unknown errors are logged and become a bare 500. */
export function errorToProblem(err: unknown, requestId: string | undefined, log: Logger): Response {
  const instance = requestId ? `urn:request:${requestId}` : undefined
  if (err instanceof AppError) {
    if (err.status >= 500) throttled.warn(err.code, { err, requestId }, err.message, log)
    return problem({
      status: err.status,
      code: err.code,
      detail: err.message,
      instance,
      headers: err.headers,
      extensions: err.extensions,
    })
  }
  if (err instanceof HTTPException) {
    const status = err.status
    return problem({ status, code: CODES[status] ?? 'error', detail: err.message || undefined, instance })
  }
  if (isTransientDbError(err)) {
    throttled.warn('database_unavailable', { err, requestId }, 'database unavailable', log)
    const e = new UnavailableError('The database is temporarily unavailable; retry later.')
    return problem({ status: e.status, code: e.code, detail: e.message, instance, headers: e.headers })
  }
  log.error({ err, requestId }, 'unhandled error')
  return problem({ status: 500, code: 'internal_error', detail: 'An internal error occurred.', instance })
}

/**
 * 503s come in floods during an outage, each already in the access log: their cause is logged
 * once per kind and 10 s, with how many were held back (issue 14: 24 error lines in 5 s).
 */
const throttled = new ThrottledLog(null, 10_000)
