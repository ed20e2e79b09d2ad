/**
 * @module features/members/signin
 * A person's request (issue 10, docs/people.md): their identity provider's token, verified by
 * src/auth/idp, mapped to a member of one org.
 *
 * - An active membership is found by the identity (issuer and subject), never by email.
 * - Which org: the one `X-Quint-Org` names; without it, the person's one active membership. Only
 *   memberships they hold count: another org inviting their address cannot make their requests
 *   ambiguous. Several active memberships without the header: 400 `org_required` listing them.
 * - An invitation (a pending row for the verified email) is claimed when the person names its org,
 *   or when it is all they have (one invitation, no membership: the first sign-in after being
 *   invited). The membership is then bound to that identity, and the audit log says so.
 * - An org they hold nothing in, or an identity with nothing at all: 403 `not_a_member`.
 * - A membership found is remembered for MEMBER_TTL_MS (issue 10: a person's request within 5 µs
 *   on a hit). A change to the team (a role, a removal) forgets the org's at once on the instance
 *   that made it, and in cluster mode on every other through Redis (MEMBERS_CHANNEL); without
 *   Redis, other instances read it again within MEMBER_TTL_MS. "Nothing at all" is
 *   remembered for as long, so an identity the provider signs up freely cannot make every request
 *   cost a transaction.
 */
import type { AuthOutcome, MemberPrincipal, PeopleAuthenticator, PeopleContext, RequestOrigin } from '../../auth/credentials.ts'
import type { IdpIdentity, IdpVerifier } from '../../auth/idp/verifier.ts'
import { isUuid, pgErrorCode, withOrg, type Sql } from '../../infra/db.ts'
import type { Logger } from '../../infra/log.ts'
import type { ChannelHandlers } from '../../infra/redis.ts'
import { recordAudit } from '../audit/repo.ts'
import { claimInvitation, membershipsOf, type MemberRow } from './repo.ts'

/** Who, as far as memberships go: the identity, and the email it may claim invitations with. */
const identityKey = (who: IdpIdentity) => `${who.issuer}\n${who.subject}\n${who.emailVerified ? who.email : ''}`

const MEMBER_TTL_MS = 5_000
const REMEMBERED_MAX = 10_000
/** Cluster mode: team changes, by org id, so that every instance forgets at once (issue 10). */
export const MEMBERS_CHANNEL = 'auth:members'

/** What the sign-in needs of Redis to tell the other instances; `RedisStateStore` provides it. */
export interface TeamChannel {
  publish(channel: string, message: string): Promise<void>
  subscribeChannel(channel: string, handlers: ChannelHandlers): () => Promise<void>
}

export class PeopleSignIn implements PeopleAuthenticator {
  private readonly sql: Sql
  private readonly verifier: IdpVerifier
  private readonly strangers = new Map<string, number>()
  private readonly members = new Map<string, { principal: MemberPrincipal; until: number }>()
  /** Bumped by every team change: a lookup that overlapped one must not remember what it read. */
  private generation = 0
  private readonly channel: TeamChannel | null
  private readonly log: Logger | null
  private readonly echoTimeoutMs: number
  /** Our own publications, waiting to come back from Redis (by nonce). */
  private readonly echoes = new Map<string, () => void>()

  /**
   * With `channel` (Redis), a team change made here is forgotten on every instance at once;
   * while the subscription is down, nothing is remembered (every request reads Postgres).
   */
  constructor(
    sql: Sql,
    verifier: IdpVerifier,
    options: { channel?: TeamChannel | null; log?: Logger; echoTimeoutMs?: number } = {},
  ) {
    this.sql = sql
    this.verifier = verifier
    this.channel = options.channel ?? null
    this.log = options.log ?? null
    this.echoTimeoutMs = options.echoTimeoutMs ?? 1_000
    this.listening = this.channel === null
    this.channel?.subscribeChannel(MEMBERS_CHANNEL, {
      message: (message) => {
        const [orgId = '', nonce = ''] = message.split(' ')
        this.forget(orgId)
        this.echoes.get(nonce)?.()
      },
      subscribed: () => {
        this.forgetAll()
        this.listening = true
      },
      lost: () => {
        this.listening = false
        this.forgetAll()
      },
    })
  }

  /** False while a Redis subscription is down: another instance's change could be missed. */
  private listening: boolean

