import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRealtime } from '../../static/chatgenius-realtime.js'
import { createClock, createServer, envelope, frame, json, memoryStorage } from './fakes.mjs'

const BASE = 'http://rt.test'
const KEY = `chatgenius-realtime:last-event-id:${BASE}`
const GENERAL = 'channel:general'

/** A client wired to a fake server and a manual clock, recording what it saw. */
function setup({ storage = memoryStorage(), config, channels = [GENERAL], target = null, online = () => true, getToken } = {}) {
  const clock = createClock()
  const server = createServer({ config })
  const tokenCalls = []
  let issued = 0
  const errors = []
  const rt = createRealtime({
    baseUrl: BASE,
    getToken:
      getToken ??
      ((hint) => {
        tokenCalls.push(hint)
        return `tok${++issued}`
      }),
    channels,
    storage,
    fetch: server.fetch,
    now: clock.now,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => 0.5,
    locks: null,
    BroadcastChannel: null,
    target,
    isOnline: online,
    onError: (e) => errors.push(e),
  })
  const statuses = []
  rt.onStatus((v) => statuses.push(v.status))
  const events = []
  rt.on('*', (e) => events.push(e))
  return { clock, server, rt, tokenCalls, statuses, events, storage, errors }
}

const connected = (extra = {}) =>
  'retry: 2000\n\n' +
  frame({ event: 'system.connected', data: { connection_id: 'c1', user_id: 'u1', channels: [GENERAL], heartbeat_interval: 15, resumed: false, ...extra } })
const msg = (id, channel = GENERAL, type = 'message.created') => frame({ id, event: type, data: envelope(id, type, channel, { text: `m${id}` }) })
const ids = (events) => events.map((e) => e.id)

/** Connects and opens the first stream. */
async function open(t, extra) {
  t.rt.connect()
  await t.clock.advance(0)
  t.server.lastStream.write(connected(extra))
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'open')
  return t.server.lastStream
}

test('client: connects with a bearer token and the stored cursor, then delivers events', async () => {
  const t = setup({ storage: memoryStorage({ [KEY]: '3-0' }) })
  const general = []
  const random = []
  t.rt.channel(GENERAL).on('message.created', (e) => general.push(e))
  t.rt.channel('channel:random').on('message.created', (e) => random.push(e))
  const stream = await open(t)

  const req = stream.request
  assert.equal(req.headers.get('authorization'), 'Bearer tok1')
  assert.equal(req.headers.get('last-event-id'), '3-0')
  assert.equal(req.url.searchParams.get('channels'), GENERAL)
  assert.equal(t.server.requestsTo('/client-config').length, 1)
  assert.deepEqual(t.statuses, ['connecting', 'open'])
  assert.equal(t.rt.transport, 'sse')
  assert.equal(t.rt.connectionId, 'c1')

  stream.write(msg('4-0'))
  stream.write(frame({ event: 'user.typing', data: envelope(undefined, 'user.typing', GENERAL, { user_id: 'u2' }) }))
  await t.clock.advance(0)
  assert.deepEqual(t.events.map((e) => e.type), ['message.created', 'user.typing'])
  assert.equal(general.length, 1)
  assert.equal(general[0].data.text, 'm4-0')
  assert.equal(random.length, 0)
  assert.equal(t.rt.lastEventId, '4-0', 'an ephemeral event does not move the cursor')
  assert.equal(t.storage.getItem(KEY), '4-0')
})

test('client: an event id already delivered is dropped', async () => {
  const t = setup()
  const stream = await open(t)
  stream.write(msg('1-0') + msg('2-0') + msg('1-0') + msg('2-0') + msg('3-0'))
  await t.clock.advance(0)
  assert.deepEqual(ids(t.events), ['1-0', '2-0', '3-0'])
})

