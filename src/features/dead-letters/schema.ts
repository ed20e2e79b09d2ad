/**
 * @module features/dead-letters/schema
 * Shapes of `/v1/dead-letters`: bus messages a consumer set aside after BUS_MAX_ATTEMPTS failed
 * attempts (docs/dead-letters.md).
 */
import { Type } from '@sinclair/typebox'
import { PageQuery } from '../../http/pagination.ts'

const Consumer = Type.Union([Type.Literal('pipeline'), Type.Literal('sessions'), Type.Literal('alerts')])
const Timestamp = Type.String({ format: 'date-time' })

export const DeadLetterListQuery = Type.Composite(
  [PageQuery, Type.Object({ consumer: Type.Optional({ ...Consumer, description: "Only this consumer's dead letters." }) })],
  { additionalProperties: false },
)

export const DeadLetterIdParams = Type.Object({ id: Type.String({ format: 'uuid' }) }, { additionalProperties: false })

export const DeadLetterView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  consumer: Consumer,
  source: Type.Union([Type.Literal('local'), Type.Literal('sqs')], { description: 'The bus it was taken from.' }),
  message_id: Type.String({ description: 'The local batch id or the SQS message id.' }),
  kind: Type.Union([Type.Literal('events'), Type.Literal('lifecycle')]),
  events: Type.Integer({ description: 'Events the message carries (0 for a lifecycle report).' }),
  attempts: Type.Integer({ description: 'Failed attempts (SQS: receives) before it was set aside.' }),
  error_class: Type.String({ description: 'Class (and database code) of the last failure.' }),
  error_message: Type.String({ description: 'Message of the last failure (at most 1000 characters).' }),
  first_failed_at: Timestamp,
  last_failed_at: Timestamp,
  created_at: Timestamp,
})

export const DeadLetterDetail = Type.Composite([
  DeadLetterView,
  Type.Object({ payload: Type.Unknown({ description: 'The bus message exactly as the consumer received it.' }) }),
])

export const DeadLetterList = Type.Object({
  dead_letters: Type.Array(DeadLetterView),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
})

export const RedriveAllBody = Type.Object(
  { consumer: Type.Optional({ ...Consumer, description: "Only this consumer's dead letters; omitted: all." }) },
  { additionalProperties: false },
)

export const RedriveResult = Type.Object({
  redriven: Type.Integer({ description: 'Dead letters handed back to their consumer by this call.' }),
  remaining: Type.Integer({ description: 'Dead letters still waiting (call again when more than 0).' }),
})
