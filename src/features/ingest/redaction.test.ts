import { describe, expect, test } from 'bun:test'
import { redactString } from './redaction.ts'

const PEM = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----'

describe('redactString', () => {
  test.each([
    ['aws_access_key', 'export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE', 'AKIAIOSFODNN7EXAMPLE'],
    [
      'aws_secret_key',
      'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    ],
    ['gcp_api_key', 'key=AIzaSyA1234567890abcdefghijklmnopqrstuv', 'AIzaSyA1234567890abcdefghijklmnopqrstuv'],
    [
      'github_token',
      'git clone https://x:ghp_abcdefghijklmnopqrstuvwxyz0123456789AB@github.com/o/r',
      'ghp_abcdefghijklmnopqrstuvwxyz0123456789AB',
    ],
    [
      'github_token',
      'GH_TOKEN=github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz',
      'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz',
    ],
    ['gitlab_token', 'token glpat-abcdefghij1234567890', 'glpat-abcdefghij1234567890'],
    ['slack_token', 'SLACK=xoxb-123456789012-abcdefABCDEF', 'xoxb-123456789012-abcdefABCDEF'],
    ['stripe_key', 'sk_live_abcdefghijklmnop1234', 'sk_live_abcdefghijklmnop1234'],
    [
      'llm_api_key',
      'ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789',
      'sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789',
    ],
    [
      'quint_token',
      'Authorization: Bearer qt_deploy_9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c',
      'qt_deploy_9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c',
    ],
    ['quint_token', 'key qk_' + 'a'.repeat(64), 'a'.repeat(64)],
    [
      'jwt',
      'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
      'dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
    ],
    ['url_password', 'psql postgres://admin:hunter2@db.internal:5432/prod', 'hunter2'],
    ['private_key', `cat id_rsa\n${PEM}\ndone`, 'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ'],
  ])('%s', (kind, text, secret) => {
    const r = redactString(text)
    expect(r.text).not.toContain(secret)
    expect(r.text).toContain(`[REDACTED:${kind}]`)
    expect(r.count).toBeGreaterThanOrEqual(1)
  })

  test.each([
    'ls -la ~/.aws',
    'git commit -m "fix: sk-short"',
    'sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    'uuid 550e8400-e29b-41d4-a716-446655440000',
    'https://example.com/path?q=1',
    'akiaiosfodnn7example in lower case',
    'user@example.com',
  ])('leaves ordinary text alone: %s', (text) => {
    expect(redactString(text)).toEqual({ text, count: 0 })
  })

  test('counts every secret in a string', () => {
    const r = redactString('AKIAIOSFODNN7EXAMPLE and AKIAIOSFODNN7EXAMPLF and postgres://u:p4ss@h/db')
    expect(r.count).toBe(3)
  })
})

describe('secrets by name (issue 14)', () => {
  test.each([
    ['DB_PASSWORD=hunter2', 'hunter2', 'secret_assignment'],
    ['password: "a b c d"', 'a b c d', 'secret_assignment'],
    ['--token f00dfeed', 'f00dfeed', 'secret_assignment'],
    ['Authorization: Bearer f00dfeed', 'f00dfeed', 'authorization'],
    ['access_token=ya29.a0AfH6SMB', 'ya29.a0AfH6SMB', 'secret_assignment'],
  ])('%s', (text, secret, kind) => {
    const counts = {}
    const r = redactString(text, counts)
    expect(r.text).not.toContain(secret)
    expect(counts).toEqual({ [kind]: 1 })
  })

  test('a known shape inside an assignment or a URL is counted once, under its own kind', () => {
    const counts = {}
    const token = 'ghp_abcdefghijklmnopqrstuvwxyz0123456789AB'
    expect(redactString(`GH=${token} https://x:${token}@h`, counts).count).toBe(2)
    expect(counts).toEqual({ github_token: 2 })
  })

  test.each(['max_tokens=4096', 'PWD=/home/x', 'docker login --password-stdin', 'token = getToken()', 'password: string'])(
    'look-alike survives: %s',
    (text) => expect(redactString(text)).toEqual({ text, count: 0 }),
  )

  test('a PEM block cut short is redacted to the end of the text', () => {
    expect(redactString('-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B').text).toBe('[REDACTED:private_key]')
  })
})
