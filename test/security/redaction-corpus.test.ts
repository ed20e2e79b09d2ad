/**
 * Secrets in free-form event content (issue 14, item 10): a corpus of real-looking secrets that
 * must not be stored, and of look-alikes that must survive untouched; the same through the three
 * ingest shapes into Postgres, counted per event, per org (`org_ingest_stats`) and in the
 * metrics; and every pattern bounded in time on hostile strings (the old combined pattern took
 * about 10 s on 128 KiB).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { CreatedOrg } from '../../src/features/orgs/service.ts'
import { normalizeIngestItem } from '../../src/features/ingest/events.ts'
import { storeEvents } from '../../src/features/actions/store.ts'
import { redactString } from '../../src/features/ingest/redaction.ts'
import { acceptEvents } from '../../src/features/ingest/service.ts'
import { LocalBus } from '../../src/bus/bus.ts'
import { OrgRateLimiter } from '../../src/features/ingest/rate-limit.ts'
import { createMetrics } from '../../src/infra/metrics.ts'
import { drainOnce } from '../../src/bus/consume-local.ts'
import { testApp, twoOrgApp } from '../helpers/app.ts'
import { HOOK_TIMEOUT_MS, type TestDatabase } from '../helpers/db.ts'
import { v2Event } from '../helpers/events.ts'

/** [text, the secret in it]: after redaction the secret must be gone. */
const SECRETS: [string, string][] = [
  ['DB_PASSWORD=hunter2-Xk9q', 'hunter2-Xk9q'],
  ['export MYSQL_PWD=s3cr3tPass', 's3cr3tPass'],
  ['password: correct-horse-battery', 'correct-horse-battery'],
  ['{"user":"app","password": "Tr0ub4dor&3"}', 'Tr0ub4dor&3'],
  ["client_secret='abcDEF123456'", 'abcDEF123456'],
  ['SECRET_KEY_BASE=9f8e7d6c5b4a39281706f5e4d3c2b1a0', '9f8e7d6c5b4a39281706f5e4d3c2b1a0'],
  ['api_key=live_51HqLyjWDarjtT1zdp7dc', 'live_51HqLyjWDarjtT1zdp7dc'],
  ['X-Api-Key: 3c9a8f1e2d4b7a6c', '3c9a8f1e2d4b7a6c'],
  ['const config = { apiKey: "AbCdEf012345", region }', 'AbCdEf012345'],
  ['spring.datasource.password=p@ssw0rd!', 'p@ssw0rd!'],
  ['mysql -u root --password hunter2x', 'hunter2x'],
  ['docker login -u me --password=Sup3rS3cret', 'Sup3rS3cret'],
  ['SLACK_BOT_TOKEN=7d1f0a2b3c4d5e6f', '7d1f0a2b3c4d5e6f'],
  ['auth_token: "f00dfeedcafe"', 'f00dfeedcafe'],
  ['secret = "corp.internal.pass"', 'corp.internal.pass'],
  ['curl -H "Authorization: Bearer abc.def.ghi123" https://api', 'abc.def.ghi123'],
  ['Authorization: Basic dXNlcjpwYXNzd29yZA==', 'dXNlcjpwYXNzd29yZA=='],
  ['authorization: token 0123456789abcdef', '0123456789abcdef'],
  ['{"headers":{"Authorization":"Bearer sk_test_4eC39HqLyjWDarjt"}}', 'sk_test_4eC39HqLyjWDarjt'],
  ['Proxy-Authorization: Digest username="u", response="6629fae49393a05397450978507c4ef1"', '6629fae49393a05397450978507c4ef1'],
  ['psql postgres://admin:hunter2@db.internal:5432/prod', 'hunter2'],
  ['mongodb+srv://svc:p%40ss4u@cluster0.mongodb.net/app', 'p%40ss4u'],
  ['redis://:r3dispass@cache:6379/0', 'r3dispass'],
  ['amqp://guest:gu@st99@rabbit:5672/', 'gu@st99'],
  ['Server=db;User Id=sa;Password=Pa55w0rd;Encrypt=true', 'Pa55w0rd'],
  ['host=db user=app password=hunter3 dbname=x', 'hunter3'],
  ['DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc123XYZ==;', 'abc123XYZ=='],
  ['jdbc:mysql://db/app?user=root&password=r00tpw&ssl=true', 'r00tpw'],
  ['GET https://api.example.com/v1?access_token=ya29.a0AfH6SMB&x=1', 'ya29.a0AfH6SMB'],
  ['aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'],
  ['GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789AB', 'ghp_abcdefghijklmnopqrstuvwxyz0123456789AB'],
  // Issue 14, second review: secrets that still got through.
  ['PGPASSWORD=s3cr3tpw psql -h db', 's3cr3tpw'],
  ['DBPASSWORD=dbPw-77a1', 'dbPw-77a1'],
  ['REDISPASSWORD=r3d1sPw99 redis-cli', 'r3d1sPw99'],
  ['export APITOKEN=apiT0k3n5678', 'apiT0k3n5678'],
  ['AUTHTOKEN=4uthT0ken321', '4uthT0ken321'],
  ['{\\"user\\": \\"app\\", \\"password\\": \\"hunter2xyz\\"}', 'hunter2xyz'],
  ["{'password' => 'rubyPw-4411'}", 'rubyPw-4411'],
  [':password => "symPw-9911"', 'symPw-9911'],
  ['Authorization: Bearer\tabcdef123456', 'abcdef123456'],
  ['password: tall horse staple', 'horse staple'],
  ['password: correct.horse.battery', 'correct.horse.battery'],
  ['secret: my.very.secret', 'my.very.secret'],
  ['postgresql://user:p4ss/w0rd@db/app', 'w0rd'],
  ['mysql -u root -phunter2xyz -e "select 1"', 'hunter2xyz'],
  ['sshpass -p sshPw-6622 ssh deploy@host', 'sshPw-6622'],
  ['<settings><password>mvnPw-3344</password></settings>', 'mvnPw-3344'],
  // Last: a key cut short is redacted to the end of the text (the joined test below).
  ['-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\n(truncated output', 'MIIEowIBAAKCAQEA7bq'],
]

