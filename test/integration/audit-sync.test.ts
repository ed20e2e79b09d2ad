/**
 * The public CLI's `sync` (issue 11, SPEC §7.2, §8.5; docs/audit-sync.md) with entries the real
 * CLI signed (test/fixtures/audit-entries-quint-cli.json) and entries signed here the way it signs
 * (Ed25519 from node:crypto, SPKI PEM, canonical JSON): a good chain, a broken chain, a bad
 * signature in the middle and the client's recovery, a replayed nonce; the active policy pull.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { generateKeyPairSync, sign } from 'node:crypto'
import cli from '../fixtures/audit-entries-quint-cli.json'
import { canonical, chainHash } from '../../src/features/audit-sync/verify.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { testApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, testDatabase, type TestDatabase } from '../helpers/db.ts'

let db: TestDatabase
let t: ReturnType<typeof testApp>
let a: CreatedOrg
let b: CreatedOrg

beforeAll(async () => {
  db = await testDatabase()
  t = testApp(db)
  a = await createOrg(db.app, 'sync A', 'cli')
  b = await createOrg(db.app, 'sync B', 'cli')
}, HOOK_TIMEOUT_MS)
afterAll(() => db.drop(), HOOK_TIMEOUT_MS)

type Entry = Record<string, unknown>
const real = cli.body.entries as Entry[]
const post = (entries: unknown[], token = a.deploy_token) => t.call('POST', '/v1/audit/entries', { token, json: { entries } })
const stored = async (org: CreatedOrg, qs = '') =>
  (await t.call('GET', `/v1/audit/entries?limit=200${qs}`, { token: org.admin_key })).body

/** A signing key and a chain of `n` entries signed the way the CLI signs them (risk keys omitted when absent). */
function chain(n: number, over: (i: number) => Entry = () => ({})) {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString()
  let prev = ''
  return Array.from({ length: n }, (_, i) => {
    const e: Entry = {
      timestamp: new Date(Date.UTC(2026, 11, 4, 15, 0, i)).toISOString(),
      server_name: 'fs',
      direction: 'request',
      method: 'tools/call',
      message_id: String(i),
      tool_name: 'read_file',
      arguments_json: JSON.stringify({ path: `/tmp/${i}` }),
      response_json: null,
      verdict: 'allow',
      policy_hash: 'a'.repeat(64),
      prev_hash: prev,
      nonce: crypto.randomUUID(),
      public_key: pem,
      ...over(i),
    }
    const keys = Object.keys(e).filter((k) => !['risk_score', 'risk_level'].includes(k) || e[k] !== null)
    const signature = sign(null, Buffer.from(canonical(e, keys)), privateKey).toString('hex')
    prev = chainHash(signature)
    return { ...e, signature, risk_score: e.risk_score ?? null, risk_level: e.risk_level ?? null } as Entry
  })
}

