/**
 * ChatGenius realtime browser client: one ES module, no build step, no dependencies.
 *
 * Layout (one file by request, so it is sectioned instead of split):
 *   1. SSE wire parser: bytes -> text -> lines -> events, pure and incremental.
 *   2. Timing: backoff with full jitter, Retry-After, the watchdog deadline.
 *   3. Delivery: the bounded set of recently delivered ids (idempotence).
 *   4. The connection state machine: one pure reducer, an explicit table.
 *   5. createRealtime(): the imperative shell that runs the reducer's effects
 *      (fetch, timers, storage) and shares one connection between tabs.
 *
 * Everything a browser provides (fetch, timers, sessionStorage, navigator.locks,
 * BroadcastChannel, window events) is looked up lazily and can be injected, so
 * node imports and tests this file without a browser.
 *
 * Deliberate divergences from EventSource: fetch instead of EventSource so the
 * Authorization header carries a fresh token on every attempt (fetch-event-source
 * #33); a normal end of the stream is retried, not treated as final; 204 is not
 * special (the server never sends it). See docs/CLIENT.md.
 */

// ---------------------------------------------------------------- 1. parser

/**
 * Decodes byte chunks into text, stripping exactly one leading BOM as the SSE
 * spec's UTF-8 decode does, even when the BOM's bytes straddle two chunks.
 * @returns {(chunk: Uint8Array|string) => string}
 */
export function createTextStage() {
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true })
  let atStart = true
  return (chunk) => {
    let text = typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true })
    if (atStart && text.length > 0) {
      atStart = false
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
    }
    return text
  }
}

/**
 * Splits text into lines on CRLF, LF or lone CR, remembering a CR at the end of
 * a chunk so that a CRLF split across two chunks yields one line, not two.
 * @returns {{push(text: string): string[]}}
 */
export function createLineSplitter() {
  let partial = ''
  let skipLeadingLF = false
  return {
    push(text) {
      const lines = []
      let start = 0
      if (skipLeadingLF && text.length > 0) {
        if (text.charCodeAt(0) === 10) start = 1
        skipLeadingLF = false
      }
      for (let i = start; i < text.length; i++) {
        const c = text.charCodeAt(i)
        if (c !== 10 && c !== 13) continue
        lines.push(partial + text.slice(start, i))
        partial = ''
        if (c === 13) {
          if (i + 1 === text.length) skipLeadingLF = true
          else if (text.charCodeAt(i + 1) === 10) i++
        }
        start = i + 1
      }
      partial += text.slice(start)
      return lines
    },
  }
}

/**
 * Splits one non-empty, non-comment line into field and value per the spec:
 * the value starts after the first colon, minus one optional leading space.
 * @param {string} line
 * @returns {[string, string]}
 */
export function splitField(line) {
  const colon = line.indexOf(':')
  if (colon === -1) return [line, '']
  const value = line.charCodeAt(colon + 1) === 32 ? line.slice(colon + 2) : line.slice(colon + 1)
  return [line.slice(0, colon), value]
}

/**
 * @typedef {{type: string, data: string, id: string|undefined, lastEventId: string}} SseEvent
 *   `id` is the id field of this very event (undefined when it had none, e.g. an
 *   ephemeral user.typing); `lastEventId` is the spec's sticky buffer.
 * @typedef {{kind: 'event', event: SseEvent}|{kind: 'retry', ms: number}|{kind: 'comment', text: string}} ParserOutput
 */

/**
 * Assembles lines into events with the spec's buffers (data, event type, last
 * event id); a blank line dispatches, an event without data is dropped.
 * @returns {{push(line: string): ParserOutput|null, readonly lastEventId: string}}
 */
export function createEventAssembler() {
  let data = ''
  let type = ''
  let lastEventId = ''
  /** @type {string|undefined} */
  let ownId
  function dispatch() {
    const id = ownId
    ownId = undefined
    if (data === '') {
      type = ''
      return null
    }
    const event = { type: type || 'message', data: data.slice(0, -1), id, lastEventId }
    data = ''
    type = ''
    return /** @type {ParserOutput} */ ({ kind: 'event', event })
  }
  return {
    push(line) {
      if (line === '') return dispatch()
      if (line.charCodeAt(0) === 58) return { kind: 'comment', text: line.slice(1) }
      const [field, value] = splitField(line)
      if (field === 'data') data += value + '\n'
      else if (field === 'event') type = value
      // An id holding NUL is ignored by the spec: it could not round-trip in a header.
      else if (field === 'id' && !value.includes('\0')) lastEventId = ownId = value
      else if (field === 'retry' && /^[0-9]+$/.test(value)) return { kind: 'retry', ms: Number(value) }
      return null
    },
    get lastEventId() {
      return lastEventId
    },
  }
}

/**
 * The whole incremental parser: feed it chunks as they arrive, get back what
 * they completed. A trailing incomplete event is never returned (spec: discard).
 * @returns {{feed(chunk: Uint8Array|string): ParserOutput[], readonly lastEventId: string}}
 */
export function createParser() {
  const toText = createTextStage()
  const splitter = createLineSplitter()
  const assembler = createEventAssembler()
  return {
    feed(chunk) {
      const out = []
      for (const line of splitter.push(toText(chunk))) {
        const item = assembler.push(line)
        if (item) out.push(item)
      }
      return out
    },
    get lastEventId() {
      return assembler.lastEventId
    },
  }
}

// ---------------------------------------------------------------- 2. timing

/**
 * Exponential backoff with full jitter (uniform in [0, min(cap, base * 2^attempt)))
 * so a restarted server is not hit by every client at the same instant.
 * @param {number} attempt 0 for the first retry
 * @param {{baseMs?: number, capMs?: number, random?: () => number}} [opts]
 */
