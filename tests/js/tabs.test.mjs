import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRealtime } from '../../static/chatgenius-realtime.js'
import { createBrowser, createClock, createServer, envelope, frame, memoryStorage } from './fakes.mjs'

const BASE = 'http://rt.test'
const GENERAL = 'channel:general'

const connected = () => 'retry: 2000\n\n' + frame({ event: 'system.connected', data: { connection_id: 'c1', channels: [GENERAL], heartbeat_interval: 15 } })
const msg = (id, channel = GENERAL) => frame({ id, event: 'message.created', data: envelope(id, 'message.created', channel) })

/** One browser, one server, one clock; tab() opens a tab with its own client and sessionStorage. */
function setup() {
  const clock = createClock()
  const server = createServer()
  const browser = createBrowser()
  function tab(channels = [GENERAL]) {
    const fake = browser.tab()
    const storage = memoryStorage()
    const rt = createRealtime({
      baseUrl: BASE,
      getToken: () => 'tok',
      channels,
      storage,
      fetch: server.fetch,
      now: clock.now,
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      random: () => 0.5,
      locks: fake.locks,
      BroadcastChannel: fake.BroadcastChannel,
      target: null,
    })
    const events = []
    rt.on('*', (e) => events.push(e.id))
    const statuses = []
    rt.onStatus((v) => statuses.push(v.status))
    return { rt, events, statuses, storage, close: fake.close }
  }
  return { clock, server, tab }
}

/** Two tabs: A leads with an open stream, B follows. */
async function twoTabs(bChannels) {
  const t = setup()
  const a = t.tab()
  a.rt.connect()
  await t.clock.advance(0)
  const b = t.tab(bChannels)
  b.rt.connect()
  await t.clock.advance(0)
  t.server.lastStream.write(connected())
  await t.clock.advance(0)
  return { ...t, a, b }
}

test('tabs: one stream per browser; the follower gets events, status and cursor through the channel', async () => {
  const { server, clock, a, b } = await twoTabs()
  assert.equal(a.rt.role, 'leader')
  assert.equal(b.rt.role, 'follower')
  assert.equal(server.requestsTo('/stream').length, 1, 'only the leader holds a stream')
  assert.equal(a.rt.status, 'open')
  assert.equal(b.rt.status, 'open', 'the follower mirrors the leader')
  server.lastStream.write(msg('1-0') + msg('2-0'))
  await clock.advance(0)
  assert.deepEqual(a.events, ['1-0', '2-0'])
  assert.deepEqual(b.events, ['1-0', '2-0'])
  assert.equal(b.rt.lastEventId, '2-0')
  assert.equal(b.storage.getItem(`chatgenius-realtime:last-event-id:${BASE}`), '2-0', 'each tab keeps the shared cursor for a reload')
})

test('tabs: a follower subscription is forwarded; each tab only sees its own channels', async () => {
  const { server, clock, a, b } = await twoTabs()
  b.rt.subscribe('workspace:7')
  await clock.advance(0)
  const [post] = server.requestsTo('/subscriptions')
  assert.ok(post, 'the leader changed its stream for the follower')
  assert.deepEqual(JSON.parse(post.body), { connection_id: 'c1', subscribe: ['workspace:7'], unsubscribe: [] })
  server.lastStream.write(msg('1-0', 'workspace:7') + msg('2-0'))
  await clock.advance(0)
  assert.deepEqual(b.events, ['1-0', '2-0'])
  assert.deepEqual(a.events, ['2-0'], 'the leader does not see channels only a follower wants')
  assert.equal(a.rt.lastEventId, '2-0')

  b.rt.unsubscribe('workspace:7')
  await clock.advance(0)
  assert.deepEqual(JSON.parse(server.requestsTo('/subscriptions')[1].body).unsubscribe, ['workspace:7'])
})

test('tabs: a follower leaving drops its channels from the stream', async () => {
  const { server, clock, b } = await twoTabs(['workspace:7'])
  assert.deepEqual(JSON.parse(server.requestsTo('/subscriptions')[0].body).subscribe, ['workspace:7'])
  b.rt.disconnect()
  await clock.advance(0)
  assert.deepEqual(JSON.parse(server.requestsTo('/subscriptions')[1].body).unsubscribe, ['workspace:7'])
  assert.equal(b.rt.status, 'closed')
})

