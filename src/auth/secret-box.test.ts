import { describe, expect, test } from 'bun:test'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createLogger } from '../infra/log.ts'
import { loadMasterKey, SecretBox, SecretBoxError } from './secret-box.ts'

const log = createLogger('silent', 'stderr')

describe('SecretBox', () => {
  const box = new SecretBox(randomBytes(32))

  test('opens what it sealed, for the same context only', () => {
    const sealed = box.seal('private key bytes', 'signing-key:org-a:k1')
    expect(box.open(sealed, 'signing-key:org-a:k1').toString()).toBe('private key bytes')
    expect(() => box.open(sealed, 'signing-key:org-b:k1')).toThrow(SecretBoxError)
  })

  test('two seals of one value differ (random nonce)', () => {
    expect(box.seal('x', 'c').equals(box.seal('x', 'c'))).toBe(false)
  })

  test('a flipped bit, a truncated value, another key: refused, never garbage', () => {
    const sealed = box.seal('secret', 'c')
    for (const i of [0, 5, 20, sealed.length - 1]) {
      const bad = Buffer.from(sealed)
      bad[i]! ^= 1
      expect(() => box.open(bad, 'c')).toThrow(SecretBoxError)
    }
    expect(() => box.open(sealed.subarray(0, 20), 'c')).toThrow(SecretBoxError)
    expect(() => new SecretBox(randomBytes(32)).open(sealed, 'c')).toThrow(SecretBoxError)
  })
})

describe('loadMasterKey', () => {
  test('AUTH_MASTER_KEY wins; otherwise one key is generated into the data dir (0600) and kept', () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'quint-mk-'))
    try {
      const hex = randomBytes(32).toString('hex')
      expect(loadMasterKey({ AUTH_MASTER_KEY: hex, dataDir }, log).toString('hex')).toBe(hex)
      const first = loadMasterKey({ dataDir }, log)
      expect(first.length).toBe(32)
      expect(fs.statSync(path.join(dataDir, 'master.key')).mode & 0o777).toBe(0o600)
      expect(loadMasterKey({ dataDir }, log).equals(first)).toBe(true)
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