export function backoffDelay(attempt, { baseMs = 1000, capMs = 30000, random = Math.random } = {}) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt))
  return Math.floor(Math.max(0, Math.min(1, random())) * ceiling)
}

/**
 * The attempt number to use after a failure: back to 0 when the connection had
 * been healthy (open for healthyMs), so one blip after hours is not punished.
 * @param {{attempt: number, openedAt: number|null, now: number, healthyMs: number}} s
 */
export function attemptAfterFailure({ attempt, openedAt, now, healthyMs }) {
  return openedAt != null && now - openedAt >= healthyMs ? 0 : attempt
}

/**
 * Parses a Retry-After header (delta-seconds or HTTP date) into milliseconds.
 * @param {string|null|undefined} value
 * @param {number} now epoch ms, for the date form
 * @returns {number|null}
 */
export function parseRetryAfter(value, now) {
  if (value == null) return null
  const text = String(value).trim()
  if (/^[0-9]+$/.test(text)) return Number(text) * 1000
  const at = Date.parse(text)
  return Number.isNaN(at) ? null : Math.max(0, at - now)
}

/** The silence after which a stream is presumed dead: 2.5 heartbeats. */
export function watchdogMs(heartbeatIntervalS) {
  return Math.round(2.5 * heartbeatIntervalS * 1000)
}

// ---------------------------------------------------------------- 3. delivery

/**
 * A bounded set of recently delivered event ids: cursors are opaque, so order
 * cannot tell a duplicate; memory of the last `limit` ids can.
 * @param {number} [limit]
 * @returns {{seen(id: string): boolean, readonly size: number}} seen() records the id and says whether it was already there
 */
export function createRecentIds(limit = 1000) {
  const ids = new Set()
  return {
    seen(id) {
      if (ids.has(id)) return true
      ids.add(id)
      // A Set iterates in insertion order, so the first key is the oldest.
      if (ids.size > limit) ids.delete(ids.values().next().value)
      return false
    },
    get size() {
      return ids.size
    },
  }
}

// ---------------------------------------------------------------- 4. state machine

/** @typedef {'idle'|'connecting'|'open'|'reconnecting'|'polling'|'offline'|'error'|'closed'} Status */
export const STATUSES = Object.freeze(['idle', 'connecting', 'open', 'reconnecting', 'polling', 'offline', 'error', 'closed'])

/** Statuses in which a transport attempt is running or scheduled. */
const ACTIVE = new Set(['connecting', 'open', 'reconnecting', 'polling'])

/**
 * @typedef {object} MachineState
 * @property {Status} status
 * @property {'sse'|'poll'} transport
 * @property {number} attempt consecutive failed attempts (backoff exponent)
 * @property {boolean} tokenRefreshed a 401 already earned one forced refresh
 * @property {object|null} lastError
 * @property {number|null} retryMs the server's `retry:`, the backoff base
 * @property {number|null} openedAt when the stream last opened
 * @property {string|null} pollUrl
 * @property {number} bufferedUntil no SSE before this time (a buffering proxy was seen)
 *
 * @typedef {{type: 'none'}|{type: 'stop'}|{type: 'load-config'}
 *   |{type: 'stream'|'poll', delayMs: number, refreshToken: boolean, reason: string}} Effect
 */

/** @returns {MachineState} */
export function initialState() {
  return {
    status: 'idle',
    transport: 'sse',
    attempt: 0,
    tokenRefreshed: false,
    lastError: null,
    retryMs: null,
    openedAt: null,
    pollUrl: null,
    bufferedUntil: 0,
  }
}

export const DEFAULT_TIMING = Object.freeze({
  backoffBaseMs: 1000,
  backoffCapMs: 30000,
  healthyMs: 20000,
  bufferedRetryMs: 5 * 60 * 1000,
})

/**
 * What a failed attempt calls for, one row per case; the single place that
 * decides which failures are worth retrying.
 * @param {{kind: string, status?: number, error?: string}} failure
 * @param {MachineState} state
 * @returns {'retry'|'refresh'|'fatal'|'fallback'|'fallback-buffered'}
 */
export function classifyFailure(failure, state) {
  switch (failure.kind) {
    case 'network': // fetch rejected or the body errored
    case 'end': // the server closed normally: always come back (fetch-event-source treats it as final)
    case 'watchdog': // silence longer than 2.5 heartbeats
    case 'timeout': // no response headers in time
    case 'protocol': // a 200 that is not an event stream / not JSON (captive portal, proxy page)
    case 'token': // getToken() threw: often a transient network failure of the IdP
      return 'retry'
    case 'first-byte-timeout': // headers but no bytes: a proxy buffers the body
      return 'fallback-buffered'
    case 'no-token': // getToken() returned nothing: the app says nobody is logged in
      return 'fatal'
    case 'http': {
      const status = failure.status ?? 0
      if (status === 401) return state.tokenRefreshed ? 'fatal' : 'refresh'
      if (status === 503 && failure.error === 'sse_disabled') return 'fallback'
      if (status === 429 || status === 408 || status >= 500) return 'retry'
      return 'fatal' // 403 and other 4xx: the same request cannot succeed later
    }
    default:
      return 'retry'
  }
}

/** Turns a failure into the plain, cloneable `lastError` the API exposes. */
export function describeFailure(failure) {
  return {
    kind: failure.kind,
    status: failure.status ?? null,
    code: failure.error ?? failure.kind,
    message: failure.message ?? '',
  }
}

const NONE = Object.freeze({ type: 'none' })
const STOP = Object.freeze({ type: 'stop' })

/** The effect that starts one attempt on the given transport. */
function attempt(transport, delayMs, refreshToken = false, reason = 'retry') {
  return { type: transport === 'poll' ? 'poll' : 'stream', delayMs: Math.max(0, delayMs), refreshToken, reason }
}