/** Text that looks like a secret assignment but is not one: must survive unchanged. */
const LOOK_ALIKES = [
  // Dependency names that end in a secret word, and struct fields typed as such (final review).
  '"jsonwebtoken": "^9.0.2"',
  'jsonwebtoken = "9.3.0"',
  'pub password: Option<String>,',
  'max_tokens=4096',
  'tokens: 1500',
  'token_count=12',
  'token: 42',
  'token_type: Bearer',
  'tokenizer: cl100k_base',
  'PWD=/home/alice/project',
  'OLDPWD=/tmp',
  'password_policy=strict',
  'PASSWORD_FILE=/run/secrets/db',
  'docker login --password-stdin < pw.txt',
  'export DB_PASSWORD=$DB_PASSWORD_FROM_VAULT',
  'password: ${DB_PASSWORD}',
  'set PASSWORD=%DB_PASS%',
  'token = os.environ["GITHUB_TOKEN"]',
  'const token = getToken()',
  'const secret = process.env.APP_SECRET',
  'password: config.password',
  'function login(user: User, password: string): boolean',
  'secret: <your-secret-here>',
  'password=******',
  'Authorization: Bearer $TOKEN',
  'curl -H "Authorization: Bearer ${API_TOKEN}" https://api',
  'monkey=banana keyboard: us primary_key=id sort_key: created_at',
  'secret_name: prod/db',
  'passed=12 failed=0 bypass=true compass: north',
  'password reset email sent to user@example.com',
  'Password:',
  'git@github.com:org/repo.git',
  'ssh://git@github.com/org/repo',
  'http://localhost:8080/health?verbose=1',
  'sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  'uuid 550e8400-e29b-41d4-a716-446655440000',
  // Issue 14, second review: test runners' and lexers' output, and code, are not secrets.
  '--- PASS: TestParseConfig (0.00s)\n--- FAIL: TestX (0.01s)',
  'PASS: test_login.py::test_ok',
  'Pass: 120 Fail: 3',
  'TESTS_PASS: 120',
  'Token: IDENT at line 3',
  'secret: process.env.APP_SECRET',
  'password: settings.DB_PASSWORD',
  'token: getToken()',
  'password = Summer.Time',
  'users.map(password => hash(password))',
  'npm i http://registry.local:8080/@scope/pkg',
  'mkdir -p /tmp/x && cp -p a b',
  'mysql -u root -p -h db',
  'mysql -u root -p$MYSQL_PWD',
  '<password>${DB_PASSWORD}</password>',
  'bypass=true compass: north',
]