describe('POST /v1/audit/entries', () => {
  test("the real CLI's nine entries: 200 with their ids; every signature and the whole chain verify", async () => {
    const res = await post(real)
    expect(res.status).toBe(200)
    expect(res.body.ingested).toBe(9)
    expect(res.body.ids).toHaveLength(9)
    expect([...res.body.ids].sort((x: number, y: number) => x - y)).toEqual(res.body.ids)
    const list = await stored(a)
    const mine = list.entries.filter((e: { id: number }) => res.body.ids.includes(e.id))
    expect(mine).toHaveLength(9)
    expect(
      mine.every((e: { chain_verified: boolean; signature_verified: boolean }) => e.chain_verified && e.signature_verified),
    ).toBe(true)
    // Stored exactly as sent.
    const first = mine.find((e: { id: number }) => e.id === res.body.ids[0])
    expect(first.entry).toEqual(real[0])
    // Org B sees none of it.
    expect((await stored(b)).entries).toEqual([])
  })

  test('a replayed nonce is a 409 naming its index and nonce; nothing of the batch is stored', async () => {
    const fresh = chain(2)
    const res = await post([...fresh, real[3]])
    expect(res.status).toBe(409)
    expect(res.body).toMatchObject({ index: 2, nonce: real[3]!.nonce, error: expect.any(String) })
    const again = await post([fresh[0], fresh[0]])
    expect(again.status).toBe(409)
    expect(again.body).toMatchObject({ index: 1, nonce: fresh[0]!.nonce })
    const nonces = (await stored(a)).entries.map((e: { entry: Entry }) => e.entry.nonce)
    expect(nonces).not.toContain(fresh[0]!.nonce)
  })

  test('a bad signature in the middle: 400 at its index; the client posts the ones before, skips it, posts the rest', async () => {
    const entries = chain(6)
    const tampered = [...entries]
    tampered[3] = { ...entries[3]!, arguments_json: '{"path":"/etc/shadow"}' }
    const res = await post(tampered)
    expect(res.status).toBe(400)
    expect(res.body).toMatchObject({ index: 3, error: 'invalid signature' })
    // What the TS client does next.
    expect((await post(tampered.slice(0, 3))).status).toBe(200)
    const rest = await post(tampered.slice(4))
    expect(rest.status).toBe(200)
    const byNonce = new Map(
      (await stored(a)).entries.map((e: { entry: Entry; chain_verified: boolean }) => [e.entry.nonce, e.chain_verified]),
    )
    // The chain verifies up to the gap; the entry after it cannot; the one after that chains to it.
    expect(entries.map((e) => byNonce.get(e.nonce as string))).toEqual([true, true, true, undefined, false, true])
    expect((await stored(a, '&chain_verified=false')).entries.map((e: { entry: Entry }) => e.entry.nonce)).toContain(
      entries[4]!.nonce,
    )
  })

  test('the Go proxy variant (risk and agent keys signed as null) and risk values verify too', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519')
    const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString()
    const e: Entry = {
      ...chain(1)[0],
      public_key: pem,
      risk_score: null,
      risk_level: null,
      agent_id: null,
      agent_name: null,
      nonce: crypto.randomUUID(),
      prev_hash: '',
    }
    delete e.signature
    const goSigned = { ...e, signature: sign(null, Buffer.from(canonical(e, Object.keys(e))), privateKey).toString('hex') }
    const risky = chain(1, () => ({ risk_score: 80, risk_level: 'high', verdict: 'deny' }))[0]!
    const res = await post([goSigned, risky])
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 200, body: { ingested: 2 } })
  })

  test('bad entries are a 400 with their index, bad envelopes a problem; never a 500', async () => {
    const good = chain(1)[0]!
    const cases: [unknown, number][] = [
      [{ ...good, signature: 'zz' }, 0],
      [{ ...good, public_key: 'not a key' }, 0],
      [{ ...good, prev_hash: 'nope' }, 0],
      [{ ...good, nonce: '' }, 0],
      [{ ...good, risk_score: 'high' }, 0],
      ['just a string', 0],
    ]
    for (const [entry, index] of cases) {
      const res = await post([entry])
      expect({ entry, status: res.status, index: res.body.index }).toEqual({ entry, status: 400, index })
    }
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'pem', type: 'spki' }).toString()
    expect((await post([{ ...good, public_key: rsa }])).body.index).toBe(0)
    expect((await t.call('POST', '/v1/audit/entries', { token: a.deploy_token, json: { entries: 'x' } })).status).toBe(422)
    expect((await post(Array.from({ length: 501 }, () => good))).status).toBe(422)
    const notJson = await t.call('POST', '/v1/audit/entries', {
      token: a.deploy_token,
      body: '{"entries":[',
      headers: { 'content-type': 'application/json' },
    })
    expect(notJson.status).toBe(400)
    expect(notJson.headers.get('content-type')).toBe('application/problem+json')
  })

  test('who may: machines and the admin key sync; people and readers read; a deploy token does not read', async () => {
    const reader = (
      await t.call('POST', '/v1/tokens', { token: a.admin_key, json: { kind: 'service', name: 'r', scopes: ['read'] } })
    ).body.token as string
    expect((await post(chain(1), reader)).status).toBe(403)
    expect((await post(chain(1), a.admin_key)).status).toBe(200)
    expect((await t.call('GET', '/v1/audit/entries', { token: reader })).status).toBe(200)
    expect((await t.call('GET', '/v1/audit/entries', { token: a.deploy_token })).status).toBe(403)
  })
})

