/**
 * The demo chat: createRealtime() feeding one small store per channel, rendered
 * with textContent only (a publisher's text is data, never markup).
 *
 * The demo is its own backend: it mints dev tokens (POST /dev/token, AUTH_MODE=dev)
 * and publishes with POST /events. Messages carry a client-made `message_id`;
 * edits, deletes and reactions name it. POST /typing and GET /presence are used
 * when the server has them and quietly skipped when it answers 404.
 *
 * URL: `?user=alice` picks the user. Knobs for tests and demos (all optional):
 * `ttl` token lifetime in s (default 3600), `backoffCap` ms, `recheck` ms (how
 * often polling re-reads /client-config), `firstByte` ms. `window.chatDemo`
 * exposes the client and what it delivered, for the browser tests and the console.
 */
import { createRealtime } from '/static/chatgenius-realtime.js'

const CHANNELS = {
  'channel:general': 'Company-wide announcements and chatter',
  'channel:random': 'Everything else',
}
const QUICK_USERS = ['alice', 'bob', 'carol']
// Glyphs every font has (DejaVu included); emoji fonts still draw them nicely.
const REACTIONS = ['✔', '❤', '★', '☺']
// Contract: a user's channel is `user:<sub>`, so sub must fit the channel pattern.
const USER_RE = /^[A-Za-z0-9_.@|-]{1,40}$/
const TYPING_EVERY_MS = 2000 // the server keeps one user.typing per user and channel per 2 s
const TYPING_SHOWN_MS = 4000

const params = new URLSearchParams(location.search)
const $ = (id) => document.getElementById(id)

/** An element with a class and text; the only way this file puts text on screen. */
function el(tag, className, text) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (text != null) node.textContent = String(text)
  return node
}

const str = (v, fallback = '') => (typeof v === 'string' ? v : v == null ? fallback : String(v))
const userOf = (data) => str(data?.user_id ?? data?.user ?? data?.sub, 'someone')
const short = (channel) => channel.slice(channel.indexOf(':') + 1)
const intParam = (name) => {
  const n = Number.parseInt(params.get(name) ?? '', 10)
  return Number.isFinite(n) && n > 0 ? n : undefined
}

// ------------------------------------------------------------------ login

const me = params.get('user')
if (me === null || !USER_RE.test(me)) showLogin()
else start(me)

function showLogin() {
  $('login').hidden = false
  const go = (name) => {
    if (!USER_RE.test(name)) return
    params.set('user', name)
    location.search = params.toString()
  }
  for (const button of document.querySelectorAll('[data-user]')) button.addEventListener('click', () => go(button.dataset.user))
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault()
    go($('login-name').value.trim())
  })
}

// ------------------------------------------------------------------ auth

class NoDevTokens extends Error {}

/** Dev tokens for one user, cached until close to expiry; forceRefresh always mints. */
function createAuth(user, ttl) {
  let cached = null
  let pending = null
  const mints = []
  async function mint(reason) {
    const res = await fetch('/dev/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ sub: user, channels: ['channel:*', `user:${user}`], permissions: ['publish:events'], ttl }),
    })
    if (res.status === 404) throw new NoDevTokens('This demo mints its tokens with POST /dev/token: run the service with AUTH_MODE=dev (make run)')
    if (!res.ok) throw new Error(`POST /dev/token answered ${res.status}`)
    const body = await res.json()
    cached = { token: body.token, expiresAt: Date.now() + body.expires_in * 1000 }
    mints.push(reason)
    return cached.token
  }
  return {
    mints,
    get({ forceRefresh = false, reason = 'api' } = {}) {
      // Refresh at half-life (at most 60 s early), so requests never carry a token about to lapse.
      const early = Math.min(60000, ttl * 500)
      if (!forceRefresh && cached && cached.expiresAt - Date.now() > early) return Promise.resolve(cached.token)
      if (!pending) pending = mint(reason).finally(() => { pending = null })
      return pending
    },
  }
}

