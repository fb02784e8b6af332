// Compiled by `tsc --noEmit --strict` in `make test` (tsconfig.json): the declarations in
// static/chatgenius-realtime.d.ts describe the client as docs/CLIENT.md uses it, through the
// package's own name and `exports`. Each @ts-expect-error must be an error: were a type `any`,
// tsc would fail with "Unused '@ts-expect-error' directive".
import {
  createParser,
  createRealtime,
  type Envelope,
  isChannelName,
  normalizeConfig,
  reduce,
  initialState,
  type Realtime,
  type StatusView,
} from '@chatgenius/realtime-client'

declare function refetch(channels: string[]): void
declare const auth0: { getTokenSilently(o: { cacheMode: 'on' | 'off' }): Promise<string> }

const rt: Realtime = createRealtime({
  baseUrl: '',
  getToken: ({ forceRefresh }) => auth0.getTokenSilently({ cacheMode: forceRefresh ? 'off' : 'on' }),
  channels: ['channel:general', 'user:auth0|abc'],
})

type Message = { user: string; text: string }
const off = rt.channel('channel:general').on<Message>('message.created', (event) => {
  const text: string = event.data.text
  const cursor: string | undefined = event.id
  // @ts-expect-error data fields are typed: no such field
  event.data.missing.toString()
  return [text, cursor]
})
off()
rt.on('reset', ({ channels }) => refetch(channels))
rt.on('system.connected', (frame) => {
  const id: string = frame.connection_id
  // @ts-expect-error the connected frame has no `data`
  return frame.data ?? id
})
rt.on('*', (event: Envelope) => event.ts.toFixed(3))
rt.onStatus(({ status, transport, lastError }: StatusView) => {
  const label = `${status} · ${transport}`
  return lastError ? `${label} ${lastError.code}: ${lastError.message}` : label
})
rt.connect()
rt.subscribe('dm:42-77')
rt.unsubscribe(['channel:general'])
const last: string | null = rt.lastEventId
rt.disconnect()

// @ts-expect-error getToken is required
createRealtime({ channels: [] })
// @ts-expect-error status is read-only
rt.status = 'open'
// @ts-expect-error statuses are a closed set
const bad: StatusView['status'] = 'sleeping'

const parser = createParser()
for (const out of parser.feed('data: hi\n\n')) {
  if (out.kind === 'event') out.event.data.toUpperCase()
  else if (out.kind === 'retry') out.ms.toFixed()
  // @ts-expect-error a comment has text, not ms
  else out.ms.toFixed()
}
const name: unknown = 'channel:x'
if (isChannelName(name)) name.toUpperCase()
const config = normalizeConfig({ transport: 'poll' })
const transport: 'sse' | 'poll' = config.transport
const { state, effect } = reduce(initialState(), { type: 'connect' }, { now: Date.now() })
if (effect.type === 'stream') effect.delayMs.toFixed()

export { bad, last, state, transport }
