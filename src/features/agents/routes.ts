/**
 * @module features/agents/routes
 * Placeholder (issue 9): filled in by its owner.
 */
import type { MiddlewareHandler } from 'hono'
import type { RouteRegistry } from '../../http/openapi.ts'
import type { AppEnv } from '../../http/request-context.ts'
import type { Sql } from '../../infra/db.ts'

export function mountAgents(_routes: RouteRegistry, _deps: { sql: Sql; read: MiddlewareHandler<AppEnv> }): void {}
