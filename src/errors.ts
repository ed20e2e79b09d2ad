/**
 * @module errors
 * Typed errors with a stable machine `code` and an HTTP status. `src/http/problem.ts` is the one
 * place that turns them into RFC 9457 responses; anything that is not an AppError becomes a 500
 * whose body never carries the internal message.
 */

export interface FieldError {
  /** JSON Pointer into the request (`/name`, `/events/3/timestamp`). */
  path: string
  message: string
}

export class AppError extends Error {
  override name = 'AppError'
  readonly status: number
  readonly code: string
  readonly headers: Record<string, string>
  readonly extensions: Record<string, unknown>

  constructor(
    status: number,
    code: string,
    detail: string,
    options: { headers?: Record<string, string>; extensions?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(detail, { cause: options.cause })
    this.status = status
    this.code = code
    this.headers = options.headers ?? {}
    this.extensions = options.extensions ?? {}
  }
}

export class BadRequestError extends AppError {
  override name = 'BadRequestError'
  constructor(detail: string, errors?: FieldError[]) {
    super(400, 'bad_request', detail, errors ? { extensions: { errors } } : {})
  }
}

export class UnauthorizedError extends AppError {
  override name = 'UnauthorizedError'
  constructor(detail = 'A valid bearer token is required.') {
    super(401, 'unauthorized', detail, { headers: { 'WWW-Authenticate': 'Bearer realm="quint-cloud"' } })
  }
}

/** A genuine JWT past its `exp` (+ skew): 401 like any bad token, but with its own code. */
export class TokenExpiredError extends AppError {
  override name = 'TokenExpiredError'
  constructor() {
    super(401, 'token_expired', 'The token has expired.', {
      headers: { 'WWW-Authenticate': 'Bearer realm="quint-cloud", error="invalid_token"' },
    })
  }
}

export class ForbiddenError extends AppError {
  override name = 'ForbiddenError'
  constructor(detail = 'This credential is not allowed to do that.') {
    super(403, 'insufficient_permissions', detail)
  }
}

/** A machine an admin disabled (PATCH /v1/machines/{id}): refused whatever credential it presents. */
export class MachineDisabledError extends AppError {
  override name = 'MachineDisabledError'
  constructor() {
    super(403, 'machine_disabled', 'This machine was disabled by an administrator of the organization.')
  }
}

/** A revoked deploy token: it keeps the machines it registered, and registers no other (SPEC §3.2). */
export class TokenRetiredError extends AppError {
  override name = 'TokenRetiredError'
  constructor() {
    super(
      403,
      'token_retired',
      'This deploy token was revoked: it registers no new machine, and acts only on the machines it registered.',
    )
  }
}

/** A CORS preflight from an origin not in CORS_ORIGINS (src/http/browser.ts). */
export class OriginNotAllowedError extends AppError {
  override name = 'OriginNotAllowedError'
  constructor() {
    super(403, 'origin_not_allowed', 'This origin is not allowed to call the API from a browser (CORS_ORIGINS).', {
      headers: { Vary: 'Origin' },
    })
  }
}

/** A genuine identity from the org's provider that is not a member (of the org it named). */
export class NotAMemberError extends AppError {
  override name = 'NotAMemberError'
  constructor() {
    super(403, 'not_a_member', 'This identity is not a member of the organization (invitations are claimed by a verified email).')
  }
}

/** A person in several orgs must say which one a request is for. */
export class OrgRequiredError extends AppError {
  override name = 'OrgRequiredError'
  constructor(orgs: string[]) {
    super(400, 'org_required', 'This identity is a member of several organizations: name one in the X-Quint-Org header.', {
      extensions: { orgs },
    })
  }
}

export class NotFoundError extends AppError {
  override name = 'NotFoundError'
  constructor(detail = 'No such resource.') {
    super(404, 'not_found', detail)
  }
}

export class PayloadTooLargeError extends AppError {
  override name = 'PayloadTooLargeError'
  constructor(limitBytes: number) {
    super(413, 'payload_too_large', `The request body exceeds the limit of ${limitBytes} bytes.`, {
      extensions: { limit_bytes: limitBytes },
    })
  }
}

export class UnsupportedMediaTypeError extends AppError {
  override name = 'UnsupportedMediaTypeError'
  constructor(expected: string) {
    super(415, 'unsupported_media_type', `The request body must be ${expected}.`)
  }
}

export class ValidationError extends AppError {
  override name = 'ValidationError'
  constructor(errors: FieldError[], detail = 'The request body failed validation.') {
    super(422, 'validation_failed', detail, { extensions: { errors } })
  }
}

export class UnavailableError extends AppError {
  override name = 'UnavailableError'
  constructor(detail: string, retryAfterSeconds = 5, cause?: unknown) {
    super(503, 'unavailable', detail, { headers: { 'Retry-After': String(retryAfterSeconds) }, cause })
  }
}

export class RateLimitedError extends AppError {
  override name = 'RateLimitedError'
  /** `headers`: more headers for the answer (the quota's `RateLimit-Policy` and `RateLimit`, issue 14). */
  constructor(detail: string, retryAfterSeconds: number, headers: Record<string, string> = {}) {
    super(429, 'rate_limited', detail, {
      headers: { ...headers, 'Retry-After': String(retryAfterSeconds) },
      extensions: { retry_after_seconds: retryAfterSeconds },
    })
  }
}

/**
 * One event that the cluster bus cannot carry even alone and compressed (SNS caps a message at
 * 256 KiB). Permanent: retrying the same event cannot succeed.
 */
export class EventTooLargeError extends AppError {
  override name = 'EventTooLargeError'
  constructor(eventId: string, limitBytes: number) {
    super(413, 'event_too_large', `Event ${eventId} is too large for the event bus, even compressed.`, {
      extensions: { event_id: eventId, limit_bytes: limitBytes },
    })
  }
}

/** An Idempotency-Key already used for a different request by the same credential (issue 14). */
export class IdempotencyKeyMismatchError extends AppError {
  override name = 'IdempotencyKeyMismatchError'
  constructor() {
    super(
      422,
      'idempotency_key_mismatch',
      'This Idempotency-Key was already used for a different request (method, path, query or body); use a new key for a new request.',
    )
  }
}

/** The first request with this Idempotency-Key is still running (issue 14). */
export class IdempotencyKeyInFlightError extends AppError {
  override name = 'IdempotencyKeyInFlightError'
  constructor() {
    super(409, 'idempotency_key_in_flight', 'A request with this Idempotency-Key is still being processed; retry shortly.', {
      headers: { 'Retry-After': '1' },
    })
  }
}
