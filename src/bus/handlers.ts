/**
 * @module bus/handlers
 * What each consumer does with a claimed batch. Kept apart from the pool so that a worker thread
 * imports only what it runs.
 */
import { evaluateAlerts } from '../features/alerts/consumer.ts'
import type { ConsumerName } from './bus.ts'
import { storeEvents } from '../features/actions/store.ts'
import { applySessions } from '../features/sessions/consumer.ts'
import type { Handler } from './consume-local.ts'

export const HANDLERS: Record<ConsumerName, Handler> = {
  pipeline: storeEvents,
  sessions: applySessions,
  alerts: evaluateAlerts,
}
