import { describe, expect, test } from 'bun:test'
import path from 'node:path'
import { configMarkdown, ConfigError, loadConfig } from './config.ts'

describe('loadConfig', () => {
  test('defaults: embedded database, port 8000, frozen', () => {
    const c = loadConfig({}, '/srv/app')
    expect(c.PORT).toBe(8000)
    expect(c.DATABASE_URL).toBeUndefined()
    expect(c.dataDir).toBe('/srv/app/.quint')
    expect(c.bootstrapOrg).toBe('default')
    expect(Object.isFrozen(c)).toBe(true)
  })

  test('converts strings, treats empty values as unset, resolves the data dir', () => {
    const c = loadConfig({ PORT: '9001', DATABASE_POOL_MAX: '', QUINT_DATA_DIR: 'data', QUINT_BOOTSTRAP_ORG: '' }, '/x')
    expect(c.PORT).toBe(9001)
    expect(c.DATABASE_POOL_MAX).toBe(10)
    expect(c.dataDir).toBe(path.resolve('/x', 'data'))
    expect(c.bootstrapOrg).toBeNull()
  })

  test('from the filesystem root a relative data dir goes under the home directory, never /.quint', () => {
    expect(loadConfig({ HOME: '/home/op' }, '/').dataDir).toBe('/home/op/.quint')
    expect(loadConfig({ HOME: '/home/op', QUINT_DATA_DIR: '/var/lib/q' }, '/').dataDir).toBe('/var/lib/q')
    expect(loadConfig({ HOME: '/home/op' }, '/srv').dataDir).toBe('/srv/.quint')
    // A uid with no passwd entry gets HOME=/ (docker run --user): refuse rather than write /.quint.
    expect(() => loadConfig({ HOME: '/' }, '/')).toThrow(/QUINT_DATA_DIR: relative/)
    expect(loadConfig({ HOME: '/', QUINT_DATA_DIR: '/data' }, '/').dataDir).toBe('/data')
    // Only the root-and-root case: a relative dir elsewhere is the working directory's.
    expect(loadConfig({ HOME: '/', QUINT_DATA_DIR: '.' }, '/tmp').dataDir).toBe('/tmp')
  })

  test('a drain delay past half the shutdown deadline is refused', () => {
    expect(() => loadConfig({ SHUTDOWN_TIMEOUT_MS: '2000', SHUTDOWN_DRAIN_DELAY_MS: '3000' })).toThrow(/SHUTDOWN_DRAIN_DELAY_MS/)
    expect(loadConfig({ SHUTDOWN_TIMEOUT_MS: '2000', SHUTDOWN_DRAIN_DELAY_MS: '1000' }).SHUTDOWN_DRAIN_DELAY_MS).toBe(1000)
  })

  test('reports every bad variable at once and never echoes a DSN', () => {
    let err: unknown
    try {
      loadConfig({ PORT: '0', LOG_LEVEL: 'chatty', DATABASE_URL: 'mysql://u:secret@h/d', PARTITION_MONTHS_AHEAD: '99' })
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    const problems = (err as ConfigError).problems.join('\n')
    for (const v of ['PORT', 'LOG_LEVEL', 'DATABASE_URL', 'PARTITION_MONTHS_AHEAD']) expect(problems).toContain(v)
    expect(problems).not.toContain('secret')
  })

  test('read replica and retention (issue 9): unset by default, a replica needs an external primary', () => {
    const c = loadConfig({}, '/srv/app')
    expect(c.DATABASE_READ_URL).toBeUndefined()
    expect(c.RETENTION_INTERVAL_S).toBe(3600)
    expect(c.RETENTION_BATCH_ROWS).toBe(5000)
    expect(loadConfig({ RETENTION_INTERVAL_S: '0' }).RETENTION_INTERVAL_S).toBe(0)
    expect(() => loadConfig({ RETENTION_BATCH_ROWS: '10' })).toThrow(/RETENTION_BATCH_ROWS/)
    expect(() => loadConfig({ DATABASE_READ_URL: 'postgres://quint_app@replica/q' })).toThrow(
      /DATABASE_READ_URL: needs DATABASE_URL/,
    )
    const replica = loadConfig({ DATABASE_URL: 'postgres://o@primary/q', DATABASE_READ_URL: 'postgres://quint_app:pw@replica/q' })
    expect(replica.DATABASE_READ_URL).toBe('postgres://quint_app:pw@replica/q')
    // A bad DSN is reported without echoing it (it may carry a password).
    let err: unknown
    try {
      loadConfig({ DATABASE_URL: 'postgres://o@primary/q', DATABASE_READ_URL: 'mysql://u:secret@replica/q' })
    } catch (e) {
      err = e
    }
    expect((err as ConfigError).problems.join('\n')).toContain('DATABASE_READ_URL')
    expect((err as ConfigError).problems.join('\n')).not.toContain('secret')
  })

  test('the README configuration table is generated from the schema (bun run docs:config)', async () => {
    const readme = await Bun.file(path.join(import.meta.dir, '../README.md')).text()
    const section = readme.split('<!-- config:start -->')[1]?.split('<!-- config:end -->')[0]?.trim()
    expect(section).toBe(configMarkdown())
  })
})

describe('BUS=sns', () => {
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig(env)
      return []
    } catch (err) {
      return (err as ConfigError).problems
    }
  }

  test('without its values is a config error listing each one', () => {
    const p = problems({ BUS: 'sns' })
    expect(p).toContain('AWS_REGION: required when BUS=sns')
    expect(p).toContain('SNS_TOPIC_ARN: required when BUS=sns')
    for (const v of ['SQS_QUEUE_URL_PIPELINE', 'SQS_QUEUE_URL_SESSIONS', 'SQS_QUEUE_URL_ALERTS']) {
      expect(p.some((line) => line.startsWith(`${v}:`))).toBe(true)
    }
  })

  test('needs queues only for the consumers this process runs', () => {
    const env = {
      BUS: 'sns',
      AWS_REGION: 'eu-west-1',
      SNS_TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:quint.fifo',
      QUINT_CONSUMERS: 'none',
    }
    expect(problems(env)).toEqual([])
    expect(problems({ ...env, QUINT_CONSUMERS: 'alerts' })).toEqual([
      'SQS_QUEUE_URL_ALERTS: required when BUS=sns and QUINT_CONSUMERS includes alerts',
    ])
    expect(problems({ ...env, SNS_TOPIC_ARN: 'arn:aws:sns:eu-west-1:1:standard-topic' })[0]).toStartWith('SNS_TOPIC_ARN:')
  })
})
