/**
 * @module features/ingest/lifecycle
 * Session lifecycle events (`POST /v1/sessions/ingest`, SPEC §10): start, update and end of one
 * agent invocation. Validated here; applied in order by the sessions consumer.
 */
import { Type, type Static } from '@sinclair/typebox'

const Id = Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\u0000-\\u001f\\u007f]+$' })
const Text = (max: number) => Type.String({ maxLength: max, pattern: '^[^\\u0000]*$' })

export const SessionLifecycleBody = Type.Object(
  {
    session_id: Id,
    session_name: Type.Optional(Type.Union([Text(512), Type.Null()])),
    model: Type.Optional(Type.Union([Text(256), Type.Null()])),
    signing_id: Type.Optional(Type.Union([Text(256), Type.Null()])),
    state: Type.Union([Type.Literal('active'), Type.Literal('idle'), Type.Literal('ended')]),
    platform: Type.Optional(Type.Union([Text(64), Type.Null()])),
    parent_id: Type.Optional(Type.Union([Id, Type.Null()])),
    timestamp: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: true },
)

export type SessionLifecycle = Static<typeof SessionLifecycleBody>