/** Switches to long-polling; `buffered` remembers not to retry SSE for a while. */
function toPoll(s, pollUrl, ctx, buffered = false) {
  return {
    state: {
      ...s,
      status: 'polling',
      transport: 'poll',
      attempt: 0,
      openedAt: null,
      pollUrl: pollUrl || s.pollUrl,
      bufferedUntil: buffered ? ctx.now + ctx.timing.bufferedRetryMs : s.bufferedUntil,
    },
    effect: attempt('poll', 0, false, 'fallback'),
  }
}

const stay = (s) => ({ state: s, effect: NONE })

/**
 * The transition table: event type -> (state, event, ctx) -> {state, effect}.
 * Events: connect, config, opened, poll-ok, retry, failed, frame, recheck,
 * resubscribe, offline, online, disconnect.
 */
const TRANSITIONS = {
  connect(s) {
    if (ACTIVE.has(s.status) || s.status === 'offline') return stay(s)
    return {
      state: { ...s, status: 'connecting', attempt: 0, tokenRefreshed: false, lastError: null, openedAt: null },
      effect: { type: 'load-config' },
    }
  },
  config(s, { config }, ctx) {
    if (s.status !== 'connecting') return stay(s)
    if (config.transport === 'poll' || ctx.now < s.bufferedUntil) return toPoll(s, config.poll_url, ctx)
    return { state: { ...s, transport: 'sse', pollUrl: config.poll_url || s.pollUrl }, effect: attempt('sse', 0, false, 'connect') }
  },
  opened(s, _e, ctx) {
    if (!ACTIVE.has(s.status)) return stay(s)
    return { state: { ...s, status: 'open', openedAt: ctx.now, tokenRefreshed: false, lastError: null }, effect: NONE }
  },
  'poll-ok'(s) {
    if (!ACTIVE.has(s.status) || s.transport !== 'poll') return stay(s)
    return { state: { ...s, status: 'polling', attempt: 0, tokenRefreshed: false, lastError: null }, effect: NONE }
  },
  retry(s, { ms }) {
    return stay({ ...s, retryMs: ms })
  },
  failed(s, { failure }, ctx) {
    if (!ACTIVE.has(s.status)) return stay(s) // a late report from a cancelled attempt
    const lastError = describeFailure(failure)
    if ((failure.kind === 'network' || failure.kind === 'timeout') && ctx.online === false) {
      return { state: { ...s, status: 'offline', openedAt: null, lastError }, effect: STOP }
    }
    switch (classifyFailure(failure, s)) {
      case 'fatal':
        return { state: { ...s, status: 'error', openedAt: null, lastError }, effect: STOP }
      case 'refresh':
        return {
          state: { ...s, status: 'reconnecting', tokenRefreshed: true, openedAt: null, lastError },
          effect: attempt(s.transport, 0, true, 'unauthorized'),
        }
      case 'fallback':
        return toPoll({ ...s, lastError }, failure.pollUrl, ctx)
      case 'fallback-buffered':
        return toPoll({ ...s, lastError }, null, ctx, true)
      default: {
        const n = attemptAfterFailure({ attempt: s.attempt, openedAt: s.openedAt, now: ctx.now, healthyMs: ctx.timing.healthyMs })
        const jittered = backoffDelay(n, { baseMs: s.retryMs ?? ctx.timing.backoffBaseMs, capMs: ctx.timing.backoffCapMs, random: ctx.random })
        const delay = Math.max(jittered, failure.retryAfterMs ?? 0) // 429: never sooner than the server asked
        return {
          state: { ...s, status: 'reconnecting', attempt: n + 1, openedAt: null, lastError },
          effect: attempt(s.transport, delay),
        }
      }
    }
  },
  frame(s, { frame, data }, ctx) {
    if (!ACTIVE.has(s.status)) return stay(s)
    const moving = { ...s, status: 'reconnecting', openedAt: null }
    if (frame === 'system.reauth') {
      // The token is about to expire: reconnect at once, asking for a fresh one.
      return { state: { ...moving, tokenRefreshed: true }, effect: attempt('sse', 0, true, 'reauth') }
    }
    if (frame === 'system.reconnect') {
      const ms = Number(data?.retry_ms)
      const delay = Number.isFinite(ms) && ms >= 0 ? ms : backoffDelay(s.attempt, { baseMs: s.retryMs ?? ctx.timing.backoffBaseMs, capMs: ctx.timing.backoffCapMs, random: ctx.random })
      return { state: moving, effect: attempt('sse', delay, false, 'server') }
    }
    if (frame === 'system.fallback') return toPoll(s, data?.poll_url, ctx)
    return stay(s)
  },
  recheck(s, { config }, ctx) {
    if (s.transport !== 'poll' || (s.status !== 'polling' && s.status !== 'reconnecting')) return stay(s)
    if (config.transport !== 'sse' || ctx.now < s.bufferedUntil) return stay({ ...s, pollUrl: config.poll_url || s.pollUrl })
    return {
      state: { ...s, status: 'connecting', transport: 'sse', attempt: 0, openedAt: null },
      effect: attempt('sse', 0, false, 'sse-allowed'),
    }
  },
  resubscribe(s) {
    // Only a live transport needs restarting; a scheduled retry will use the new channels anyway.
    if (s.status !== 'open' && s.status !== 'polling') return stay(s)
    if (s.transport === 'poll') return { state: s, effect: attempt('poll', 0, false, 'channels') }
    return { state: { ...s, status: 'reconnecting', openedAt: null }, effect: attempt('sse', 0, false, 'channels') }
  },
  offline(s) {
    if (!ACTIVE.has(s.status)) return stay(s)
    return { state: { ...s, status: 'offline', openedAt: null }, effect: STOP }
  },
  online(s) {
    if (s.status !== 'offline') return stay(s)
    return { state: { ...s, status: 'reconnecting', attempt: 0 }, effect: attempt(s.transport, 0, false, 'online') }
  },
  disconnect(s) {
    return { state: { ...s, status: 'closed', openedAt: null }, effect: STOP }
  },
}