describe('the corpus, string by string', () => {
  test.each(SECRETS)('redacted: %s', (text, secret) => {
    const r = redactString(text)
    expect(r.text).not.toContain(secret)
    expect(r.text).toMatch(/\[REDACTED:[a-z_]+\]/)
    expect(r.count).toBe(1)
  })

  test.each(LOOK_ALIKES)('survives: %s', (text) => {
    expect(redactString(text)).toEqual({ text, count: 0 })
  })

  test('several secrets in one output are all redacted and counted', () => {
    const r = redactString(SECRETS.map(([t]) => t).join('\n'))
    for (const [, secret] of SECRETS) expect(r.text).not.toContain(secret)
    expect(r.count).toBe(SECRETS.length)
  })
})

describe('secret-named fields in structured content', () => {
  const NOW = Date.now()
  test('a field named like a secret has its value replaced, in arguments, labels and unknown fields', () => {
    const r = normalizeIngestItem(
      v2Event({
        arguments_json: JSON.stringify({
          user: 'app',
          password: 'hunter2',
          argv: ['deploy', '--token', 'f00dfeed1234'],
          max_tokens: 4096,
        }),
        labels: { api_key: 'k-123456', team: 'core' },
        db: { clientSecret: 'cs-998877', secret_name: 'prod/db', pin_token: 123456 },
      }),
      '/events/0',
      NOW,
    )
    if (!r.ok) throw new Error(r.reason)
    const stored = JSON.stringify(r.event)
    for (const s of ['hunter2', 'f00dfeed1234', 'k-123456', 'cs-998877', '123456']) expect(stored).not.toContain(s)
    const hidden = '[REDACTED:secret_field]'
    expect(r.event.arguments).toEqual({ user: 'app', password: hidden, argv: ['deploy', '--token', hidden], max_tokens: 4096 })
    expect(r.event.labels).toEqual({ api_key: '[REDACTED:secret_field]', team: 'core' })
    expect(r.event.extra).toEqual({ db: { clientSecret: hidden, secret_name: 'prod/db', pin_token: hidden } })
    expect(r.event.redactions).toBe(5)
  })

  test('one-word secret names, and everything under a secret name: arrays and nested objects (issue 14)', () => {
    const r = normalizeIngestItem(
      v2Event({
        arguments_json: JSON.stringify({
          env: { PGPASSWORD: 'pgsecret99', PGHOST: 'db' },
          password: ['hunter2xyz', 'second-pw-1'],
          token: { value: 'tok-55aa66bb', expires: 3600, kind: '***' },
        }),
        labels: { PASS: '120', FAIL: '3' },
      }),
      '/events/0',
      NOW,
    )
    if (!r.ok) throw new Error(r.reason)
    const stored = JSON.stringify(r.event)
    for (const s of ['pgsecret99', 'hunter2xyz', 'second-pw-1', 'tok-55aa66bb', '3600']) expect(stored).not.toContain(s)
    const hidden = '[REDACTED:secret_field]'
    expect(r.event.arguments).toEqual({
      env: { PGPASSWORD: hidden, PGHOST: 'db' },
      password: [hidden, hidden],
      token: { value: hidden, expires: hidden, kind: '***' },
    })
    // A test runner's count under PASS is not a password.
    expect(r.event.labels).toEqual({ PASS: '120', FAIL: '3' })
    expect(r.event.redactions).toBe(5)
  })

  test('placeholders under secret names survive', () => {
    const r = normalizeIngestItem(v2Event({ labels: { password: '${DB_PASSWORD}', token: '***', secret: '' } }), '', NOW)
    if (!r.ok) throw new Error(r.reason)
    expect(r.event.labels).toEqual({ password: '${DB_PASSWORD}', token: '***', secret: '' })
    expect(r.event.redactions).toBe(0)
  })
})

