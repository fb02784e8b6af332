import { test } from 'node:test'
import assert from 'node:assert/strict'
import { STATUSES, classifyFailure, initialState, reduce } from '../../static/chatgenius-realtime.js'

const NOW = 1_000_000
const ctx = (extra = {}) => ({ now: NOW, random: () => 0.5, online: true, ...extra })

/** Runs events through the reducer from a state, returning the last step. */
function run(state, ...events) {
  let step = { state, effect: { type: 'none' } }
  for (const e of events) step = reduce(step.state, e, ctx())
  return step
}

const sseOpen = () => run(initialState(), { type: 'connect' }, { type: 'config', config: { transport: 'sse' } }, { type: 'opened' }).state
const polling = () => run(initialState(), { type: 'connect' }, { type: 'config', config: { transport: 'poll', poll_url: '/poll' } }).state
const failed = (failure) => ({ type: 'failed', failure })

test('state: connect loads the config, then opens SSE when the config says sse', () => {
  let step = reduce(initialState(), { type: 'connect' }, ctx())
  assert.equal(step.state.status, 'connecting')
  assert.deepEqual(step.effect, { type: 'load-config' })
  step = reduce(step.state, { type: 'config', config: { transport: 'sse' } }, ctx())
  assert.equal(step.state.status, 'connecting')
  assert.equal(step.effect.type, 'stream')
  assert.equal(step.effect.delayMs, 0)
  step = reduce(step.state, { type: 'opened' }, ctx())
  assert.equal(step.state.status, 'open')
  assert.equal(step.state.openedAt, NOW)
})

test('state: config transport poll starts long-polling', () => {
  const s = polling()
  assert.equal(s.status, 'polling')
  assert.equal(s.transport, 'poll')
  assert.equal(s.pollUrl, '/poll')
})

test('state: connect is ignored while active', () => {
  const s = sseOpen()
  assert.deepEqual(reduce(s, { type: 'connect' }, ctx()), { state: s, effect: { type: 'none' } })
})

// The HTTP status table: what each answer to an attempt leads to, from an open stream.
const HTTP_TABLE = [
  // [status, body error, expected status, expected effect type, note]
  [500, 'internal', 'reconnecting', 'stream', 'server error retries'],
  [502, undefined, 'reconnecting', 'stream', 'bad gateway retries'],
  [503, 'bus_unavailable', 'reconnecting', 'stream', 'a 503 that is not sse_disabled retries'],
  [503, 'sse_disabled', 'polling', 'poll', 'sse_disabled falls back to polling'],
  [429, 'rate_limited', 'reconnecting', 'stream', 'rate limits retry later'],
  [408, undefined, 'reconnecting', 'stream', 'request timeout retries'],
  [401, 'invalid_token', 'reconnecting', 'stream', 'first 401 refreshes the token'],
  [403, 'forbidden', 'error', 'stop', 'forbidden is final'],
  [400, 'bad_cursor', 'error', 'stop', 'bad request is final'],
  [404, 'not_found', 'error', 'stop', 'not found is final'],
  [413, 'too_large', 'error', 'stop', 'other 4xx are final'],
]
for (const [code, error, status, effect, note] of HTTP_TABLE) {
  test(`state: HTTP ${code} ${error ?? ''} → ${status} (${note})`, () => {
    const step = reduce(sseOpen(), failed({ kind: 'http', status: code, error }), ctx())
    assert.equal(step.state.status, status)
    assert.equal(step.effect.type, effect)
    if (status === 'error') assert.deepEqual(step.state.lastError, { kind: 'http', status: code, code: error, message: '' })
  })
}

test('state: 401 refreshes the token once, a second 401 is an error', () => {
  let step = reduce(sseOpen(), failed({ kind: 'http', status: 401 }), ctx())
  assert.equal(step.effect.refreshToken, true)
  assert.equal(step.effect.delayMs, 0)
  step = reduce(step.state, failed({ kind: 'http', status: 401 }), ctx())
  assert.equal(step.state.status, 'error')
  assert.equal(step.state.lastError.status, 401)
})

test('state: a successful open re-arms the one token refresh', () => {
  const s = run(sseOpen(), failed({ kind: 'http', status: 401 }), { type: 'opened' }).state
  const step = reduce(s, failed({ kind: 'http', status: 401 }), ctx())
  assert.equal(step.state.status, 'reconnecting')
  assert.equal(step.effect.refreshToken, true)
})