test('client: a normal end reconnects after jittered backoff with the cursor and a fresh token', async () => {
  const t = setup()
  const first = await open(t)
  first.write(msg('4-0'))
  first.end()
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'reconnecting')
  // retry: 2000 is the backoff base; random 0.5 → 1000 ms.
  await t.clock.advance(999)
  assert.equal(t.server.streams.length, 1)
  await t.clock.advance(1)
  assert.equal(t.server.streams.length, 2)
  const second = t.server.lastStream
  assert.equal(second.request.headers.get('last-event-id'), '4-0')
  assert.equal(second.request.headers.get('authorization'), 'Bearer tok2')
  assert.equal(t.tokenCalls.length, 2)
  // The server replays from the cursor; overlap is dropped, not delivered twice.
  second.write(connected({ resumed: true }) + msg('4-0') + msg('5-0'))
  await t.clock.advance(0)
  assert.deepEqual(ids(t.events), ['4-0', '5-0'])
  assert.deepEqual(t.statuses, ['connecting', 'open', 'reconnecting', 'open'])
})

test('client: a server restart (network errors, then 502s) is retried until the stream is back', async () => {
  const t = setup()
  const first = await open(t)
  first.write(msg('1-0'))
  await t.clock.advance(0)
  t.server.streamAnswers.push(
    () => Promise.reject(new TypeError('fetch failed')),
    json(502, { error: 'bad_gateway', message: 'upstream' }),
    () => Promise.reject(new TypeError('fetch failed')),
  )
  first.end()
  // retry: 2000 is the base, random 0.5: waits of 1 s, 2 s, 4 s, 8 s.
  await t.clock.advance(14999)
  assert.equal(t.server.requestsTo('/stream').length, 4)
  assert.equal(t.rt.status, 'reconnecting')
  await t.clock.advance(1)
  assert.equal(t.server.requestsTo('/stream').length, 5)
  t.server.lastStream.write(connected())
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'open')
  assert.equal(t.server.lastStream.request.headers.get('last-event-id'), '1-0')
})

test('client: 401 refreshes the token once, then stops in the error state', async () => {
  const t = setup()
  t.server.streamAnswers.push(json(401, { error: 'invalid_token', message: 'expired' }), json(401, { error: 'invalid_token', message: 'expired' }))
  t.rt.connect()
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'error')
  assert.deepEqual(t.tokenCalls.map((h) => h.forceRefresh), [false, true])
  assert.deepEqual(t.rt.lastError, { kind: 'http', status: 401, code: 'invalid_token', message: 'expired' })
  await t.clock.advance(10 * 60000)
  assert.equal(t.server.requestsTo('/stream').length, 2, 'no retries after the error')
})

test('client: 401 then a good token opens normally', async () => {
  const t = setup()
  t.server.streamAnswers.push(json(401, { error: 'invalid_token', message: 'expired' }))
  t.rt.connect()
  await t.clock.advance(0)
  t.server.lastStream.write(connected())
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'open')
  assert.equal(t.server.lastStream.request.headers.get('authorization'), 'Bearer tok2')
})

test('client: 403 stops in the error state without retrying; connect() tries again', async () => {
  const t = setup()
  t.server.streamAnswers.push(json(403, { error: 'forbidden', message: 'channel not allowed' }))
  t.rt.connect()
  await t.clock.advance(60000)
  assert.equal(t.rt.status, 'error')
  assert.equal(t.rt.lastError.code, 'forbidden')
  assert.equal(t.server.requestsTo('/stream').length, 1)
  t.rt.connect()
  await t.clock.advance(0)
  assert.equal(t.server.requestsTo('/stream').length, 2)
  assert.equal(t.rt.status, 'connecting')
})

test('client: 429 waits at least Retry-After', async () => {
  const t = setup()
  t.server.streamAnswers.push(json(429, { error: 'rate_limited', message: 'slow down' }, { 'Retry-After': '30' }))
  t.rt.connect()
  await t.clock.advance(29999)
  assert.equal(t.server.requestsTo('/stream').length, 1)
  await t.clock.advance(1)
  assert.equal(t.server.requestsTo('/stream').length, 2)
})

