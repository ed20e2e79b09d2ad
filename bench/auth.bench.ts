/**
 * auth: validating `qt_*` JWTs (src/auth/jwt/validator.ts) beside a raw node:crypto ES256 verify of
 * the same signing input in the same run.
 * - cache hit: the same token again (SHA-256 of the string + one Map lookup);
 * - cold: the validated-token cache is emptied before every call, so each one parses, looks the
 *   key up (cached), verifies ES256, checks the claims and the chain, and asks the revocation
 *   filter (memory mode, loaded from the throw-away database), as a token seen for the first time
 *   by a warm instance does. Target: cold within 1.5× of the raw verify.
 * And people's sign-in tokens from an identity provider (bench/lib/idp.ts, issue 10).
 */
import { createPublicKey, randomBytes, verify } from 'node:crypto'
import { SigningKeys } from '../src/auth/jwt/keys.ts'
import { createRevocationFilter } from '../src/auth/jwt/revocation-filter.ts'
import { SecretBox } from '../src/auth/secret-box.ts'
import { mintJwt, MAX_TOKEN_TTL_MS } from '../src/auth/jwt/hierarchy.ts'
import { TokenValidator } from '../src/auth/jwt/validator.ts'
import { createOrg } from '../src/features/orgs/service.ts'
import { withOrg } from '../src/infra/db.ts'
import { createLogger } from '../src/infra/log.ts'
import { round, timeLoop } from './lib/measure.ts'
import { withThrowawayDatabase } from './lib/database.ts'
import { idpFigures } from './lib/idp.ts'

export const name = 'auth'

export async function run(opts: { seconds: number }) {
  const log = createLogger('warn', 'stderr')
  return withThrowawayDatabase(log, async (db) => {
    const org = await createOrg(db.app, 'bench', 'cli')
    const keys = new SigningKeys(db.app, new SecretBox(randomBytes(32)), log, { maxTokenTtlMs: MAX_TOKEN_TTL_MS })
    const signer = await keys.signer(org.org_id)
    const rbac = {
      allowed_actions: ['data:read:*'],
      denied_actions: [],
      allowed_resources: [],
      denied_resources: [],
      sensitivity_level: 3,
      max_sensitivity_level: 3,
      max_risk_score: 0,
    }
    const token = await withOrg(db.app, org.org_id, async (tx) => {
      const app = await mintJwt(tx, signer, { orgId: org.org_id, type: 'app', parent: null, claims: { scopes: ['*'] } })
      const asParent = (m: typeof app, type: 'app' | 'bearer') => ({
        jti: m.jti,
        type,
        exp: m.claims.exp as number,
        depth: 0,
        claims: m.claims,
      })
      const bearer = await mintJwt(tx, signer, {
        orgId: org.org_id,
        type: 'bearer',
        parent: asParent(app, 'app'),
        claims: { env: 'prod' },
      })
      const agent = await mintJwt(tx, signer, {
        orgId: org.org_id,
        type: 'agent',
        parent: asParent(bearer, 'bearer'),
        claims: { agent_id: 'a', rbac },
      })
      return agent.token
    })
    const filter = createRevocationFilter({ redis: null, log })
    await filter.rebuild([])
    const validator = new TokenValidator(db.app, keys, { clockSkewS: 30, maxDepth: 3, filter })
    if (!(await validator.validate(token)).ok) throw new Error('token did not validate')
    const ms = opts.seconds * 1000

    const hit = await timeLoop(() => validator.validate(token), ms)
    const cold = await timeLoop(() => {
      validator.evict([])
      return validator.validate(token)
    }, ms)
    const jws = token.slice('qt_agent_'.length)
    const dot = jws.lastIndexOf('.')
    const input = Buffer.from(jws.slice(0, dot))
    const sig = Buffer.from(jws.slice(dot + 1), 'base64url')
    const [row] = await withOrg(
      db.app,
      org.org_id,
      (tx) => tx<{ public_pem: string }[]>`select public_pem from auth.signing_keys`,
    )
    const pub = createPublicKey(row!.public_pem)
    const raw = await timeLoop(() => verify('sha256', input, { key: pub, dsaEncoding: 'ieee-p1363' }, sig), ms)
    const ratio = cold.p50_us / raw.p50_us
    await filter.close()
    const idp = await idpFigures(opts.seconds, log, db.app)
    return {
      figures: {
        ...idp.figures,
        'auth.hit_p50_us': round(hit.p50_us, 3),
        'auth.hit_p99_us': round(hit.p99_us, 3),
        'auth.hit_ops_per_s': round(hit.ops_per_s, 0),
        'auth.cold_p50_us': round(cold.p50_us, 2),
        'auth.cold_p99_us': round(cold.p99_us, 2),
        'auth.cold_ops_per_s': round(cold.ops_per_s, 0),
        'auth.raw_verify_p50_us': round(raw.p50_us, 2),
        'auth.raw_verify_ops_per_s': round(raw.ops_per_s, 0),
        'auth.cold_ratio': round(ratio, 3),
      },
      rows: [
        [
          'JWT validation, cache hit',
          `${round(hit.ops_per_s, 0)} ops/s`,
          `p50 ${round(hit.p50_us, 2)} µs`,
          `p99 ${round(hit.p99_us, 2)} µs`,
        ],
        [
          'JWT validation, cold (cache emptied)',
          `${round(cold.ops_per_s, 0)} ops/s`,
          `p50 ${round(cold.p50_us, 2)} µs`,
          `p99 ${round(cold.p99_us, 2)} µs`,
        ],
        [
          'baseline: node:crypto ES256 verify',
          `${round(raw.ops_per_s, 0)} ops/s`,
          `p50 ${round(raw.p50_us, 2)} µs`,
          `p99 ${round(raw.p99_us, 2)} µs`,
        ],
        ['ratio cold/raw (p50, target ≤ 1.5)', `${round(ratio, 3)}`, '', ''],
        ...idp.rows,
      ],
    }
  })
}