// ------------------------------------------------------------------ the chat

function start(user) {
  document.title = `${user} · ChatGenius realtime demo`
  $('app').hidden = false
  $('me-name').textContent = user
  const switchParams = new URLSearchParams(params)
  switchParams.delete('user')
  $('switch-user').href = `?${switchParams}`

  const auth = createAuth(user, intParam('ttl') ?? 3600)
  const ui = createView(user)
  const store = createStore(user, ui)
  ui.store = store

  const tuning = {}
  for (const [param, option] of [['backoffCap', 'backoffCapMs'], ['recheck', 'configRecheckMs'], ['firstByte', 'firstByteTimeoutMs']]) {
    const v = intParam(param)
    if (v !== undefined) tuning[option] = v
  }
  const rt = createRealtime({
    baseUrl: '',
    channels: [...Object.keys(CHANNELS), `user:${user}`],
    // Tabs of different users must not share one user's stream (docs/CLIENT.md, shareKey).
    shareKey: `${location.origin}#${user}`,
    ...tuning,
    async getToken({ forceRefresh, reason }) {
      try {
        return await auth.get({ forceRefresh, reason })
      } catch (err) {
        if (err instanceof NoDevTokens) {
          ui.banner(err.message, true, true)
          return null // nobody can log in: the client stops in `error`
        }
        throw err // transient: the client retries with backoff
      }
    },
  })

  const api = createApi(auth, ui)
  ui.actions = api

  const events = []
  const statuses = []
  rt.on('*', (envelope) => {
    events.push(envelope)
    store.apply(envelope)
  })
  rt.on('reset', ({ channels }) => store.reset(channels))
  rt.onStatus((view) => {
    statuses.push({ ...view, at: Date.now() })
    ui.badge(view)
    store.connection(view.status)
    if (view.status === 'open' || view.status === 'polling') api.refreshPresence(store)
  })
  window.chatDemo = { user, rt, events, statuses, tokenMints: auth.mints, store, api }
  ui.selectChannel(Object.keys(CHANNELS)[0])
  rt.connect()
}

/** Calls to the service besides the stream: publish, typing, presence. */
function createApi(auth, ui) {
  const lastTyping = new Map()
  let typingSupported = true
  let presenceSupported = true

  async function call(method, path, body) {
    const token = await auth.get()
    const res = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    })
    let json = null
    try {
      json = await res.json()
    } catch {
      /* an empty 202 or a proxy page */
    }
    return { res, json }
  }

  return {
    async publish(channel, type, data) {
      try {
        const { res, json } = await call('POST', '/events', { channel, type, data })
        if (!res.ok) ui.banner(`Not sent: ${json?.message ?? res.status}`, true)
        return res.ok
      } catch (err) {
        ui.banner(`Not sent: ${err.message}`, true)
        return false
      }
    },
    /** At most one POST /typing per channel per 2 s; a server without it is left alone after one 404. */
    typing(channel) {
      const now = Date.now()
      if (!typingSupported || now - (lastTyping.get(channel) ?? 0) < TYPING_EVERY_MS) return
      lastTyping.set(channel, now)
      call('POST', '/typing', { channel })
        .then(({ res }) => {
          if (res.status === 404 || res.status === 405) typingSupported = false
        })
        .catch(() => {})
    },
    async refreshPresence(store) {
      if (!presenceSupported) return
      for (const channel of Object.keys(CHANNELS)) {
        try {
          const { res, json } = await call('GET', `/presence/${encodeURIComponent(channel)}`)
          if (res.status === 404 || res.status === 405) {
            presenceSupported = false
            return
          }
          if (res.ok && Array.isArray(json?.users)) store.presenceList(json.users)
        } catch {
          return // a network blip; the next status change asks again
        }
      }
    },
  }
}

// ------------------------------------------------------------------ store