describe('hostile strings are redacted in bounded time', () => {
  const N = 256 * 1024
  test.each([
    ['spaces after an anchor', `sk- ${' '.repeat(N)}`],
    ['repeated PEM headers', '-----BEGIN RSA PRIVATE KEY-----'.repeat(N / 31)],
    ['JWT-looking runs', 'eyJ-'.repeat(N / 4)],
    ['assignments everywhere', 'password=abcdef '.repeat(N / 16)],
    ['long flags', '--token '.repeat(N / 8)],
    ['URL-looking runs', 'x://a:'.repeat(N / 6)],
    ['Authorization headers', 'Authorization: Bearer '.repeat(N / 22)],
  ])('%s (256 KiB)', (_name, text) => {
    const started = performance.now()
    redactString(text)
    // About 40 s before the fix for the first case; a few ms after. Generous for shared machines.
    expect(performance.now() - started).toBeLessThan(2_000)
  })

  // Issue 14, second review: a placeholder after a secret name was read (up to 4 KiB) and read
  // again from the next assignment 6 characters on: 'pass=$' over 1 MB held the server 2.3 s.
  // One adversarial repetition per kind of pattern and loop, 1 MB each. Measured after the fix:
  // at most about 150 ms each (most under 50 ms); before it, 1.0 to 1.2 s for the first two.
  // The bound is 5x the worst measured, far below what a quadratic loop needs.
  const MB = 1024 * 1024
  const fill = (unit: string) => unit.repeat(Math.ceil(MB / unit.length))
  test.each([
    ['placeholder after =', fill('password=$')],
    ['placeholder after = (short name)', fill('token=$')],
    ['placeholder after : and a space', fill('password: $')],
    ['quoted placeholder', fill('password="$')],
    ['single-quoted placeholder', fill("secret: '$")],
    ['escaped-quote placeholder', fill('\\"password\\": \\"$')],
    ['=> placeholder', fill("'password' => '$")],
    ['one-word secret name', fill('PGPASSWORD=$')],
    ['Authorization placeholder', fill('Authorization: Bearer $')],
    ['Authorization, tab', fill('authorization:x\t$')],
    ['Authorization without a scheme', fill('Authorization: ')],
    ['long flags with placeholders', fill('--password $')],
    ['rest-of-line values', fill('password: a b c d ')],
    ['dotted values', fill('secret: a.b.c.d ')],
    ['lexer tokens', fill('Token: IDENT ')],
    ['URL-looking runs', fill('a://b:')],
    ['URL passwords with slashes', fill('a://b:c/d/e/f/')],
    ['URL user and password at their limits', fill(`a://${'b'.repeat(250)}:${'c/'.repeat(125)} `)],
    ['long names', fill(`${'a'.repeat(200)}=`)],
    ['= runs', `token${'='.repeat(MB)}`],
    ['XML elements', fill('<password>')],
    ['XML element text', fill('<password>aaaaaaaaaaaa ')],
    ['mysql lines', fill('mysql -p -p -p ')],
    ['sshpass', fill('sshpass -p ')],
    ['PEM headers', fill('-----BEGIN PRIVATE KEY-----')],
    ['aws secret names', fill('aws_secret_access_key=')],
    ['JWT-looking runs', fill('eyJaaaaaaaaaa.')],
  ])('%s (1 MB)', (_name, text) => {
    const started = performance.now()
    redactString(text)
    expect(performance.now() - started).toBeLessThan(750)
  })
})