test('state: 429 waits at least Retry-After', () => {
  const step = reduce(sseOpen(), failed({ kind: 'http', status: 429, retryAfterMs: 45000 }), ctx())
  assert.equal(step.effect.delayMs, 45000)
})

for (const kind of ['network', 'end', 'watchdog', 'timeout', 'protocol', 'token']) {
  test(`state: failure "${kind}" reconnects with backoff`, () => {
    const step = reduce(sseOpen(), failed({ kind }), ctx())
    assert.equal(step.state.status, 'reconnecting')
    assert.equal(step.effect.type, 'stream')
    assert.ok(step.effect.delayMs >= 0 && step.effect.delayMs < 1000)
  })
}

test('state: getToken returning nothing is an error (nobody is logged in)', () => {
  assert.equal(reduce(sseOpen(), failed({ kind: 'no-token' }), ctx()).state.status, 'error')
})

test('state: consecutive failures grow the backoff; the server retry sets its base', () => {
  let s = run(initialState(), { type: 'connect' }, { type: 'config', config: { transport: 'sse' } }, { type: 'retry', ms: 2000 }).state
  const delays = []
  for (let i = 0; i < 6; i++) {
    const step = reduce(s, failed({ kind: 'network' }), { ...ctx(), random: () => 0.999999 })
    delays.push(step.effect.delayMs)
    s = step.state
  }
  assert.deepEqual(delays, [1999, 3999, 7999, 15999, 29999, 29999])
})

test('state: a healthy period resets the backoff', () => {
  let s = sseOpen()
  for (let i = 0; i < 4; i++) s = reduce(s, failed({ kind: 'network' }), ctx()).state
  assert.equal(s.attempt, 4)
  s = reduce(s, { type: 'opened' }, ctx()).state
  const quick = reduce(s, failed({ kind: 'end' }), ctx({ now: NOW + 5000, random: () => 0.999999 }))
  assert.equal(quick.state.attempt, 5, 'open 5 s is not healthy')
  const healthy = reduce(s, failed({ kind: 'end' }), ctx({ now: NOW + 60000, random: () => 0.999999 }))
  assert.equal(healthy.state.attempt, 1)
  assert.ok(healthy.effect.delayMs < 1000)
})

test('state: a network failure while the browser is offline goes offline, online resumes at once', () => {
  let step = reduce(sseOpen(), failed({ kind: 'network' }), ctx({ online: false }))
  assert.equal(step.state.status, 'offline')
  assert.equal(step.effect.type, 'stop')
  step = reduce(step.state, { type: 'online' }, ctx())
  assert.equal(step.state.status, 'reconnecting')
  assert.deepEqual([step.effect.type, step.effect.delayMs], ['stream', 0])
})

test('state: offline event stops the transport; online on the poll transport resumes polling', () => {
  let step = reduce(polling(), { type: 'offline' }, ctx())
  assert.equal(step.state.status, 'offline')
  assert.equal(step.effect.type, 'stop')
  step = reduce(step.state, { type: 'online' }, ctx())
  assert.equal(step.effect.type, 'poll')
})

test('state: system.reauth reconnects at once with a forced token refresh', () => {
  const step = reduce(sseOpen(), { type: 'frame', frame: 'system.reauth', data: {} }, ctx())
  assert.equal(step.state.status, 'reconnecting')
  assert.deepEqual(step.effect, { type: 'stream', delayMs: 0, refreshToken: true, reason: 'reauth' })
})

test('state: system.reconnect waits retry_ms exactly', () => {
  const step = reduce(sseOpen(), { type: 'frame', frame: 'system.reconnect', data: { retry_ms: 1234 } }, ctx())
  assert.deepEqual([step.state.status, step.effect.type, step.effect.delayMs], ['reconnecting', 'stream', 1234])
})

test('state: system.fallback switches to polling at the given URL', () => {
  const step = reduce(sseOpen(), { type: 'frame', frame: 'system.fallback', data: { poll_url: '/v2/poll' } }, ctx())
  assert.deepEqual([step.state.status, step.state.transport, step.state.pollUrl, step.effect.type], ['polling', 'poll', '/v2/poll', 'poll'])
})