test('client: heartbeats keep the stream; silence for 2.5 heartbeats reconnects', async () => {
  const t = setup()
  const stream = await open(t)
  for (let i = 0; i < 4; i++) {
    await t.clock.advance(15000)
    stream.write(': hb\n\n')
  }
  await t.clock.advance(37499)
  assert.equal(t.rt.status, 'open')
  await t.clock.advance(1)
  assert.equal(t.rt.status, 'reconnecting')
  assert.equal(t.rt.lastError.kind, 'watchdog')
  assert.ok(stream.closed, 'the silent stream is aborted')
  await t.clock.advance(1000)
  assert.equal(t.server.streams.length, 2)
})

test('client: the watchdog follows the heartbeat_interval the server announces', async () => {
  const t = setup()
  await open(t, { heartbeat_interval: 2 })
  await t.clock.advance(4999)
  assert.equal(t.rt.status, 'open')
  await t.clock.advance(1)
  assert.equal(t.rt.status, 'reconnecting')
})

test('client: system.reset emits reset for stores and keeps the stream', async () => {
  const t = setup({ channels: [GENERAL, 'channel:random'] })
  const resets = []
  const generalResets = []
  t.rt.on('reset', (r) => resets.push(r))
  t.rt.channel(GENERAL).on('reset', (r) => generalResets.push(r))
  const stream = await open(t)
  stream.write(frame({ event: 'system.reset', data: { channels: ['channel:random'] } }))
  stream.write(msg('9-0'))
  await t.clock.advance(0)
  assert.deepEqual(resets, [{ channels: ['channel:random'] }])
  assert.deepEqual(generalResets, [], 'a reset of another channel does not reach this store')
  assert.equal(t.rt.status, 'open')
  assert.equal(t.server.streams.length, 1)
  assert.deepEqual(ids(t.events), ['9-0'])
})

test('client: a reset of channels this client does not hold reaches no store', async () => {
  const t = setup()
  const resets = []
  t.rt.on('reset', (r) => resets.push(r))
  const stream = await open(t)
  stream.write(frame({ event: 'system.reset', data: { channels: ['workspace:9'] } }))
  await t.clock.advance(0)
  assert.deepEqual(resets, [])
})

test('client: system.reauth reconnects at once with a forced fresh token and the cursor', async () => {
  const t = setup()
  const stream = await open(t)
  stream.write(msg('7-0') + frame({ event: 'system.reauth', data: {} }))
  await t.clock.advance(0)
  assert.equal(t.server.streams.length, 2)
  assert.ok(stream.closed)
  const req = t.server.lastStream.request
  assert.equal(req.headers.get('last-event-id'), '7-0')
  assert.equal(req.headers.get('authorization'), 'Bearer tok2')
  assert.deepEqual(t.tokenCalls[1], { forceRefresh: true, reason: 'reauth' })
})

test('client: system.reconnect waits retry_ms', async () => {
  const t = setup()
  const stream = await open(t)
  stream.write(frame({ event: 'system.reconnect', data: { retry_ms: 5000 } }))
  await t.clock.advance(4999)
  assert.equal(t.server.streams.length, 1)
  await t.clock.advance(1)
  assert.equal(t.server.streams.length, 2)
})

test('client: system.fallback moves to long-polling with the same cursor, and back to SSE when allowed', async () => {
  const t = setup()
  const stream = await open(t)
  t.server.config.transport = 'poll'
  stream.write(msg('1-0') + frame({ event: 'system.fallback', data: { poll_url: '/poll' } }))
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'polling')
  assert.equal(t.rt.transport, 'poll')
  const poll1 = t.server.requestsTo('/poll')[0]
  assert.equal(poll1.url.searchParams.get('cursor'), '1-0')
  assert.equal(poll1.url.searchParams.get('channels'), GENERAL)
  assert.equal(poll1.url.searchParams.get('timeout'), '25')
  assert.equal(poll1.headers.get('authorization'), 'Bearer tok2')

  t.server.queuePoll(json(200, { events: [envelope('1-0', 'message.created', GENERAL), envelope('2-0', 'message.created', GENERAL)], cursor: '2-0', reset: false }))
  await t.clock.advance(0)
  assert.deepEqual(ids(t.events), ['1-0', '2-0'])
  assert.equal(t.server.requestsTo('/poll')[1].url.searchParams.get('cursor'), '2-0')

  // The config still says poll at the first re-read; SSE is allowed at the second.
  await t.clock.advance(30000)
  assert.equal(t.rt.transport, 'poll')
  t.server.config.transport = 'sse'
  await t.clock.advance(30000)
  assert.equal(t.rt.transport, 'sse')
  assert.equal(t.server.pollsWaiting, 0, 'the long poll in flight was abandoned')
  const back = t.server.lastStream
  assert.equal(back.request.headers.get('last-event-id'), '2-0')
  back.write(connected() + msg('3-0'))
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'open')
  assert.deepEqual(ids(t.events), ['1-0', '2-0', '3-0'])
})