describe('GET/PUT /v1/policies/active', () => {
  test('404 until set; then the config with an ETag, 304 on it; each PUT a new version, audited', async () => {
    const get = (headers: Record<string, string> = {}, token = a.deploy_token) =>
      t.call('GET', '/v1/policies/active', { token, headers })
    expect((await get()).status).toBe(404)
    const config = {
      version: 1,
      log_level: 'info',
      servers: [{ server: 'fs', default_action: 'allow', tools: [{ tool: 'delete_*', action: 'deny' }] }],
    }
    const put = await t.call('PUT', '/v1/policies/active', { token: a.admin_key, json: { name: 'default', config_json: config } })
    expect(put.body).toEqual({ name: 'default', version: 1, config_json: config })
    const first = await get()
    expect(first.body).toEqual({ name: 'default', version: 1, config_json: config })
    const etag = first.headers.get('etag')!
    expect(etag).toMatch(/^[0-9a-f]{64}$/)
    expect((await get({ 'if-none-match': etag })).status).toBe(304)
    const changed = await t.call('PUT', '/v1/policies/active', {
      token: a.admin_key,
      json: { name: 'default', config_json: { ...config, log_level: 'debug' } },
    })
    expect(changed.body.version).toBe(2)
    const second = await get({ 'if-none-match': etag })
    expect(second.status).toBe(200)
    expect(second.body.config_json.log_level).toBe('debug')
    expect((await get({}, b.deploy_token)).status).toBe(404)
    expect(
      (await t.call('PUT', '/v1/policies/active', { token: a.deploy_token, json: { name: 'x', config_json: {} } })).status,
    ).toBe(403)
    expect(
      (await t.call('PUT', '/v1/policies/active', { token: a.admin_key, json: { name: 'x', config_json: [] } })).status,
    ).toBe(422)
    const audit = await db.owner<{ details: Record<string, any> }[]>`
      select details from audit_log where org_id = ${a.org_id} and action = 'policy_config.update' order by id`
    expect(audit.map((r) => r.details.after.version)).toEqual([1, 2])
    expect(audit[1]!.details.before.config_json.log_level).toBe('info')
    // Not a policy id: the enforcement policies' routes are not confused by it.
    expect((await t.call('DELETE', '/v1/policies/active', { token: a.admin_key })).status).toBe(404)
  })
})

describe('entries the database could not hold as jsonb', () => {
  test('a signed entry with \\u0000 and lone surrogates in its arguments is stored exactly and read back', async () => {
    const [e] = chain(1, () => ({ arguments_json: '{"x":"a\u0000b\ud800"}' }))
    const res = await post([e])
    expect(res.status).toBe(200)
    const back = (await stored(a)).entries.find((x: { id: number }) => x.id === res.body.ids[0])
    expect(back.entry.arguments_json).toBe('{"x":"a\u0000b\ud800"}')
  })
})

describe('what a hostile sender tries (review, issue 11)', () => {
  test('a small-order public key forges nothing: with the identity point, any message "verifies" elsewhere', async () => {
    const identity = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from('01'.padEnd(64, '0'), 'hex')])
    const pem = `-----BEGIN PUBLIC KEY-----\n${identity.toString('base64')}\n-----END PUBLIC KEY-----\n`
    const [good] = chain(1)
    const forged = { ...good, public_key: pem, signature: '01'.padEnd(64, '0') + '0'.repeat(64) }
    const res = await post([forged])
    expect({ status: res.status, index: res.body.index }).toEqual({ status: 400, index: 0 })
  })

  test('a private key, or a PEM with anything around it, is not a public key: refused, never stored', async () => {
    const { privateKey } = generateKeyPairSync('ed25519')
    const [good] = chain(1)
    const priv = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
    for (const public_key of [priv, `junk\n${good!.public_key}`]) {
      const res = await post([{ ...good, public_key }])
      expect({ status: res.status, index: res.body.index }).toEqual({ status: 400, index: 0 })
    }
    expect(JSON.stringify(await stored(a))).not.toContain('PRIVATE KEY')
  })

  test('fields the client did not sign are not kept; nonces are plain tokens', async () => {
    const [e] = chain(1)
    const res = await post([{ ...e, machine_id: 'spoofed', signature_verified: false }])
    expect(res.status).toBe(200)
    const back = (await stored(a)).entries.find((x: { id: number }) => x.id === res.body.ids[0])
    expect(back.entry).not.toHaveProperty('machine_id')
    expect(back.entry).not.toHaveProperty('signature_verified')
    for (const nonce of ['a\u0000b', '\ud800', 'has space']) {
      expect((await post([{ ...chain(1)[0], nonce }])).status).toBe(400)
    }
  })

  test('the same nonce from many keys at once: one 200, the rest 409, never a 500', async () => {
    const nonce = crypto.randomUUID()
    const all = await Promise.all(Array.from({ length: 8 }, () => post(chain(1, () => ({ nonce })))))
    expect(all.map((r) => r.status).sort()).toEqual([200, 409, 409, 409, 409, 409, 409, 409])
  })

  test('an active config Postgres could not hold as sent is a 422, never a 500', async () => {
    for (const config_json of ['{"a":"x\\u0000y"}', '{"a":"\\ud800"}', '{"nested":{"n":1e400}}']) {
      const res = await t.call('PUT', '/v1/policies/active', {
        token: a.admin_key,
        body: `{"name":"p","config_json":${config_json}}`,
        headers: { 'content-type': 'application/json' },
      })
      expect({ config_json, status: res.status }).toEqual({ config_json, status: 422 })
    }
  })
})
