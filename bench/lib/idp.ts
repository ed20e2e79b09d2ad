/**
 * A signed-in person's request for the auth suite (issue 10): their identity provider's token
 * through the sign-in the service runs (src/features/members/signin.ts: the verifier of
 * src/auth/idp, then the membership, of an org created on the throw-away database), against a
 * key server started here (discovery and a JWKS of a P-256 key generated per run), beside a raw
 * node:crypto ES256 verify of the same tokens.
 * - hit: the same token again (the verified token and the membership remembered);
 * - cold: a token never seen, each call (parse, key, verify, claims), as for a refreshed token;
 *   the membership is remembered. Target ≤ 1.5× the raw verify (p50).
 */
import { generateKeyPairSync, sign, verify } from 'node:crypto'
import { IdpVerifier } from '../../src/auth/idp/verifier.ts'
import { PeopleSignIn } from '../../src/features/members/signin.ts'
import { createOrg } from '../../src/features/orgs/service.ts'
import type { Sql } from '../../src/infra/db.ts'
import type { Logger } from '../../src/infra/log.ts'
import { round, timeLoop } from './measure.ts'

export async function idpFigures(seconds: number, log: Logger, sql: Sql) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const kid = 'bench-key'
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: (req): Response =>
      new URL(req.url).pathname === '/jwks'
        ? Response.json({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' }] })
        : Response.json({ issuer, jwks_uri: `${issuer}/jwks` }),
  })
  const issuer: string = `http://127.0.0.1:${server.port}`
  try {
    const audience = 'quint-dashboard'
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
    const header = b64({ alg: 'ES256', typ: 'JWT', kid })
    const exp = Math.floor(Date.now() / 1000) + 3600
    // One person, the org's owner; every token is theirs (`jti` makes each one new).
    const email = 'owner@idp-bench.example'
    await createOrg(sql, 'idp bench', 'cli', email)
    const token = (i: number) => {
      const claims = { iss: issuer, aud: audience, sub: 'owner-1', email, email_verified: true, exp, jti: `t${i}` }
      const input = `${header}.${b64(claims)}`
      return `${input}.${sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
    }
    // Enough distinct tokens for every cold call of the measuring time (~20k/s here) and its warm-up.
    const tokens = Array.from({ length: Math.ceil(30_000 * (seconds + 1)) }, (_, i) => token(i))
    const people = new PeopleSignIn(sql, new IdpVerifier({ issuer, audience, clockSkewS: 30 }, log))
    const signIn = (t: string) => people.authenticate(t, {})
    if ((await signIn(tokens[0]!)).principal?.kind !== 'member') throw new Error('idp bench: the person did not sign in')
    const hit = await timeLoop(() => signIn(tokens[0]!), seconds * 1000)
    let next = 1
    const cold = await timeLoop(() => signIn(tokens[next++]!), seconds * 1000)
    if (next >= tokens.length) throw new Error('idp bench: ran out of fresh tokens')
    let r = 1
    const raw = await timeLoop(() => {
      const t = tokens[r++]!
      const dot = t.lastIndexOf('.')
      return verify(
        'sha256',
        Buffer.from(t.slice(0, dot)),
        { key: publicKey, dsaEncoding: 'ieee-p1363' },
        Buffer.from(t.slice(dot + 1), 'base64url'),
      )
    }, seconds * 1000)
    const ratio = cold.p50_us / raw.p50_us
    return {
      figures: {
        'auth.idp_hit_p50_us': round(hit.p50_us, 3),
        'auth.idp_hit_p99_us': round(hit.p99_us, 3),
        'auth.idp_cold_p50_us': round(cold.p50_us, 2),
        'auth.idp_cold_p99_us': round(cold.p99_us, 2),
        'auth.idp_raw_verify_p50_us': round(raw.p50_us, 2),
        'auth.idp_cold_ratio': round(ratio, 3),
      },
      rows: [
        [
          "person's request, cache hit",
          `${round(hit.ops_per_s, 0)} ops/s`,
          `p50 ${round(hit.p50_us, 2)} µs`,
          `p99 ${round(hit.p99_us, 2)} µs (target ≤ 5)`,
        ],
        [
          "person's request, new token",
          `${round(cold.ops_per_s, 0)} ops/s`,
          `p50 ${round(cold.p50_us, 2)} µs`,
          `p99 ${round(cold.p99_us, 2)} µs`,
        ],
        [
          'baseline: ES256 verify, same tokens',
          `${round(raw.ops_per_s, 0)} ops/s`,
          `p50 ${round(raw.p50_us, 2)} µs`,
          `p99 ${round(raw.p99_us, 2)} µs`,
        ],
        ['ratio IdP cold/raw (p50, target ≤ 1.5)', `${round(ratio, 3)}`, '', ''],
      ],
    }
  } finally {
    server.stop(true)
  }
}