  async authenticate(raw: string, context: PeopleContext): Promise<AuthOutcome> {
    const orgHeader = context.org
    const verified = await this.verifier.verify(raw)
    if (!verified.identity) return { principal: null, reason: verified.reason }
    const who = verified.identity
    const stranger = identityKey(who)
    const now = Date.now()
    const key = `${stranger}\n${orgHeader?.trim().toLowerCase() ?? ''}`
    const known = this.members.get(key)
    if (known && known.until > now) return { principal: known.principal }
    if ((this.strangers.get(stranger) ?? 0) > now) return { principal: null, reason: 'not_a_member' }
    const generation = this.generation
    const rows = await membershipsOf(this.sql, who)
    if (rows.length === 0) {
      if (generation === this.generation && this.listening) {
        if (this.strangers.size >= REMEMBERED_MAX) this.strangers.clear()
        this.strangers.set(stranger, now + MEMBER_TTL_MS)
      }
      return { principal: null, reason: 'not_a_member' }
    }
    const active = rows.filter((r) => r.status === 'active')
    const pending = rows.filter((r) => r.status === 'pending')
    const named = orgHeader?.trim() ? orgHeader.trim().toLowerCase() : undefined
    let chosen: MemberRow | undefined
    if (named !== undefined) {
      if (!isUuid(named)) return { principal: null, reason: 'not_a_member' }
      chosen = active.find((r) => r.org_id === named) ?? pending.find((r) => r.org_id === named)
    } else if (active.length > 1) {
      return { principal: null, reason: 'org_required', orgs: active.map((r) => r.org_id) }
    } else if (active.length === 1) {
      chosen = active[0]
    } else if (pending.length > 1) {
      return { principal: null, reason: 'org_required', orgs: pending.map((r) => r.org_id) }
    } else {
      chosen = pending[0]
    }
    if (chosen?.status === 'pending') chosen = await this.claim(chosen, who, context.request)
    if (!chosen) return { principal: null, reason: 'not_a_member' }
    const principal: MemberPrincipal = {
      kind: 'member',
      orgId: chosen.org_id,
      memberId: chosen.id,
      tokenId: chosen.id,
      role: chosen.role,
      email: chosen.email,
      scopes: [],
    }
    if (generation === this.generation && this.listening) {
      if (this.members.size >= REMEMBERED_MAX) this.members.clear()
      this.members.set(key, { principal, until: now + MEMBER_TTL_MS })
    }
    return { principal }
  }

  /**
   * Forgets the org's here, then (Redis) tells every instance and waits, bounded, until the
   * message came back to this process: Redis has by then handed it to every subscriber, so the
   * answer to the change goes out after the others were told. A failed publication is logged;
   * the others then follow within MEMBER_TTL_MS.
   */
  async membersChanged(orgId: string): Promise<void> {
    this.forget(orgId)
    if (!this.channel) return
    const nonce = crypto.randomUUID()
    let timer: ReturnType<typeof setTimeout> | undefined
    const echoed = new Promise<void>((resolve) => {
      this.echoes.set(nonce, resolve)
      timer = setTimeout(resolve, this.echoTimeoutMs)
    })
    try {
      await this.channel.publish(MEMBERS_CHANNEL, `${orgId} ${nonce}`)
      await echoed
    } catch (err) {
      this.log?.warn({ err }, 'team change not published to Redis; other instances follow within 5 s')
    } finally {
      clearTimeout(timer)
      this.echoes.delete(nonce)
    }
  }

  private forget(orgId: string): void {
    this.generation++
    for (const [key, m] of this.members) if (m.principal.orgId === orgId) this.members.delete(key)
    // An invitation may have been sent to someone refused a moment ago.
    this.strangers.clear()
  }

  private forgetAll(): void {
    this.generation++
    this.members.clear()
    this.strangers.clear()
  }

  /**
   * Binds the invitation to `who`, audited. When a concurrent first request of the same person
   * claimed it (or bound them to another invitation of that org) first, theirs is read again.
   */
  private async claim(invitation: MemberRow, who: IdpIdentity, request?: RequestOrigin): Promise<MemberRow | undefined> {
    let claimed: MemberRow | null = null
    try {
      claimed = await withOrg(this.sql, invitation.org_id, async (tx) => {
        const row = await claimInvitation(tx, invitation.id, who)
        if (row) {
          await recordAudit(tx, {
            actorType: 'member',
            actorId: row.id,
            action: 'member.join',
            targetType: 'member',
            targetId: row.id,
            request,
            details: { email: row.email, role: row.role, idp_issuer: who.issuer, idp_subject: who.subject },
          })
        }
        return row
      })
    } catch (err) {
      // members_org_identity: the same identity claimed another invitation of this org meanwhile.
      if (pgErrorCode(err) !== '23505') throw err
    }
    if (claimed) {
      // Their memberships changed: whichever org a request without the header chose is stale.
      const identity = identityKey(who)
      for (const key of this.members.keys()) if (key.startsWith(`${identity}\n`)) this.members.delete(key)
      return claimed
    }
    return (await membershipsOf(this.sql, who)).find((r) => r.org_id === invitation.org_id && r.status === 'active')
  }
}