/**
 * The connection state machine as a pure reducer: the shell feeds it what
 * happened, it answers with the next state and the single effect to run.
 * @param {MachineState} state
 * @param {{type: string, [k: string]: any}} event
 * @param {{now: number, random?: () => number, online?: boolean, timing?: Partial<typeof DEFAULT_TIMING>}} ctx
 * @returns {{state: MachineState, effect: Effect}}
 */
export function reduce(state, event, ctx) {
  const step = TRANSITIONS[event.type]
  if (!step) return stay(state)
  return step(state, event, { random: Math.random, online: true, ...ctx, timing: { ...DEFAULT_TIMING, ...ctx.timing } })
}

// ---------------------------------------------------------------- 5. the client

const CHANNEL_RE = /^[a-z][a-z0-9_-]*:[A-Za-z0-9_.:|@-]{1,120}$/

/** Whether a name is a channel the contract allows, checked early so typos fail loudly. */
export function isChannelName(name) {
  return typeof name === 'string' && CHANNEL_RE.test(name)
}

/** Joins the base URL and a server-given path; absolute URLs from the server win. */
export function resolveUrl(baseUrl, path) {
  if (/^https?:\/\//i.test(path)) return path
  return baseUrl.replace(/\/+$/, '') + (path.startsWith('/') ? path : `/${path}`)
}

/** Appends query parameters, URL-encoded (channel names hold `:` and `|`). */
export function withQuery(url, params) {
  const query = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') query.set(k, String(v))
  const text = query.toString()
  return text ? url + (url.includes('?') ? '&' : '?') + text : url
}

/** @type {Readonly<{transport: 'sse'|'poll', stream_url: string, poll_url: string, heartbeat_interval: number, compression: boolean}>} */
export const DEFAULT_CONFIG = Object.freeze({
  transport: 'sse',
  stream_url: '/stream',
  poll_url: '/poll',
  heartbeat_interval: 15,
  compression: false,
})

/** Keeps only well-typed fields of a /client-config answer, falling back field by field. */
export function normalizeConfig(raw, fallback = DEFAULT_CONFIG) {
  const r = raw && typeof raw === 'object' ? raw : {}
  return {
    transport: r.transport === 'poll' || r.transport === 'sse' ? r.transport : fallback.transport,
    stream_url: typeof r.stream_url === 'string' && r.stream_url ? r.stream_url : fallback.stream_url,
    poll_url: typeof r.poll_url === 'string' && r.poll_url ? r.poll_url : fallback.poll_url,
    heartbeat_interval: Number(r.heartbeat_interval) > 0 ? Number(r.heartbeat_interval) : fallback.heartbeat_interval,
    compression: typeof r.compression === 'boolean' ? r.compression : fallback.compression,
  }
}

/** The tab-sharing key: the base URL made absolute, so two spellings of one server agree. */
function shareKeyFor(baseUrl) {
  const here = globalThis.location?.href
  try {
    return here ? new URL(baseUrl || '/', here).href.replace(/\/+$/, '') : baseUrl.replace(/\/+$/, '')
  } catch {
    return baseUrl
  }
}

/** sessionStorage when the page may use it (it throws in some sandboxed frames). */
function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null
  } catch {
    return null
  }
}

/** Resolves every browser dependency once, preferring what the caller injected. */
function resolveEnv(o) {
  const g = globalThis
  const has = (k) => Object.prototype.hasOwnProperty.call(o, k)
  return {
    fetch: o.fetch ?? (typeof g.fetch === 'function' ? g.fetch.bind(g) : null),
    now: o.now ?? (() => Date.now()),
    setTimeout: o.setTimeout ?? ((fn, ms) => g.setTimeout(fn, ms)),
    clearTimeout: o.clearTimeout ?? ((h) => g.clearTimeout(h)),
    random: o.random ?? Math.random,
    storage: has('storage') ? o.storage : defaultStorage(),
    locks: has('locks') ? o.locks : (g.navigator?.locks ?? null),
    BroadcastChannel: has('BroadcastChannel') ? o.BroadcastChannel : (typeof g.BroadcastChannel === 'function' ? g.BroadcastChannel : null),
    target: has('target') ? o.target : (g.window && typeof g.window.addEventListener === 'function' ? g.window : null),
    isOnline: o.isOnline ?? (() => g.navigator?.onLine !== false),
    onError: o.onError ?? ((err) => (typeof g.reportError === 'function' ? g.reportError(err) : g.console?.error(err))),
  }
}

const DEFAULT_OPTIONS = Object.freeze({
  ...DEFAULT_TIMING,
  firstByteTimeoutMs: 10000,
  configTimeoutMs: 5000,
  configRecheckMs: 30000,
  pollTimeoutS: 25,
  minPollIntervalMs: 1000,
  dedupeSize: 1000,
})

/** An attempt's lifetime: one AbortController, its timers and cleanups, cancelled as one. */
function createTask(env) {
  const controller = new AbortController()
  const timers = new Set()
  const cleanups = []
  const task = {
    cancelled: false,
    signal: controller.signal,
    after(ms, fn) {
      const h = env.setTimeout(() => {
        timers.delete(h)
        if (!task.cancelled) fn()
      }, ms)
      timers.add(h)
      return h
    },
    clear(h) {
      if (h == null) return
      env.clearTimeout(h)
      timers.delete(h)
    },
    sleep(ms) {
      return new Promise((resolve) => task.after(ms, resolve))
    },
    onCancel(fn) {
      cleanups.push(fn)
    },
    cancel() {
      if (task.cancelled) return
      task.cancelled = true
      for (const h of timers) env.clearTimeout(h)
      timers.clear()
      controller.abort()
      for (const fn of cleanups) {
        try {
          fn()
        } catch {
          /* a cleanup failing must not keep the others from running */
        }
      }
    },
  }
  return task
}

