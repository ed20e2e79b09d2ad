/**
 * @module features/members/schema
 * Request and response shapes of `/v1/team` (issue 10, SPEC §6.3).
 */
import { Type } from '@sinclair/typebox'
import { EMAIL_PATTERN, MAX_EMAIL } from '../../lib/email.ts'
import { Nullable } from '../../lib/schema.ts'

export const Role = Type.Union([Type.Literal('owner'), Type.Literal('admin'), Type.Literal('analyst'), Type.Literal('viewer')], {
  description:
    'viewer reads; analyst also triages alerts; admin also manages tokens, rules, webhooks and settings; owner also manages members.',
})

export const InviteBody = Type.Object(
  {
    email: Type.String({
      minLength: 3,
      maxLength: MAX_EMAIL,
      pattern: EMAIL_PATTERN,
      description: 'Claimed by the first sign-in whose identity provider verified this address (ASCII; compared lower-cased).',
    }),
    role: Role,
  },
  { additionalProperties: false },
)

export const RoleBody = Type.Object({ role: Role }, { additionalProperties: false })

export const MemberIdParams = Type.Object({ id: Type.String({ description: 'The member id (UUID).' }) })

const Timestamp = Type.String({ format: 'date-time' })

export const MemberView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  email: Type.String(),
  role: Role,
  status: Type.Union([Type.Literal('pending'), Type.Literal('active')], {
    description: '`pending` until the invited address first signs in.',
  }),
  created_at: Timestamp,
  joined_at: Nullable(Timestamp),
})

export const MemberList = Type.Object({ members: Type.Array(MemberView) })