test('client: 503 sse_disabled switches to the poll_url it names', async () => {
  const t = setup({ storage: memoryStorage({ [KEY]: '5-0' }) })
  t.server.streamAnswers.push(json(503, { error: 'sse_disabled', message: 'off', poll_url: '/alt/poll' }))
  t.server.routes['/alt/poll'] = t.server.routes['/poll']
  t.rt.connect()
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'polling')
  const req = t.server.requestsTo('/alt/poll')[0]
  assert.ok(req, 'polled the URL from the 503 body')
  assert.equal(req.url.searchParams.get('cursor'), '5-0')
})

test('client: a stream that yields no byte (buffering proxy) falls back to polling', async () => {
  const t = setup()
  t.rt.connect()
  await t.clock.advance(9999)
  assert.equal(t.rt.status, 'connecting')
  await t.clock.advance(1)
  assert.equal(t.rt.status, 'polling')
  assert.equal(t.rt.lastError.kind, 'first-byte-timeout')
  assert.ok(t.server.streams[0].closed)
  assert.equal(t.server.requestsTo('/poll').length, 1)
  // SSE is allowed by the config, but the proxy would buffer again: stay on poll for now.
  await t.clock.advance(0)
  t.server.queuePoll(json(200, { events: [], cursor: '1-0', reset: false }))
  await t.clock.advance(60000)
  assert.equal(t.rt.transport, 'poll')
})

test('client: headers that never come are a timeout to retry, not a reason to poll', async () => {
  const t = setup()
  t.server.streamAnswers.push(() => new Promise(() => {}))
  t.rt.connect()
  await t.clock.advance(10000)
  assert.equal(t.rt.status, 'reconnecting')
  assert.equal(t.rt.transport, 'sse')
  assert.equal(t.rt.lastError.kind, 'timeout')
})

test('client: config transport poll polls from the newest cursor and emits reset on reset:true', async () => {
  const t = setup({ config: { transport: 'poll' } })
  const resets = []
  t.rt.on('reset', (r) => resets.push(r))
  t.rt.connect()
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'polling')
  assert.equal(t.server.requestsTo('/stream').length, 0)
  const [first] = t.server.requestsTo('/poll')
  assert.equal(first.url.searchParams.has('cursor'), false, 'no cursor asks for the newest position')
  t.server.queuePoll(json(200, { events: [], cursor: '10-0', reset: false }))
  await t.clock.advance(0)
  assert.equal(t.server.requestsTo('/poll')[1].url.searchParams.get('cursor'), '10-0')
  t.server.queuePoll(json(200, { events: [envelope('11-0', 'message.created', GENERAL)], cursor: '11-0', reset: true }))
  await t.clock.advance(0)
  assert.deepEqual(resets, [{ channels: [GENERAL] }])
  assert.deepEqual(ids(t.events), ['11-0'])
  assert.equal(t.rt.lastEventId, '11-0')
})

test('client: an empty instant poll answer does not spin', async () => {
  const t = setup({ config: { transport: 'poll' }, storage: memoryStorage({ [KEY]: '1-0' }) })
  t.rt.connect()
  await t.clock.advance(0)
  for (let i = 0; i < 5; i++) t.server.queuePoll(json(200, { events: [], cursor: '1-0', reset: false }))
  await t.clock.advance(999)
  assert.equal(t.server.requestsTo('/poll').length, 1, 'the next poll waits out the minimum interval')
  await t.clock.advance(1)
  assert.equal(t.server.requestsTo('/poll').length, 2)
  await t.clock.advance(1000)
  assert.equal(t.server.requestsTo('/poll').length, 3)
})

