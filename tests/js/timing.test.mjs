import { test } from 'node:test'
import assert from 'node:assert/strict'
import { attemptAfterFailure, backoffDelay, createRecentIds, parseRetryAfter, watchdogMs } from '../../static/chatgenius-realtime.js'

test('backoff: full jitter spans [0, base * 2^attempt)', () => {
  const opts = { baseMs: 1000, capMs: 60000 }
  assert.equal(backoffDelay(0, { ...opts, random: () => 0 }), 0)
  assert.equal(backoffDelay(0, { ...opts, random: () => 0.999999 }), 999)
  assert.equal(backoffDelay(3, { ...opts, random: () => 0.5 }), 4000)
  assert.equal(backoffDelay(3, { ...opts, random: () => 0.999999 }), 7999)
})

test('backoff: the ceiling doubles per attempt and stops at the cap', () => {
  const ceiling = (n) => backoffDelay(n, { baseMs: 500, capMs: 10000, random: () => 1 })
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 50, 5000].map(ceiling), [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000, 10000])
})

test('backoff: never negative or above the cap, even with a broken random', () => {
  for (const r of [-1, 0, 0.3, 1, 2, Number.MAX_VALUE]) {
    const d = backoffDelay(10, { baseMs: 1000, capMs: 30000, random: () => r })
    assert.ok(d >= 0 && d <= 30000, `random ${r} gave ${d}`)
  }
})

test('backoff: jitter actually spreads clients out', () => {
  const delays = new Set()
  for (let i = 0; i < 50; i++) delays.add(backoffDelay(4, { baseMs: 1000, capMs: 30000 }))
  assert.ok(delays.size > 40, 'delays should differ between clients')
  for (const d of delays) assert.ok(d >= 0 && d < 16000)
})

test('backoff: the attempt counter resets only after a healthy period', () => {
  const base = { attempt: 6, healthyMs: 20000 }
  assert.equal(attemptAfterFailure({ ...base, openedAt: null, now: 100000 }), 6, 'never opened')
  assert.equal(attemptAfterFailure({ ...base, openedAt: 90000, now: 100000 }), 6, 'open only 10 s')
  assert.equal(attemptAfterFailure({ ...base, openedAt: 80000, now: 100000 }), 0, 'open 20 s')
})

test('Retry-After: seconds and HTTP dates', () => {
  const now = Date.parse('2025-11-29T20:00:00Z')
  assert.equal(parseRetryAfter('7', now), 7000)
  assert.equal(parseRetryAfter(' 0 ', now), 0)
  assert.equal(parseRetryAfter('Sat, 29 Nov 2025 20:00:30 GMT', now), 30000)
  assert.equal(parseRetryAfter('Sat, 29 Nov 2025 19:00:00 GMT', now), 0, 'a past date means now')
  assert.equal(parseRetryAfter('soon', now), null)
  assert.equal(parseRetryAfter(null, now), null)
})

test('watchdog: 2.5 heartbeats', () => {
  assert.equal(watchdogMs(15), 37500)
  assert.equal(watchdogMs(2), 5000)
})

test('dedupe: an id is delivered once', () => {
  const recent = createRecentIds(10)
  assert.equal(recent.seen('a'), false)
  assert.equal(recent.seen('a'), true)
  assert.equal(recent.seen('b'), false)
})

test('dedupe: memory is bounded and forgets the oldest first', () => {
  const recent = createRecentIds(3)
  for (const id of ['1', '2', '3', '4']) recent.seen(id)
  assert.equal(recent.size, 3)
  assert.equal(recent.seen('4'), true)
  assert.equal(recent.seen('3'), true)
  assert.equal(recent.seen('1'), false, '1 was evicted')
  assert.equal(recent.size, 3)
})
