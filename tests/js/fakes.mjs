/**
 * Test doubles for the realtime client: a manual clock, a fake server behind a
 * fake fetch (with SSE bodies the test writes to), and a fake browser for tabs
 * (Web Locks + BroadcastChannel). Not a test file: node --test skips it by name.
 */

/** Lets every pending promise, stream read and setImmediate run. */
export async function flush(rounds = 25) {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** A clock whose timers fire only when the test advances it. */
export function createClock(start = 1_700_000_000_000) {
  let now = start
  let seq = 0
  const timers = new Map()
  const clock = {
    now: () => now,
    setTimeout: (fn, ms = 0) => {
      const id = ++seq
      timers.set(id, { at: now + Math.max(0, ms), fn })
      return id
    },
    clearTimeout: (id) => {
      timers.delete(id)
    },
    /** Moves time forward, firing due timers in order and settling async work between them. */
    async advance(ms = 0) {
      const target = now + ms
      for (;;) {
        await flush()
        let next = null
        for (const [id, t] of timers) if (t.at <= target && (!next || t.at < next[1].at)) next = [id, t]
        if (!next) break
        timers.delete(next[0])
        now = Math.max(now, next[1].at)
        next[1].fn()
      }
      now = target
      await flush()
    },
    /** Delays of the pending timers, relative to now (for asserting a backoff). */
    pending: () => [...timers.values()].map((t) => t.at - now).sort((a, b) => a - b),
  }
  return clock
}

const abortError = () => new DOMException('The operation was aborted.', 'AbortError')

export const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } })

/**
 * An SSE response the test writes to. Aborting the request errors the body,
 * as a real fetch does, so the client's reader sees the cancellation.
 */
export function sseResponse(signal) {
  const encoder = new TextEncoder()
  let controller
  let closed = false
  const body = new ReadableStream({
    start(c) {
      controller = c
    },
    cancel() {
      closed = true
    },
  })
  signal?.addEventListener('abort', () => {
    if (closed) return
    closed = true
    try {
      controller.error(abortError())
    } catch {
      /* already errored */
    }
  })
  return {
    response: new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream; charset=utf-8' } }),
    write(text) {
      if (!closed) controller.enqueue(typeof text === 'string' ? encoder.encode(text) : text)
    },
    end() {
      if (closed) return
      closed = true
      controller.close()
    },
    get closed() {
      return closed
    },
  }
}

/** Formats one SSE frame the way the server does. */
export function frame({ id, event, data }) {
  let out = ''
  if (id != null) out += `id: ${id}\n`
  if (event) out += `event: ${event}\n`
  out += `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`
  return out
}

export const envelope = (id, type, channel, data = {}) => ({ id, type, channel, data, ts: 1764432000.123 })

/**
 * A fake ChatGenius realtime server. Routes answer by path; the default /stream
 * route opens a writable SSE body and records it; /poll answers are queued by
 * the test. Every request is recorded with parsed URL and headers.
 */
export function createServer({ config = {} } = {}) {
  const requests = []
  const streams = []
  const pollQueue = []
  const pollWaiters = []
  const server = {
    requests,
    streams,
    config: { transport: 'sse', stream_url: '/stream', poll_url: '/poll', heartbeat_interval: 15, compression: false, ...config },
    routes: {},
    /** The next /poll answer: a Response or a function of the request. */
    queuePoll(answer) {
      const waiter = pollWaiters.shift()
      if (waiter) waiter(answer)
      else pollQueue.push(answer)
    },
    /** The stream-opening behaviour for the next /stream requests (default: a 200 SSE body). */
    streamAnswers: [],
    requestsTo: (path) => requests.filter((r) => r.url.pathname === path),
    /** How many long polls are waiting for an answer. */
    get pollsWaiting() {
      return pollWaiters.length
    },
    get lastStream() {
      return streams[streams.length - 1]
    },
  }
  server.routes['/client-config'] = () => json(200, server.config)
  server.routes['/stream'] = (req) => {
    const answer = server.streamAnswers.shift()
    if (answer) return typeof answer === 'function' ? answer(req) : answer
    const s = sseResponse(req.signal)
    s.request = req
    streams.push(s)
    return s.response
  }
  server.routes['/poll'] = (req) =>
    new Promise((resolve) => {
      const answer = pollQueue.shift()
      const finish = (a) => resolve(typeof a === 'function' ? a(req) : a)
      if (answer) return finish(answer)
      pollWaiters.push(finish)
      // An aborted poll must not swallow the answer meant for the next one.
      req.signal?.addEventListener('abort', () => {
        const i = pollWaiters.indexOf(finish)
        if (i >= 0) pollWaiters.splice(i, 1)
      })
    })
  server.routes['/subscriptions'] = () => json(200, { ok: true })

  server.fetch = (url, init = {}) => {
    const req = {
      url: new URL(url),
      method: init.method ?? 'GET',
      headers: new Headers(init.headers ?? {}),
      body: init.body,
      signal: init.signal,
    }
    requests.push(req)
    if (req.signal?.aborted) return Promise.reject(abortError())
    return new Promise((resolve, reject) => {
      req.signal?.addEventListener('abort', () => reject(abortError()))
      const route = server.routes[req.url.pathname]
      if (!route) return resolve(json(404, { error: 'not_found', message: 'no route' }))
      Promise.resolve()
        .then(() => route(req))
        .then(resolve, reject)
    })
  }
  return server
}