test('state: no first byte (a buffering proxy) falls back and keeps off SSE for a while', () => {
  const s = reduce(sseOpen(), failed({ kind: 'first-byte-timeout' }), ctx()).state
  assert.equal(s.transport, 'poll')
  assert.equal(s.status, 'polling')
  const soon = reduce(s, { type: 'recheck', config: { transport: 'sse' } }, ctx({ now: NOW + 60000 }))
  assert.equal(soon.state.transport, 'poll', 'SSE is allowed but the proxy would buffer again')
  const later = reduce(s, { type: 'recheck', config: { transport: 'sse' } }, ctx({ now: NOW + 10 * 60000 }))
  assert.equal(later.state.transport, 'sse')
  assert.equal(later.effect.type, 'stream')
})

test('state: the config re-read returns to SSE when allowed, and only then', () => {
  const s = polling()
  assert.equal(reduce(s, { type: 'recheck', config: { transport: 'poll' } }, ctx()).effect.type, 'none')
  const back = reduce(s, { type: 'recheck', config: { transport: 'sse' } }, ctx())
  assert.deepEqual([back.state.status, back.state.transport, back.effect.type], ['connecting', 'sse', 'stream'])
  assert.equal(reduce(sseOpen(), { type: 'recheck', config: { transport: 'sse' } }, ctx()).effect.type, 'none')
})

test('state: polling failures retry on the poll transport; a good poll resets the backoff', () => {
  let step = reduce(polling(), failed({ kind: 'http', status: 502 }), ctx())
  assert.deepEqual([step.state.status, step.state.transport, step.effect.type], ['reconnecting', 'poll', 'poll'])
  step = reduce(step.state, { type: 'poll-ok' }, ctx())
  assert.deepEqual([step.state.status, step.state.attempt], ['polling', 0])
})

test('state: resubscribe restarts a live transport, not a scheduled retry', () => {
  assert.equal(reduce(sseOpen(), { type: 'resubscribe' }, ctx()).effect.type, 'stream')
  assert.equal(reduce(polling(), { type: 'resubscribe' }, ctx()).effect.type, 'poll')
  const waiting = reduce(sseOpen(), failed({ kind: 'network' }), ctx()).state
  assert.equal(reduce(waiting, { type: 'resubscribe' }, ctx()).effect.type, 'none')
})

test('state: late failures from a cancelled attempt change nothing once closed or in error', () => {
  const closed = reduce(sseOpen(), { type: 'disconnect' }, ctx()).state
  assert.equal(closed.status, 'closed')
  assert.equal(reduce(closed, failed({ kind: 'network' }), ctx()).state, closed)
  const errored = reduce(sseOpen(), failed({ kind: 'http', status: 403 }), ctx()).state
  assert.equal(reduce(errored, failed({ kind: 'network' }), ctx()).state, errored)
  assert.equal(reduce(errored, { type: 'frame', frame: 'system.reauth' }, ctx()).state, errored)
})

test('state: connect after error or close starts over', () => {
  const errored = reduce(sseOpen(), failed({ kind: 'http', status: 403 }), ctx()).state
  const step = reduce(errored, { type: 'connect' }, ctx())
  assert.deepEqual([step.state.status, step.state.lastError, step.effect.type], ['connecting', null, 'load-config'])
})

test('state: every status the reducer produces is a documented one', () => {
  const seen = new Set()
  const events = [
    { type: 'connect' },
    { type: 'config', config: { transport: 'sse' } },
    { type: 'opened' },
    failed({ kind: 'network' }),
    { type: 'offline' },
    { type: 'online' },
    failed({ kind: 'http', status: 503, error: 'sse_disabled' }),
    failed({ kind: 'http', status: 403 }),
    { type: 'disconnect' },
  ]
  let s = initialState()
  seen.add(s.status)
  for (const e of events) {
    s = reduce(s, e, ctx()).state
    seen.add(s.status)
  }
  for (const status of seen) assert.ok(STATUSES.includes(status), status)
  assert.deepEqual([...seen].sort(), [...STATUSES].sort())
})

test('classifyFailure: the table itself', () => {
  const fresh = initialState()
  const refreshed = { ...fresh, tokenRefreshed: true }
  assert.equal(classifyFailure({ kind: 'http', status: 401 }, fresh), 'refresh')
  assert.equal(classifyFailure({ kind: 'http', status: 401 }, refreshed), 'fatal')
  assert.equal(classifyFailure({ kind: 'http', status: 503, error: 'sse_disabled' }, fresh), 'fallback')
  assert.equal(classifyFailure({ kind: 'first-byte-timeout' }, fresh), 'fallback-buffered')
  assert.equal(classifyFailure({ kind: 'end' }, fresh), 'retry')
})