test('tabs: when the leader tab closes, a follower takes over from the shared cursor', async () => {
  const { server, clock, a, b } = await twoTabs(['workspace:7'])
  server.lastStream.write(msg('1-0') + msg('2-0', 'workspace:7'))
  await clock.advance(0)
  const leaderStream = server.lastStream

  // The browser closes the tab: locks released, channels gone, no script runs.
  a.close()
  a.rt.disconnect() // stands for the page's network going away with it
  await clock.advance(0)
  assert.ok(leaderStream.closed)
  assert.equal(b.rt.role, 'leader')
  assert.equal(server.requestsTo('/stream').length, 2)
  const req = server.lastStream.request
  assert.equal(req.headers.get('last-event-id'), '2-0')
  assert.equal(req.url.searchParams.get('channels'), 'workspace:7')

  // Replay overlap is dropped; new events flow.
  server.lastStream.write(connected() + msg('2-0', 'workspace:7') + msg('3-0', 'workspace:7'))
  await clock.advance(0)
  assert.equal(b.rt.status, 'open')
  assert.deepEqual(b.events, ['2-0', '3-0'])
})

test('tabs: a leader that disconnects hands over; the new leader carries every remaining tab', async () => {
  const t = setup()
  const a = t.tab()
  a.rt.connect()
  await t.clock.advance(0)
  const b = t.tab(['dm:1-2'])
  b.rt.connect()
  const c = t.tab(['workspace:7'])
  c.rt.connect()
  await t.clock.advance(0)
  t.server.lastStream.write(connected() + msg('5-0'))
  await t.clock.advance(0)
  assert.equal(t.server.requestsTo('/stream').length, 1)

  a.rt.disconnect()
  await t.clock.advance(0)
  const leaders = [b, c].filter((x) => x.rt.role === 'leader')
  assert.equal(leaders.length, 1, 'exactly one new leader')
  assert.equal(t.server.requestsTo('/stream').length, 2)
  const req = t.server.lastStream.request
  assert.equal(req.headers.get('last-event-id'), '5-0')
  assert.deepEqual(req.url.searchParams.get('channels').split(',').sort(), ['dm:1-2', 'workspace:7'], 'the union of the remaining tabs')
})

test('tabs: a follower shows reconnecting while the leader is gone, then follows the new leader', async () => {
  const t = setup()
  const a = t.tab()
  a.rt.connect()
  await t.clock.advance(0)
  const b = t.tab()
  b.rt.connect()
  const c = t.tab()
  c.rt.connect()
  await t.clock.advance(0)
  t.server.lastStream.write(connected())
  await t.clock.advance(0)
  a.rt.disconnect()
  await t.clock.advance(0)
  const [leader, follower] = b.rt.role === 'leader' ? [b, c] : [c, b]
  assert.equal(follower.rt.role, 'follower')
  assert.ok(follower.statuses.includes('reconnecting') || follower.statuses.includes('connecting'))
  t.server.lastStream.write(connected())
  await t.clock.advance(0)
  assert.equal(leader.rt.status, 'open')
  assert.equal(follower.rt.status, 'open')
})

test('tabs: on the poll transport the leader polls for everyone and shares the poll cursor', async () => {
  const t = setup()
  t.server.config.transport = 'poll'
  const a = t.tab()
  a.rt.connect()
  await t.clock.advance(0)
  t.server.queuePoll(new Response(JSON.stringify({ events: [], cursor: '1-0', reset: false }), { status: 200 }))
  await t.clock.advance(0)
  const b = t.tab()
  b.rt.connect()
  await t.clock.advance(0)
  assert.equal(t.server.requestsTo('/poll').length, 2, 'a tab with the same channels does not restart the long poll')
  assert.equal(b.rt.status, 'polling')
  assert.equal(b.rt.transport, 'poll')
  assert.equal(b.rt.lastEventId, '1-0')
  t.server.queuePoll(new Response(JSON.stringify({ events: [envelope('2-0', 'message.created', GENERAL)], cursor: '2-0', reset: false }), { status: 200 }))
  await t.clock.advance(0)
  assert.deepEqual(b.events, ['2-0'])
  assert.equal(b.rt.lastEventId, '2-0')
  const c = t.tab(['workspace:7'])
  c.rt.connect()
  await t.clock.advance(0)
  const polls = t.server.requestsTo('/poll')
  assert.equal(polls.at(-1).url.searchParams.get('channels'), `${GENERAL},workspace:7`, 'a new channel restarts the poll')
  assert.equal(polls.at(-1).url.searchParams.get('cursor'), '2-0')
})

test('tabs: with sharing disabled every tab holds its own stream', async () => {
  const t = setup()
  const mk = () =>
    createRealtime({
      baseUrl: BASE,
      getToken: () => 'tok',
      channels: [GENERAL],
      storage: null,
      fetch: t.server.fetch,
      now: t.clock.now,
      setTimeout: t.clock.setTimeout,
      clearTimeout: t.clock.clearTimeout,
      share: false,
    })
  const one = mk()
  const two = mk()
  one.connect()
  two.connect()
  await t.clock.advance(0)
  assert.equal(t.server.requestsTo('/stream').length, 2)
  assert.equal(one.role, 'solo')
})