/** Reads an error response into a failure, keeping the fields the machine needs. */
async function httpFailure(res, now) {
  let body = null
  try {
    body = await res.json()
  } catch {
    /* a proxy's HTML error page: the status alone decides */
  }
  return {
    kind: 'http',
    status: res.status,
    error: body?.error,
    message: body?.message ?? res.statusText ?? '',
    pollUrl: body?.poll_url,
    retryAfterMs: parseRetryAfter(res.headers.get('Retry-After'), now),
  }
}

const SERVER_FRAMES = new Set(['system.reauth', 'system.reconnect', 'system.fallback'])

/**
 * Creates a realtime client. Nothing happens until connect().
 * @param {object} options see docs/CLIENT.md for every option
 * @param {string} [options.baseUrl] the service root ('' = same origin)
 * @param {(hint: {forceRefresh: boolean, reason: string}) => string|null|undefined|Promise<string|null|undefined>} [options.getToken]
 *   required (a TypeError without it); called on every attempt
 * @param {string[]} [options.channels]
 * @param {Storage|null} [options.storage] where the cursor survives a reload (default sessionStorage; null: memory only)
 * @param {boolean} [options.share] share one connection between this browser's tabs (default true)
 * @param {string} [options.shareKey] names the lock, the BroadcastChannel and the storage key
 */
