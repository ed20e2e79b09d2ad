import { describe, expect, test } from 'bun:test'
import { Writable } from 'node:stream'
import { createLogger, scrub, ThrottledLog } from './log.ts'

describe('log redaction', () => {
  test('scrub removes tokens, bearer values and DSN passwords from any text', () => {
    const text =
      'key qk_' +
      'a'.repeat(64) +
      ' dt qt_deploy_' +
      'b'.repeat(32) +
      ' jwt qt_agent_eyJhbGciOi.x.y ' +
      'hook whsec_abcdefgh Authorization: Bearer abcdefghijk postgres://app:s3cr3t@db:5432/x'
    const out = scrub(text)
    expect(out).not.toContain('a'.repeat(64))
    expect(out).not.toContain('b'.repeat(32))
    expect(out).not.toContain('eyJhbGciOi')
    expect(out).not.toContain('abcdefgh')
    expect(out).not.toContain('s3cr3t')
    expect(out).toContain('qk_[REDACTED]')
    expect(out).toContain('postgres://app:[REDACTED]@db:5432/x')
  })

  test('structured fields, nested objects, errors and messages are all redacted in the output', () => {
    const lines: string[] = []
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk))
        cb()
      },
    })
    const log = createLogger('info', sink)
    const token = 'qt_deploy_' + 'c'.repeat(32)
    log.info({ headers: { authorization: `Bearer ${token}` }, nested: { deep: { value: token } } }, `got ${token}`)
    log.error({ err: new Error(`failed for ${token}`) }, 'boom')
    log.info(
      { token, password: 'pw-123456', req: { headers: { Cookie: 'session=abc123', 'X-API-Key': 'legacy-key-1' } } },
      'fields',
    )
    const out = lines.join('')
    expect(lines.length).toBe(3)
    expect(out).not.toContain('c'.repeat(32))
    expect(out).not.toContain('pw-123456')
    expect(out).not.toContain('abc123')
    expect(out).not.toContain('legacy-key-1')
    for (const l of lines) expect(JSON.parse(l)).toHaveProperty('service', 'quint-cloud')
  })
})

describe('ThrottledLog', () => {
  test('one line per key and interval, then one saying how many were held back; a recovery is logged once', async () => {
    const lines: Record<string, unknown>[] = []
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(JSON.parse(String(chunk)))
        done()
      },
    })
    const throttled = new ThrottledLog(createLogger('info', sink), 50)
    for (let i = 0; i < 20; i++) throttled.error('db', { attempt: i }, 'round failed')
    throttled.error('other', {}, 'other failed')
    expect(lines.map((l) => l.msg)).toEqual(['round failed', 'other failed'])
    await Bun.sleep(60)
    throttled.error('db', {}, 'round failed')
    expect(lines[2]).toMatchObject({ level: 'error', failure: 'db', held_back: 19 })
    throttled.recovered('db', 'database back')
    throttled.recovered('db', 'database back')
    expect(lines.slice(3).map((l) => l.msg)).toEqual(['database back'])
  })
})
