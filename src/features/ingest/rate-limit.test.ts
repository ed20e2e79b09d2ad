import { expect, test } from 'bun:test'
import { RateLimitedError } from '../../errors.ts'
import { OrgRateLimiter } from './rate-limit.ts'

const clock = () => {
  let t = 0
  return { now: () => t, advance: (ms: number) => void (t += ms) }
}

function refused(fn: () => unknown): RateLimitedError {
  try {
    fn()
  } catch (err) {
    if (err instanceof RateLimitedError) return err
    throw err
  }
  throw new Error('expected a 429')
}

test('a burst is allowed, then the rate; the refusal says when to come back', () => {
  const c = clock()
  const limiter = new OrgRateLimiter(100, 500, { now: c.now })
  limiter.take('org-a', 500)
  const err = refused(() => limiter.take('org-a', 200))
  expect(err.status).toBe(429)
  expect(err.headers?.['Retry-After']).toBe('2')
  c.advance(1000) // 100 tokens back
  limiter.take('org-a', 100)
  refused(() => limiter.take('org-a', 1))
})

test('orgs have separate buckets; a refused request costs nothing', () => {
  const c = clock()
  const limiter = new OrgRateLimiter(10, 20, { now: c.now })
  limiter.take('org-a', 20)
  refused(() => limiter.take('org-a', 5))
  limiter.take('org-b', 20)
  c.advance(500) // 5 tokens: exactly what the refused request wanted
  limiter.take('org-a', 5)
})

test('a batch larger than the burst costs the whole burst instead of never passing; 0 disables', () => {
  const c = clock()
  const limiter = new OrgRateLimiter(10, 50, { now: c.now })
  limiter.take('org-a', 500)
  refused(() => limiter.take('org-a', 1))
  const off = new OrgRateLimiter(0, 1, { now: c.now })
  for (let i = 0; i < 1000; i++) off.take('org-a', 500)
})

test('RateLimit fields (issue 14): the policy and the level on answers, r=0 and t=Retry-After on a 429', () => {
  const c = clock()
  const limiter = new OrgRateLimiter(10, 50, { now: c.now })
  // q = burst, w = seconds to refill it at the rate.
  expect(limiter.headers('org-a')).toEqual({ 'RateLimit-Policy': '"ingest";q=50;w=5', RateLimit: '"ingest";r=50;t=0' })
  limiter.take('org-a', 35)
  expect(limiter.headers('org-a').RateLimit).toBe('"ingest";r=15;t=4')
  c.advance(1500) // 15 more
  expect(limiter.headers('org-a').RateLimit).toBe('"ingest";r=30;t=2')
  const err = refused(() => limiter.take('org-a', 45))
  expect(err.headers).toEqual({ 'RateLimit-Policy': '"ingest";q=50;w=5', RateLimit: '"ingest";r=0;t=2', 'Retry-After': '2' })
  // Another org's bucket is untouched; no limit, no fields.
  expect(limiter.headers('org-b').RateLimit).toBe('"ingest";r=50;t=0')
  expect(new OrgRateLimiter(0, 1, { now: c.now }).headers('org-a')).toEqual({})
})