describe('through ingest into Postgres, counted per event, per org and in the metrics', () => {
  let db: TestDatabase
  let t: ReturnType<typeof testApp>
  let a: CreatedOrg
  let b: CreatedOrg
  let machine: string
  beforeAll(async () => {
    ;({ db, t, a, b } = await twoOrgApp())
    const r = await t.call('POST', '/v1/machines/register', {
      token: a.deploy_token,
      json: { machine_id: 'd'.repeat(32), hostname: 'h', os: 'linux', arch: 'x64', agent_version: '0.10.0' },
    })
    machine = r.body.machine_id
  }, HOOK_TIMEOUT_MS)
  afterAll(async () => {
    await db.drop()
  }, HOOK_TIMEOUT_MS)

  const pipeline = () => drainOnce(db.app, 'pipeline', storeEvents)
  const orgRedactions = async (org: string) => {
    const [r] = await db.owner<
      { n: string | null }[]
    >`select sum(redactions)::text as n from org_ingest_stats where org_id = ${org}`
    return Number(r!.n ?? 0)
  }

  test('the reported daemon event: DB_PASSWORD in metadata.result is not stored, and the org counts it', async () => {
    const before = await orgRedactions(a.org_id)
    const otherBefore = await orgRedactions(b.org_id)
    const event = {
      event_id: `evt-${Date.now()}`,
      action: 'tool:Bash',
      agent: 'claude-code',
      timestamp: new Date().toISOString(),
      metadata: {
        args: JSON.stringify({ command: 'cat .env' }),
        result: 'DB_PASSWORD=hunter2-Xk9q\nDB_HOST=db.internal\nAPI_TOKEN: "tok_51Hq8sLyjW"\nmax_tokens=4096',
      },
    }
    const res = await t.call('POST', `/v1/machines/${machine}/events`, { token: a.deploy_token, json: { events: [event] } })
    expect(res.status).toBe(200)
    expect(res.body.accepted).toBe(1)
    await pipeline()
    const [row] = await db.owner<{ labels: Record<string, string>; redacted: boolean }[]>`
      select labels, redacted from actions where org_id = ${a.org_id} and machine_id = ${machine} and event_id = ${event.event_id}`
    expect(row!.redacted).toBe(true)
    expect(row!.labels.result).toBe(
      'DB_PASSWORD=[REDACTED:secret_assignment]\nDB_HOST=db.internal\nAPI_TOKEN: "[REDACTED:secret_assignment]"\nmax_tokens=4096',
    )
    expect((await orgRedactions(a.org_id)) - before).toBe(2)
    expect(await orgRedactions(b.org_id)).toBe(otherBefore)
  })

  test('the API-reference and v2 shapes: arguments, labels and descriptive fields', async () => {
    const before = await orgRedactions(a.org_id)
    const api = {
      event_id: `api-${crypto.randomUUID()}`,
      action_type: 'PROCESS_EXEC',
      tool_name: 'psql',
      arguments: ['postgres://app:pw4prod@db/x', '--password', 'hunter2', '-c', 'select 1'],
      labels: { note: 'Authorization: Bearer abcdef123456' },
    }
    const v2 = v2Event({ action: 'curl -u admin:x https://h -H "X-Auth-Token: 77aa88bb99cc"' })
    expect((await t.call('POST', '/v1/events/ingest', { token: a.deploy_token, json: { events: [api] } })).status).toBe(200)
    expect((await t.call('POST', '/v1/ingest', { token: a.deploy_token, json: { events: [v2] } })).status).toBe(200)
    await pipeline()
    const rows = await db.owner<{ arguments: unknown; labels: unknown; action: string | null }[]>`
      select arguments, labels, action from actions where org_id = ${a.org_id} and event_id in (${api.event_id}, ${v2.event_id})`
    const stored = JSON.stringify(rows)
    for (const s of ['pw4prod', 'hunter2', 'abcdef123456', '77aa88bb99cc']) expect(stored).not.toContain(s)
    expect((await orgRedactions(a.org_id)) - before).toBe(4)
  })

  test('the outcome and redaction counters (service level; promtool clean where installed)', async () => {
    const metrics = createMetrics()
    const deps = { sql: db.app, bus: new LocalBus(), limiter: new OrgRateLimiter(0, 0), metrics }
    const now = Date.now()
    const good = v2Event({ labels: { env: 'DB_PASSWORD=hunter2-Xk9q' } })
    const items = [
      normalizeIngestItem(good, '/events/0', now),
      normalizeIngestItem(good, '/events/1', now),
      normalizeIngestItem(v2Event({ timestamp: 'yesterday' }), '/events/2', now),
      normalizeIngestItem(
        JSON.parse(`{"schema_version":2,"event_id":"d1","x":${'['.repeat(40)}${']'.repeat(40)}}`),
        '/events/3',
        now,
      ),
    ]
    const out = await acceptEvents(deps, a.org_id, items, null)
    expect(out).toMatchObject({ accepted: 1, duplicates: 1, rejected: 2 })
    const text = await metrics.registry.metrics()
    expect(text).toContain('quint_ingest_events_total{outcome="accepted"} 1')
    expect(text).toContain('quint_ingest_events_total{outcome="duplicate"} 1')
    expect(text).toContain('quint_ingest_events_total{outcome="rejected"} 2')
    expect(text).toContain('quint_ingest_rejected_total{reason="invalid_timestamp"} 1')
    expect(text).toContain('quint_ingest_rejected_total{reason="too_deep"} 1')
    expect(text).toContain('quint_ingest_rejected_total{reason="wrong_type"} 0')
    expect(text).toContain('quint_ingest_redactions_total{kind="secret_assignment"} 1')
    // Bounded labels: no free text, no org.
    expect(text).not.toContain(a.org_id)
    expect(text).not.toMatch(/quint_ingest_[a-z_]+\{[^}]*reason="[^"]* [^"]*"/)

    const promtool = Bun.which('promtool')
    if (!promtool) return
    const ours = text
      .split('\n# HELP ')
      .filter((block) => block.startsWith('quint_ingest_'))
      .map((block) => `# HELP ${block}`)
      .join('\n')
    expect(ours).toContain('quint_ingest_redactions_total')
    const stdin = new TextEncoder().encode(`${ours.trimEnd()}\n`)
    const proc = Bun.spawn([promtool, 'check', 'metrics'], { stdin, stdout: 'pipe', stderr: 'pipe' })
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ])
    expect({ code, stdout, stderr }).toEqual({ code: 0, stdout: '', stderr: '' })
  })
})