/** A storage double with the Storage methods the client uses. */
export function memoryStorage(initial = {}) {
  const map = new Map(Object.entries(initial))
  return {
    getItem: (k) => (map.has(k) ? map.get(k) : null),
    setItem: (k, v) => map.set(k, String(v)),
    removeItem: (k) => map.delete(k),
    map,
  }
}

/**
 * A fake browser shared by several tabs: one lock manager, one BroadcastChannel
 * bus. tab() gives one tab's view; closeTab() drops its locks and channels as
 * the browser does when a tab closes without running any script.
 */
export function createBrowser() {
  const buses = new Map() // name -> Set<FakeChannel>
  const held = new Map() // lock name -> {owner, release}
  const queues = new Map() // lock name -> [{owner, grant, reject, signal}]

  function grantNext(name) {
    if (held.has(name)) return
    const queue = queues.get(name) ?? []
    const next = queue.shift()
    if (!next) return
    let release
    const done = new Promise((resolve) => (release = resolve))
    held.set(name, { owner: next.owner, release })
    done.then(() => {
      if (held.get(name)?.owner === next.owner) held.delete(name)
      grantNext(name)
    })
    Promise.resolve()
      .then(() => next.callback({ name, mode: 'exclusive' }))
      .then(
        (v) => {
          release()
          next.resolve(v)
        },
        (e) => {
          release()
          next.reject(e)
        },
      )
  }

  function tab() {
    const owner = Symbol('tab')
    const channels = new Set()
    class FakeChannel {
      constructor(name) {
        this.name = name
        this.onmessage = null
        this.closed = false
        if (!buses.has(name)) buses.set(name, new Set())
        buses.get(name).add(this)
        channels.add(this)
      }
      postMessage(data) {
        if (this.closed) throw new DOMException('closed', 'InvalidStateError')
        const copy = structuredClone(data)
        for (const other of buses.get(this.name)) {
          if (other === this) continue
          setImmediate(() => !other.closed && other.onmessage?.({ data: structuredClone(copy) }))
        }
      }
      close() {
        this.closed = true
        buses.get(this.name)?.delete(this)
      }
    }
    const locks = {
      request(name, options, callback) {
        return new Promise((resolve, reject) => {
          const entry = { owner, callback, resolve, reject }
          const signal = options?.signal
          if (signal?.aborted) return reject(abortError())
          signal?.addEventListener('abort', () => {
            const queue = queues.get(name) ?? []
            const i = queue.indexOf(entry)
            if (i >= 0) {
              queue.splice(i, 1)
              reject(abortError())
            }
          })
          if (!queues.has(name)) queues.set(name, [])
          queues.get(name).push(entry)
          grantNext(name)
        })
      },
    }
    return {
      BroadcastChannel: FakeChannel,
      locks,
      /** The tab is gone: its channels close and its locks are released. */
      close() {
        for (const c of channels) c.close()
        for (const [name, h] of held) if (h.owner === owner) h.release()
      },
    }
  }
  return { tab }
}