/** What the demo knows: messages per channel, who is typing, who is online. */
function createStore(user, ui) {
  const channels = new Map(
    Object.keys(CHANNELS).map((name) => [name, { name, order: [], messages: new Map(), unread: 0, typing: new Map(), notices: [] }]),
  )
  const people = new Map([[user, 'unknown']])
  for (const name of QUICK_USERS) if (!people.has(name)) people.set(name, 'unknown')

  const store = {
    channels,
    people,
    active: null,
    apply(envelope) {
      const chan = channels.get(envelope.channel)
      const data = envelope.data && typeof envelope.data === 'object' ? envelope.data : {}
      if (envelope.type === 'user.presence') return this.presence(userOf(data), str(data.status))
      if (!chan) return // e.g. the user's own user:<sub> channel: nothing to show in this demo
      const id = str(data.message_id ?? envelope.id)
      const msg = chan.messages.get(id)
      switch (envelope.type) {
        case 'message.created': {
          if (msg) return // the same message published twice
          const author = userOf(data)
          const created = { id, user: author, text: str(data.text, JSON.stringify(data)), ts: Number(envelope.ts) || Date.now() / 1000, edited: false, reactions: new Map(), cursor: envelope.id }
          chan.messages.set(id, created)
          chan.order.push(id)
          chan.typing.delete(author)
          if (!people.has(author)) people.set(author, 'unknown')
          if (chan.name !== store.active) chan.unread++
          ui.addMessage(chan, created)
          ui.typing(chan)
          ui.channels()
          ui.people()
          return
        }
        case 'message.updated':
          if (!msg) return
          msg.text = str(data.text)
          msg.edited = true
          return ui.updateMessage(chan, msg)
        case 'message.deleted':
          if (!msg) return
          chan.messages.delete(id)
          chan.order = chan.order.filter((m) => m !== id)
          return ui.removeMessage(chan, msg)
        case 'reaction.added':
        case 'reaction.removed': {
          if (!msg) return
          const emoji = str(data.emoji)
          if (!emoji) return
          const who = msg.reactions.get(emoji) ?? new Set()
          if (envelope.type === 'reaction.added') who.add(userOf(data))
          else who.delete(userOf(data))
          if (who.size) msg.reactions.set(emoji, who)
          else msg.reactions.delete(emoji)
          return ui.updateMessage(chan, msg)
        }
        case 'user.typing': {
          const who = userOf(data)
          if (who === user) return
          chan.typing.set(who, Date.now() + TYPING_SHOWN_MS)
          ui.typing(chan)
          setTimeout(() => ui.typing(chan), TYPING_SHOWN_MS + 50)
          return
        }
        default:
          return // channel.updated, system.*: nothing to draw
      }
    },
    presence(who, status) {
      if (!who || (status !== 'online' && status !== 'offline')) return
      people.set(who, status)
      ui.people()
    },
    presenceList(users) {
      for (const u of users) {
        const who = typeof u === 'string' ? u : str(u?.user_id ?? u?.user ?? u?.sub)
        if (who) people.set(who, 'online')
      }
      ui.people()
    },
    connection(status) {
      // Our own dot follows our connection; others' come from presence.
      people.set(user, status === 'open' || status === 'polling' ? 'online' : 'offline')
      ui.people()
    },
    reset(names) {
      for (const name of names) {
        const chan = channels.get(name)
        if (!chan) continue
        chan.notices.push('Some events were too old to replay; what you see may be incomplete.')
        ui.notice(chan)
      }
    },
  }
  return store
}

// ------------------------------------------------------------------ view

