/**
 * @module features/live/schema
 * The query of `GET /v1/live` (issue 12, docs/live.md): which topics a console follows.
 */
import { Type } from '@sinclair/typebox'
import { badQueryParam } from '../../http/openapi.ts'

export const LIVE_TOPICS = ['events', 'alerts', 'fleet'] as const
export type LiveTopic = (typeof LIVE_TOPICS)[number]

export const LiveQuery = Type.Object(
  {
    topics: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        description:
          'Comma-separated topics to follow: `events` (stored events), `alerts` (raised and triaged, and approval ' +
          'requests asked for and ended), `fleet` (policy, ' +
          'signature, domains, machine and override changes, and policy deliveries). Default: all three.',
      }),
    ),
  },
  { additionalProperties: false },
)

/** The topics asked for, each once, in the canonical order; an unknown one is a 400 naming it. */
export function parseTopics(raw: string | undefined): LiveTopic[] {
  if (raw === undefined) return [...LIVE_TOPICS]
  const asked = raw.split(',').map((t) => t.trim())
  const unknown = asked.filter((t) => !(LIVE_TOPICS as readonly string[]).includes(t))
  if (unknown.length > 0) {
    throw badQueryParam(
      'topics',
      `Unknown topic ${JSON.stringify(unknown[0])}: a comma-separated list of ${LIVE_TOPICS.join(', ')}.`,
    )
  }
  return LIVE_TOPICS.filter((t) => asked.includes(t))
}