export function createRealtime(options = {}) {
  const opts = { ...DEFAULT_OPTIONS, ...options }
  const env = resolveEnv(options)
  if (typeof opts.getToken !== 'function') throw new TypeError('createRealtime: getToken must be a function')
  if (!env.fetch) throw new TypeError('createRealtime: no fetch available; pass options.fetch')
  const baseUrl = opts.baseUrl ?? ''
  const shareKey = opts.shareKey ?? shareKeyFor(baseUrl)
  const storageKey = `chatgenius-realtime:last-event-id:${shareKey}`
  const lockName = `chatgenius-realtime:${shareKey}`
  const canShare = opts.share !== false && env.locks && env.BroadcastChannel
  // Unique, not reproducible: two tabs must never share an id, even with an injected random.
  const tabId = globalThis.crypto?.randomUUID?.() ?? `${env.now().toString(36)}-${Math.random().toString(36).slice(2)}`

  const own = new Set(validChannels(opts.channels ?? []))
  /** Channels other tabs asked for, by tab id: the leader's stream carries their union. */
  const peers = new Map()
  const listeners = new Set() // {type, channel|null, fn}
  const statusListeners = new Set()
  const recent = createRecentIds(opts.dedupeSize)

  let state = initialState()
  let config = DEFAULT_CONFIG
  let heartbeatS = DEFAULT_CONFIG.heartbeat_interval
  let cursor = readCursor()
  let current = null // the running task
  let connectionId = null
  let streamChannels = [] // what the live stream is known to carry
  let subscribing = false
  let pollChannels = null // the channels of the long poll in flight
  let recheckTimer = null
  let recheckInFlight = false
  let running = false
  /** @type {'solo'|'leader'|'follower'} */
  let role = 'solo'
  let follower = { status: 'connecting', transport: 'sse', lastError: null }
  let leaderTab = null
  let bc = null
  let lockAbort = null
  let releaseLock = null
  let published = null

  function validChannels(list) {
    const names = Array.isArray(list) ? list : [list]
    for (const name of names) if (!isChannelName(name)) throw new TypeError(`not a channel name: ${JSON.stringify(name)}`)
    return names
  }

  function readCursor() {
    try {
      return env.storage?.getItem(storageKey) || null
    } catch {
      return null
    }
  }

  /** Moves the cursor; the storage copy is what lets a reloaded page resume. */
  function setCursor(next) {
    if (!next || next === cursor) return
    cursor = next
    try {
      env.storage?.setItem(storageKey, next)
    } catch {
      /* quota or privacy mode: the in-memory cursor still works for this page */
    }
  }

  const engineActive = () => role !== 'follower'

  /** The channels this tab's transport must carry: its own, plus its followers' when leading. */
  function desiredChannels() {
    const all = new Set(own)
    if (role === 'leader') for (const list of peers.values()) for (const ch of list) all.add(ch)
    return [...all].sort()
  }

  // ------------------------------------------------ state, status, listeners

  function dispatch(event) {
    const { state: next, effect } = reduce(state, event, {
      now: env.now(),
      random: env.random,
      online: env.isOnline(),
      timing: opts,
    })
    state = next
    run(effect)
    publish()
    syncRecheck()
  }

  function view() {
    const source = running && role === 'follower' ? follower : state
    return { status: source.status, transport: source.transport, lastError: source.lastError, role }
  }

  /** Tells status listeners (and follower tabs) about a change, once per change. */
  function publish() {
    const v = view()
    const same = (a, b) => a.status === b.status && a.transport === b.transport && a.role === b.role && JSON.stringify(a.lastError) === JSON.stringify(b.lastError)
    if (published && same(published, v)) return
    published = v
    if (role === 'leader') post({ kind: 'status', ...v, cursor })
    for (const fn of [...statusListeners]) safeCall(fn, v)
  }

  function safeCall(fn, arg) {
    try {
      fn(arg)
    } catch (err) {
      env.onError(err) // one broken store must not stop delivery to the others
    }
  }

  const wants = (channel) => !channel || own.has(channel)

  function emit(type, channel, payload) {
    for (const l of [...listeners]) {
      if (l.type !== type && !(l.type === '*' && channel !== undefined)) continue
      if (l.channel && l.channel !== channel) continue
      safeCall(l.fn, payload)
    }
  }

  /** Delivers an envelope once: drops an id seen before, moves the cursor, routes to handlers. */
  function deliver(envelope, id) {
    const key = id || envelope.id
    if (key) {
      if (recent.seen(key)) return
      setCursor(key)
    }
    if (role === 'leader') post({ kind: 'event', envelope, cursor: key || null })
    if (wants(envelope.channel)) emit(envelope.type, envelope.channel ?? null, envelope)
  }

  /** Tells stores their state may be stale (history did not reach back far enough). */
  function emitReset(channels) {
    if (role === 'leader') post({ kind: 'reset', channels })
    const mine = (channels ?? []).filter((ch) => own.has(ch))
    if (mine.length === 0) return
    const payload = { channels: mine }
    for (const l of [...listeners]) {
      if (l.type !== 'reset') continue
      if (l.channel && !mine.includes(l.channel)) continue
      safeCall(l.fn, payload)
    }
  }

  // ------------------------------------------------ effects

  function run(effect) {
    if (effect.type === 'none') return
    current?.cancel()
    current = null
    connectionId = null
    if (effect.type === 'stop') return
    const task = (current = createTask(env))
    if (effect.type === 'load-config') {
      loadConfig(task).then((cfg) => {
        if (!task.cancelled) dispatch({ type: 'config', config: cfg })
      })
    } else if (effect.type === 'stream') {
      task.after(effect.delayMs, () => runStream(task, effect))
    } else if (effect.type === 'poll') {
      task.after(effect.delayMs, () => runPoll(task, effect))
    }
  }

  /** Reports a failed attempt once, and only if it is still the current one. */
  function fail(task, failure) {
    if (task.cancelled || task !== current) return
    dispatch({ type: 'failed', failure })
  }

  async function loadConfig(task) {
    const controller = new AbortController()
    const timer = env.setTimeout(() => controller.abort(), opts.configTimeoutMs)
    task?.onCancel(() => controller.abort())
    try {
      const res = await env.fetch(resolveUrl(baseUrl, '/client-config'), {
        headers: { Accept: 'application/json' },
        cache: 'no-store',
        signal: controller.signal,
      })
      if (res.ok) config = normalizeConfig(await res.json(), config)
    } catch {
      /* unreachable: keep the last known config; the attempt itself will report the outage */
    } finally {
      env.clearTimeout(timer)
    }
    heartbeatS = config.heartbeat_interval
    return config
  }

  /** getToken() for one attempt, as a failure when it cannot give one. */
  async function tokenFor(effect) {
    try {
      const token = await opts.getToken({ forceRefresh: Boolean(effect.refreshToken), reason: effect.reason ?? 'retry' })
      return token ? { token } : { failure: { kind: 'no-token', message: 'getToken() returned no token' } }
    } catch (err) {
      return { failure: { kind: 'token', message: String(err?.message ?? err) } }
    }
  }

  async function runStream(task, effect) {
    const channels = desiredChannels()
    const { token, failure } = await tokenFor(effect)
    if (task.cancelled) return
    if (failure) return fail(task, failure)
    const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${token}` }
    if (cursor) headers['Last-Event-ID'] = cursor
    let gotHeaders = false
    const firstByte = task.after(opts.firstByteTimeoutMs, () => fail(task, { kind: gotHeaders ? 'first-byte-timeout' : 'timeout' }))
    let res
    try {
      const url = withQuery(resolveUrl(baseUrl, config.stream_url), { channels: channels.join(',') })
      res = await env.fetch(url, { headers, cache: 'no-store', signal: task.signal })
    } catch (err) {
      return fail(task, { kind: 'network', message: String(err?.message ?? err) })
    }
    gotHeaders = true
    if (task.cancelled) return
    if (!res.ok) return fail(task, await httpFailure(res, env.now()))
    if (!String(res.headers.get('Content-Type') ?? '').includes('text/event-stream') || !res.body) {
      return fail(task, { kind: 'protocol', message: 'response is not text/event-stream' })
    }
    const reader = res.body.getReader()
    task.onCancel(() => reader.cancel().catch(() => {}))
    const parser = createParser()
    let watchdog = null
    try {
      for (;;) {
        const { value, done } = await reader.read()
        if (task.cancelled) return
        if (done) return fail(task, { kind: 'end', message: 'stream ended' })
        if (!value || value.length === 0) continue
        // Any byte proves the path is alive: heartbeats are comments, and comments count.
        task.clear(firstByte)
        task.clear(watchdog)
        for (const out of parser.feed(value)) {
          if (out.kind === 'retry') dispatch({ type: 'retry', ms: out.ms })
          else if (out.kind === 'event') onStreamEvent(task, out.event, channels)
          if (task.cancelled) return // a frame moved us elsewhere; the cursor marks where to resume
        }
        // Armed after parsing, so a heartbeat_interval announced in this chunk already counts.
        watchdog = task.after(watchdogMs(heartbeatS), () => fail(task, { kind: 'watchdog', message: 'no heartbeat' }))
      }
    } catch (err) {
      fail(task, { kind: 'network', message: String(err?.message ?? err) })
    }
  }

  function onStreamEvent(task, event, requested) {
    let payload
    try {
      payload = JSON.parse(event.data)
    } catch {
      return // not JSON: nothing this contract sends
    }
    if (event.type === 'system.connected') {
      connectionId = payload?.connection_id ?? null
      if (Number(payload?.heartbeat_interval) > 0) heartbeatS = Number(payload.heartbeat_interval)
      streamChannels = Array.isArray(payload?.channels) ? payload.channels : requested
      dispatch({ type: 'opened' })
      emit('system.connected', undefined, payload)
      syncSubscriptions() // channels may have changed while this stream was connecting
    } else if (event.type === 'system.reset') {
      emitReset(Array.isArray(payload?.channels) ? payload.channels : requested)
    } else if (SERVER_FRAMES.has(event.type)) {
      dispatch({ type: 'frame', frame: event.type, data: payload })
    } else if (payload && typeof payload === 'object' && typeof payload.type === 'string') {
      deliver(payload, event.id)
    }
  }

  async function runPoll(task, effect) {
    let hint = effect
    while (!task.cancelled) {
      const channels = desiredChannels()
      pollChannels = channels.join(',')
      const { token, failure } = await tokenFor(hint)
      if (task.cancelled) return
      if (failure) return fail(task, failure)
      const started = env.now()
      const hadCursor = Boolean(cursor)
      const url = withQuery(resolveUrl(baseUrl, state.pollUrl || config.poll_url), {
        channels: channels.join(','),
        cursor,
        timeout: opts.pollTimeoutS,
      })
      // The server answers within timeout; a silent connection beyond that is dead.
      const deadline = task.after((opts.pollTimeoutS + 10) * 1000, () => fail(task, { kind: 'timeout', message: 'poll timed out' }))
      let body
      try {
        const res = await env.fetch(url, {
          headers: { Accept: 'application/json', Authorization: `Bearer ${token}` },
          cache: 'no-store',
          signal: task.signal,
        })
        if (task.cancelled) return
        if (!res.ok) return fail(task, await httpFailure(res, env.now()))
        try {
          body = await res.json()
        } catch {
          return fail(task, { kind: 'protocol', message: 'poll answer is not JSON' })
        }
      } catch (err) {
        return fail(task, { kind: 'network', message: String(err?.message ?? err) })
      }
      task.clear(deadline)
      if (task.cancelled) return
      if (body?.reset) emitReset(channels)
      for (const envelope of Array.isArray(body?.events) ? body.events : []) {
        if (envelope && typeof envelope === 'object') deliver(envelope, envelope.id)
        if (task.cancelled) return
      }
      if (typeof body?.cursor === 'string' && body.cursor) {
        setCursor(body.cursor)
        if (role === 'leader') post({ kind: 'cursor', cursor })
      }
      dispatch({ type: 'poll-ok' })
      hint = { refreshToken: false, reason: 'poll' }
      // Guard against a server (or proxy) answering empty at once: never spin.
      const empty = !body?.events?.length
      const elapsed = env.now() - started
      if (hadCursor && empty && elapsed < opts.minPollIntervalMs) await task.sleep(opts.minPollIntervalMs - elapsed)
    }
  }

  /** Brings the live stream's channels in line with desiredChannels() via POST /subscriptions. */
  async function syncSubscriptions() {
    if (subscribing || !engineActive() || state.transport !== 'sse' || state.status !== 'open' || !connectionId) return
    const desired = desiredChannels()
    const subscribe = desired.filter((ch) => !streamChannels.includes(ch))
    const unsubscribe = streamChannels.filter((ch) => !desired.includes(ch))
    if (subscribe.length === 0 && unsubscribe.length === 0) return
    subscribing = true
    const conn = connectionId
    const controller = new AbortController()
    const timer = env.setTimeout(() => controller.abort(), opts.configTimeoutMs)
    let ok = false
    try {
      const { token } = await tokenFor({ refreshToken: false, reason: 'subscriptions' })
      if (token) {
        const res = await env.fetch(resolveUrl(baseUrl, '/subscriptions'), {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
          body: JSON.stringify({ connection_id: conn, subscribe, unsubscribe }),
          signal: controller.signal,
        })
        ok = res.ok
      }
    } catch {
      ok = false
    } finally {
      env.clearTimeout(timer)
    }
    subscribing = false
    if (conn !== connectionId) return syncSubscriptions() // a new stream already carries a newer set
    if (!ok) return dispatch({ type: 'resubscribe' }) // contract: reconnect with the new set
    streamChannels = [...streamChannels.filter((ch) => !unsubscribe.includes(ch)), ...subscribe]
    syncSubscriptions()
  }

  /** Reacts to a change of desired channels on whichever transport is live. */
  function channelsChanged() {
    if (!running || !engineActive()) return
    if (state.transport === 'sse') syncSubscriptions()
    // Restart the long poll with the new channels from the same cursor: nothing is lost.
    else if (desiredChannels().join(',') !== pollChannels) dispatch({ type: 'resubscribe' })
  }

  /** While polling, re-reads /client-config now and then to return to SSE when allowed. */
  function syncRecheck() {
    const want = running && engineActive() && state.transport === 'poll' && (state.status === 'polling' || state.status === 'reconnecting')
    if (want && recheckTimer == null && !recheckInFlight) {
      recheckTimer = env.setTimeout(async () => {
        recheckTimer = null
        recheckInFlight = true
        const cfg = await loadConfig(null)
        recheckInFlight = false
        if (running && engineActive()) dispatch({ type: 'recheck', config: cfg })
        else syncRecheck()
      }, opts.configRecheckMs)
    } else if (!want && recheckTimer != null) {
      env.clearTimeout(recheckTimer)
      recheckTimer = null
    }
  }

  // ------------------------------------------------ tabs

  function post(message) {
    try {
      bc?.postMessage({ ...message, tab: tabId })
    } catch {
      /* a closed channel during unload: nothing left to tell */
    }
  }

  const hello = () => post({ kind: 'hello', channels: [...own] })
  const announce = () => post({ kind: 'channels', channels: [...own] })

  /** Handles one message from another tab of the same base URL. */
  function onPeer(msg) {
    if (!msg || typeof msg !== 'object' || msg.tab === tabId || !running) return
    switch (msg.kind) {
      case 'hello':
        peers.set(msg.tab, msg.channels ?? [])
        if (role === 'leader') {
          post({ kind: 'status', ...view(), cursor })
          channelsChanged()
        } else announce() // so whoever leads next knows every tab's channels
        break
      case 'channels':
        peers.set(msg.tab, msg.channels ?? [])
        if (role === 'leader') channelsChanged()
        break
      case 'bye':
        peers.delete(msg.tab)
        if (role === 'leader') channelsChanged()
        else if (msg.tab === leaderTab) {
          follower = { ...follower, status: 'reconnecting' } // until a follower wins the lock
          publish()
        }
        break
      case 'leader':
        leaderTab = msg.tab
        announce()
        break
      case 'status':
        if (role !== 'follower') break
        leaderTab = msg.tab
        if (msg.cursor) setCursor(msg.cursor)
        follower = { status: msg.status, transport: msg.transport, lastError: msg.lastError ?? null }
        publish()
        break
      case 'event':
        if (role !== 'follower' || !msg.envelope) break
        deliver(msg.envelope, msg.cursor)
        break
      case 'cursor':
        if (role === 'follower') setCursor(msg.cursor)
        break
      case 'reset':
        if (role === 'follower') emitReset(msg.channels)
        break
    }
  }

  /** Won the Web Lock: this tab now holds the one connection, resuming from the shared cursor. */
  function becomeLeader() {
    role = 'leader'
    leaderTab = tabId
    post({ kind: 'leader' })
    state = { ...state, status: 'idle' }
    dispatch({ type: 'connect' })
  }

  function joinTabs() {
    role = 'follower'
    follower = { status: 'connecting', transport: 'sse', lastError: null }
    bc = new env.BroadcastChannel(lockName)
    bc.onmessage = (e) => onPeer(e.data)
    hello()
    lockAbort = new AbortController()
    const granted = () => {
      if (!running) return undefined // disconnected while waiting: release at once
      return new Promise((resolve) => {
        releaseLock = resolve
        becomeLeader()
      })
    }
    Promise.resolve()
      .then(() => env.locks.request(lockName, { signal: lockAbort.signal }, granted))
      .catch(() => {
        /* AbortError: disconnect() while waiting for the lock */
      })
  }

  function leaveTabs() {
    post({ kind: 'bye' })
    lockAbort?.abort()
    releaseLock?.()
    releaseLock = lockAbort = null
    try {
      bc?.close()
    } catch {
      /* already closed */
    }
    bc = null
    peers.clear()
  }

  // ------------------------------------------------ window events

  const onOnline = () => engineActive() && dispatch({ type: 'online' })
  const onOffline = () => engineActive() && dispatch({ type: 'offline' })
  const onPageHide = () => post({ kind: 'bye' })
  const onPageShow = (e) => e?.persisted && hello()
  const windowEvents = { online: onOnline, offline: onOffline, pagehide: onPageHide, pageshow: onPageShow }

  function listenWindow(on) {
    if (!env.target) return
    for (const [name, fn] of Object.entries(windowEvents)) {
      if (on) env.target.addEventListener(name, fn)
      else env.target.removeEventListener(name, fn)
    }
  }

  // ------------------------------------------------ public API

  function connect() {
    if (running) {
      // error is terminal until the app asks again (e.g. after a new login)
      if (engineActive() && state.status === 'error') dispatch({ type: 'connect' })
      return
    }
    running = true
    listenWindow(true)
    if (canShare) {
      joinTabs()
      publish()
    } else {
      role = 'solo'
      dispatch({ type: 'connect' })
    }
  }

  function disconnect() {
    if (!running) return
    running = false
    listenWindow(false)
    if (canShare) leaveTabs()
    dispatch({ type: 'disconnect' })
  }

  function subscribe(channels) {
    const added = validChannels(channels).filter((ch) => !own.has(ch))
    if (added.length === 0) return
    for (const ch of added) own.add(ch)
    if (role === 'follower') announce()
    channelsChanged()
  }

  function unsubscribe(channels) {
    const removed = validChannels(channels).filter((ch) => own.has(ch))
    if (removed.length === 0) return
    for (const ch of removed) own.delete(ch)
    if (role === 'follower') announce()
    channelsChanged()
  }

  /** Registers a handler; returns the function that removes it. */
  function on(type, fn, channel = null) {
    if (typeof fn !== 'function') throw new TypeError('on(type, handler): handler must be a function')
    const entry = { type, fn, channel }
    listeners.add(entry)
    return () => listeners.delete(entry)
  }

  return {
    connect,
    disconnect,
    subscribe,
    unsubscribe,
    /** on('message.created', fn), on('*', fn) for every envelope, on('reset', fn), on('system.connected', fn). */
    on: (type, fn) => on(type, fn, null),
    /** Routes one channel's events to a store: channel('channel:general').on('message.created', fn). */
    channel(name) {
      validChannels(name)
      return { on: (type, fn) => on(type, fn, name) }
    },
    /** Calls fn({status, transport, lastError, role}) on every change; returns the unsubscribe function. */
    onStatus(fn) {
      statusListeners.add(fn)
      return () => statusListeners.delete(fn)
    },
    get status() {
      return view().status
    },
    get lastError() {
      return view().lastError
    },
    get transport() {
      return view().transport
    },
    get lastEventId() {
      return cursor
    },
    get channels() {
      return [...own]
    },
    get role() {
      return role
    },
    get connectionId() {
      return connectionId
    },
  }
}