/** The DOM side: builds nodes once per message, updates them in place. */
function createView(user) {
  const list = $('messages')
  const nodes = new Map() // message id -> li
  const view = {
    store: null,
    actions: null,
    selectChannel(name) {
      const store = view.store
      store.active = name
      const chan = store.channels.get(name)
      chan.unread = 0
      $('channel-title').textContent = `# ${short(name)}`
      $('channel-topic').textContent = CHANNELS[name]
      $('composer-input').placeholder = `Message #${short(name)}`
      list.replaceChildren(...chan.notices.map((n) => el('li', 'notice', n)), ...chan.order.map((id) => nodeFor(chan, chan.messages.get(id))))
      view.empty(chan)
      view.typing(chan)
      view.channels()
      list.scrollTop = list.scrollHeight
    },
    channels() {
      const store = view.store
      $('channel-list').replaceChildren(
        ...[...store.channels.values()].map((chan) => {
          const button = el('button', chan.name === store.active ? 'active' : '')
          button.type = 'button'
          button.dataset.channel = chan.name
          button.append(el('span', 'hash', '#'), el('span', 'name', short(chan.name)))
          if (chan.unread) {
            button.classList.add('has-unread')
            button.append(el('span', 'unread', chan.unread))
          }
          button.addEventListener('click', () => view.selectChannel(chan.name))
          const li = el('li')
          li.append(button)
          return li
        }),
      )
    },
    people() {
      const store = view.store
      const rank = { online: 0, unknown: 1, offline: 2 }
      const sorted = [...store.people.entries()].sort((a, b) => rank[a[1]] - rank[b[1]] || a[0].localeCompare(b[0]))
      $('people-list').replaceChildren(
        ...sorted.map(([who, status]) => {
          const li = el('li', '')
          li.dataset.user = who
          li.dataset.presence = status
          const dot = el('span', `dot ${status}`)
          dot.title = status
          li.append(dot, el('span', '', who === user ? `${who} (you)` : who))
          return li
        }),
      )
    },
    addMessage(chan, msg) {
      if (chan.name !== view.store.active) return
      const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40
      list.append(nodeFor(chan, msg))
      view.empty(chan)
      if (stick) list.scrollTop = list.scrollHeight
    },
    updateMessage(chan, msg) {
      const li = nodes.get(msg.id)
      if (li) fill(li, chan, msg)
    },
    removeMessage(chan, msg) {
      nodes.get(msg.id)?.remove()
      nodes.delete(msg.id)
      if (chan.name === view.store.active) view.empty(chan)
    },
    notice(chan) {
      if (chan.name === view.store.active) view.selectChannel(chan.name)
    },
    empty(chan) {
      $('empty').hidden = chan.order.length > 0 || chan.notices.length > 0
      list.hidden = !$('empty').hidden
    },
    typing(chan) {
      if (chan.name !== view.store.active) return
      const now = Date.now()
      const who = [...chan.typing.entries()].filter(([, until]) => until > now).map(([u]) => u)
      for (const [u, until] of chan.typing) if (until <= now) chan.typing.delete(u)
      $('typing').textContent = who.length === 0 ? '' : who.length === 1 ? `${who[0]} is typing…` : `${who.join(', ')} are typing…`
    },
    badge({ status, transport, role, lastError }) {
      const badge = $('badge')
      badge.textContent = `${status} · ${transport}`
      badge.className = `badge status-${status}`
      badge.dataset.status = status
      badge.dataset.transport = transport
      badge.title = `tab role: ${role}` + (lastError ? `\nlast error: ${lastError.code}${lastError.message ? ` (${lastError.message})` : ''}` : '')
      const banner = $('banner')
      if (status === 'error') {
        if (banner.dataset.sticky === 'true' && !banner.hidden) return // a more specific reason is showing
        view.banner(`Disconnected: ${lastError?.message || lastError?.code || 'error'}. Reload the page to try again.`, true, true)
      } else if ((status === 'open' || status === 'polling') && banner.dataset.sticky === 'true') {
        banner.hidden = true
      }
    },
    /** A one-line notice; `sticky` ones (the connection is gone for good) stay until the connection is back. */
    banner(text, isError = false, sticky = false) {
      const banner = $('banner')
      banner.textContent = text
      banner.className = isError ? 'banner error' : 'banner'
      banner.dataset.sticky = String(sticky)
      banner.hidden = false
      clearTimeout(view.bannerTimer)
      if (!sticky) view.bannerTimer = setTimeout(() => { banner.hidden = true }, 8000)
    },
  }

  function nodeFor(chan, msg) {
    let li = nodes.get(msg.id)
    if (!li) {
      li = el('li', 'msg')
      li.dataset.id = msg.id
      nodes.set(msg.id, li)
      fill(li, chan, msg)
    }
    return li
  }

  /** (Re)draws one message: author, time, text, reactions, and the hover actions. */
  function fill(li, chan, msg) {
    const avatar = el('div', 'avatar', [...msg.user][0] ?? '?')
    avatar.style.background = colorFor(msg.user)
    const meta = el('div', 'meta')
    meta.append(el('span', 'author', msg.user), el('time', 'time', new Date(msg.ts * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })))
    if (msg.edited) meta.append(el('span', 'edited', '(edited)'))
    const reactions = el('div', 'reactions')
    for (const [emoji, who] of msg.reactions) {
      const chip = el('button', who.has(user) ? 'chip mine' : 'chip', `${emoji} ${who.size}`)
      chip.type = 'button'
      chip.title = [...who].join(', ')
      chip.addEventListener('click', () => react(chan, msg, emoji))
      reactions.append(chip)
    }
    const body = el('div', 'msg-body')
    body.append(meta, el('div', 'text', msg.text), reactions)
    const actions = el('div', 'actions')
    for (const emoji of REACTIONS) actions.append(button(emoji, `react ${emoji}`, () => react(chan, msg, emoji)))
    if (msg.user === user) {
      actions.append(button('edit', 'edit message', () => edit(li, chan, msg)), button('delete', 'delete message', () => view.actions.publish(chan.name, 'message.deleted', { message_id: msg.id, user_id: user })))
    }
    li.replaceChildren(avatar, body, actions)
  }

  function button(text, label, onClick) {
    const b = el('button', '', text)
    b.type = 'button'
    b.setAttribute('aria-label', label)
    b.addEventListener('click', onClick)
    return b
  }

  function react(chan, msg, emoji) {
    const type = msg.reactions.get(emoji)?.has(user) ? 'reaction.removed' : 'reaction.added'
    view.actions.publish(chan.name, type, { message_id: msg.id, emoji, user_id: user })
  }

  function edit(li, chan, msg) {
    const input = el('input', 'text-edit')
    input.value = msg.text
    input.setAttribute('aria-label', 'edit message')
    li.querySelector('.text').replaceWith(input)
    input.focus()
    let done = false
    const finish = (save) => {
      if (done) return
      done = true
      const text = input.value.trim()
      if (save && text && text !== msg.text) view.actions.publish(chan.name, 'message.updated', { message_id: msg.id, user_id: user, text })
      fill(li, chan, msg) // the update redraws again when it comes back through the stream
    }
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') finish(true)
      else if (e.key === 'Escape') finish(false)
    })
    input.addEventListener('blur', () => finish(false))
  }

  // Composer: Enter sends; typing announces at most every 2 s.
  $('composer').addEventListener('submit', async (e) => {
    e.preventDefault()
    const input = $('composer-input')
    const text = input.value
    if (!text.trim()) return
    input.value = ''
    const ok = await view.actions.publish(view.store.active, 'message.created', { message_id: crypto.randomUUID(), user_id: user, text })
    if (!ok && !input.value) input.value = text // give the text back so it is not lost
  })
  $('composer-input').addEventListener('input', (e) => {
    if (e.target.value) view.actions.typing(view.store.active)
  })
  return view
}

/** A stable pleasant colour per user name. */
function colorFor(name) {
  let h = 0
  for (const c of name) h = (h * 31 + c.codePointAt(0)) % 360
  return `hsl(${h}, 45%, 45%)`
}