test('client: poll errors back off on the poll transport and recover', async () => {
  const t = setup({ config: { transport: 'poll' }, storage: memoryStorage({ [KEY]: '1-0' }) })
  t.rt.connect()
  await t.clock.advance(0)
  t.server.queuePoll(json(500, { error: 'internal', message: 'boom' }))
  await t.clock.advance(0)
  assert.deepEqual([t.rt.status, t.rt.transport], ['reconnecting', 'poll'])
  await t.clock.advance(500) // base 1000 ms, random 0.5
  assert.equal(t.server.requestsTo('/poll').length, 2)
  t.server.queuePoll(json(200, { events: [envelope('2-0', 'message.created', GENERAL)], cursor: '2-0', reset: false }))
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'polling')
  assert.deepEqual(ids(t.events), ['2-0'])
})

test('client: subscribe/unsubscribe on a live stream go through POST /subscriptions', async () => {
  const t = setup()
  const stream = await open(t)
  t.rt.subscribe('dm:42-77')
  await t.clock.advance(0)
  const [post] = t.server.requestsTo('/subscriptions')
  assert.equal(post.method, 'POST')
  assert.equal(post.headers.get('authorization'), 'Bearer tok2')
  assert.deepEqual(JSON.parse(post.body), { connection_id: 'c1', subscribe: ['dm:42-77'], unsubscribe: [] })
  stream.write(msg('1-0', 'dm:42-77'))
  await t.clock.advance(0)
  assert.deepEqual(ids(t.events), ['1-0'])

  t.rt.unsubscribe(GENERAL)
  await t.clock.advance(0)
  assert.deepEqual(JSON.parse(t.server.requestsTo('/subscriptions')[1].body), { connection_id: 'c1', subscribe: [], unsubscribe: [GENERAL] })
  // An event already in flight for the dropped channel is not delivered.
  stream.write(msg('2-0', GENERAL))
  await t.clock.advance(0)
  assert.deepEqual(ids(t.events), ['1-0'])
  assert.deepEqual(t.rt.channels, ['dm:42-77'])
  assert.equal(t.server.streams.length, 1)
})

test('client: a failed subscription change reconnects with the new channel set', async () => {
  const t = setup()
  const stream = await open(t)
  stream.write(msg('1-0'))
  t.server.routes['/subscriptions'] = () => json(404, { error: 'not_found', message: 'unknown connection' })
  t.rt.subscribe('workspace:7')
  await t.clock.advance(0)
  assert.equal(t.server.streams.length, 2)
  const req = t.server.lastStream.request
  assert.equal(req.url.searchParams.get('channels'), `${GENERAL},workspace:7`)
  assert.equal(req.headers.get('last-event-id'), '1-0')
})

test('client: channels changed while connecting are applied once the stream opens', async () => {
  const t = setup()
  t.rt.connect()
  await t.clock.advance(0)
  t.rt.subscribe('workspace:7')
  await t.clock.advance(0)
  assert.equal(t.server.requestsTo('/subscriptions').length, 0)
  t.server.lastStream.write(connected())
  await t.clock.advance(0)
  assert.deepEqual(JSON.parse(t.server.requestsTo('/subscriptions')[0].body).subscribe, ['workspace:7'])
})

test('client: on the poll transport a subscription change restarts the poll with the same cursor', async () => {
  const t = setup({ config: { transport: 'poll' }, storage: memoryStorage({ [KEY]: '4-0' }) })
  t.rt.connect()
  await t.clock.advance(0)
  t.rt.subscribe('workspace:7')
  await t.clock.advance(0)
  const polls = t.server.requestsTo('/poll')
  assert.equal(polls.length, 2)
  assert.equal(polls[1].url.searchParams.get('channels'), `${GENERAL},workspace:7`)
  assert.equal(polls[1].url.searchParams.get('cursor'), '4-0')
  assert.equal(t.server.requestsTo('/subscriptions').length, 0)
})

