/**
 * credentials: resolving an opaque token that is already cached (SHA-256 of the token + cache
 * lookup + expiry check), beside a bare Map lookup of the same key in the same run. The first
 * resolution goes to a throw-away embedded Postgres; only cache hits are timed.
 */
import { CredentialResolver } from '../src/auth/credentials.ts'
import { createOrg } from '../src/features/orgs/service.ts'
import { createLogger } from '../src/infra/log.ts'
import { round, timeLoop } from './lib/measure.ts'
import { withThrowawayDatabase } from './lib/database.ts'

export const name = 'credentials'

export async function run(opts: { seconds: number }) {
  const log = createLogger('warn', 'stderr')
  return withThrowawayDatabase(log, async (db) => {
    const org = await createOrg(db.app, 'bench', 'cli')
    const resolver = new CredentialResolver(db.app, log, { jwt: null })
    if (!(await resolver.resolve(org.deploy_token))) throw new Error('token did not resolve')
    const hit = await timeLoop(() => resolver.resolve(org.deploy_token), opts.seconds * 1000)
    const map = new Map([[org.deploy_token, { orgId: org.org_id }]])
    const raw = await timeLoop(() => map.get(org.deploy_token), opts.seconds * 1000)
    return {
      figures: {
        'credentials.hit_p50_us': round(hit.p50_us, 3),
        'credentials.hit_p99_us': round(hit.p99_us, 3),
        'credentials.hit_ops_per_s': round(hit.ops_per_s, 0),
        'credentials.raw_map_p50_us': round(raw.p50_us, 3),
        'credentials.raw_map_ops_per_s': round(raw.ops_per_s, 0),
        'credentials.ratio': round(hit.ops_per_s / raw.ops_per_s, 4),
      },
      rows: [
        [
          'opaque token, cache hit',
          `${round(hit.ops_per_s, 0)} ops/s`,
          `p50 ${round(hit.p50_us, 2)} µs`,
          `p99 ${round(hit.p99_us, 2)} µs`,
        ],
        [
          'baseline: bare Map lookup',
          `${round(raw.ops_per_s, 0)} ops/s`,
          `p50 ${round(raw.p50_us, 2)} µs`,
          `p99 ${round(raw.p99_us, 2)} µs`,
        ],
        ['ratio hit/raw', `${round(hit.ops_per_s / raw.ops_per_s, 4)}`, '', ''],
      ],
    }
  })
}