test('client: offline stops the stream, online reconnects at once', async () => {
  const target = new EventTarget()
  const t = setup({ target })
  const stream = await open(t)
  target.dispatchEvent(new Event('offline'))
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'offline')
  assert.ok(stream.closed)
  await t.clock.advance(120000)
  assert.equal(t.server.streams.length, 1, 'no attempts while offline')
  target.dispatchEvent(new Event('online'))
  await t.clock.advance(0)
  assert.equal(t.server.streams.length, 2)
  assert.equal(t.rt.status, 'reconnecting')
})

test('client: a network error while navigator says offline waits for online', async () => {
  let online = true
  const t = setup({ online: () => online })
  const stream = await open(t)
  online = false
  t.server.streamAnswers.push(() => Promise.reject(new TypeError('fetch failed')))
  stream.end()
  await t.clock.advance(5000)
  assert.equal(t.rt.status, 'offline')
})

test('client: getToken returning nothing is an error; throwing is retried', async () => {
  const none = setup({ getToken: () => null })
  none.rt.connect()
  await none.clock.advance(0)
  assert.equal(none.rt.status, 'error')
  assert.equal(none.rt.lastError.kind, 'no-token')

  let calls = 0
  const flaky = setup({
    getToken: () => {
      calls++
      if (calls === 1) throw new Error('idp down')
      return 'tok'
    },
  })
  flaky.rt.connect()
  await flaky.clock.advance(0)
  assert.equal(flaky.rt.status, 'reconnecting')
  await flaky.clock.advance(1000)
  assert.equal(flaky.server.streams.length, 1)
})

test('client: a 200 that is not an event stream is retried', async () => {
  const t = setup()
  t.server.streamAnswers.push(new Response('<html>login</html>', { status: 200, headers: { 'Content-Type': 'text/html' } }))
  t.rt.connect()
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'reconnecting')
  assert.equal(t.rt.lastError.kind, 'protocol')
})

test('client: a throwing handler does not stop delivery to the others', async () => {
  const t = setup()
  t.rt.on('message.created', () => {
    throw new Error('bad store')
  })
  const stream = await open(t)
  stream.write(msg('1-0'))
  await t.clock.advance(0)
  assert.deepEqual(ids(t.events), ['1-0'])
  assert.equal(t.errors.length, 1)
})

test('client: handlers can be removed', async () => {
  const t = setup()
  const got = []
  const off = t.rt.channel(GENERAL).on('*', (e) => got.push(e.id))
  const stream = await open(t)
  stream.write(msg('1-0'))
  await t.clock.advance(0)
  off()
  stream.write(msg('2-0'))
  await t.clock.advance(0)
  assert.deepEqual(got, ['1-0'])
})

test('client: disconnect closes the stream and stops everything', async () => {
  const t = setup()
  const stream = await open(t)
  t.rt.disconnect()
  await t.clock.advance(0)
  assert.equal(t.rt.status, 'closed')
  assert.ok(stream.closed)
  await t.clock.advance(10 * 60000)
  assert.equal(t.server.requests.length, 2, 'config and one stream, nothing after')
})

test('client: a bad channel name fails loudly', () => {
  assert.throws(() => setup({ channels: ['General'] }), TypeError)
  const t = setup()
  assert.throws(() => t.rt.subscribe('no colon'), TypeError)
})

test('client: storage null keeps the cursor in memory only', async () => {
  const t = setup({ storage: null })
  const stream = await open(t)
  stream.write(msg('1-0'))
  await t.clock.advance(0)
  assert.equal(t.rt.lastEventId, '1-0')
})

test('client: the module imports without browser globals', async () => {
  for (const name of ['window', 'navigator', 'sessionStorage', 'document']) {
    assert.equal(typeof globalThis[name] === 'undefined' || name === 'navigator', true, name)
  }
  const mod = await import('../../static/chatgenius-realtime.js')
  assert.equal(typeof mod.createRealtime, 'function')
})
