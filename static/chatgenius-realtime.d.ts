/**
 * Types of the ChatGenius realtime browser client (static/chatgenius-realtime.js).
 *
 * Written by hand: the module is plain JavaScript with no build step, and these
 * declarations are its public contract for TypeScript users. `make test` checks
 * them with `tsc --noEmit --strict` against tests/types/client-usage.ts, and
 * tests/js/types.test.mjs checks that they declare exactly the module's exports.
 * docs/CLIENT.md describes every option and member.
 */

// ------------------------------------------------------------------ envelopes

/** Every event type of the catalog (docs/API.md, Words). */
export type EventType =
  | 'message.created'
  | 'message.updated'
  | 'message.deleted'
  | 'reaction.added'
  | 'reaction.removed'
  | 'channel.updated'
  | 'user.typing'
  | 'user.presence'
  | 'system.health'
  | 'system.error'

/** A JSON value, as `data` holds it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** An event as delivered to handlers: `{id, type, channel, data, ts}`; ephemeral `user.typing` has no `id`. */
export interface Envelope<D extends { [key: string]: Json } = { [key: string]: Json }> {
  /** The cursor (opaque); absent on ephemeral events. */
  id?: string
  type: EventType | (string & {})
  channel: string
  data: D
  /** Publish time, Unix seconds. */
  ts: number
}

/** `system.connected`'s data: the server's hello on a new stream (leader or solo tab only). */
export interface ConnectedFrame {
  connection_id: string
  user_id: string
  channels: string[]
  heartbeat_interval: number
  resumed: boolean
}

/** What `on('reset', fn)` receives: the channels (of this tab) whose state must be refetched. */
export interface ResetNotice {
  channels: string[]
}

// ------------------------------------------------------------------ status

export type Status = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'polling' | 'offline' | 'error' | 'closed'
export type Transport = 'sse' | 'poll'
export type Role = 'solo' | 'leader' | 'follower'
export type FailureKind =
  | 'http'
  | 'network'
  | 'end'
  | 'watchdog'
  | 'timeout'
  | 'first-byte-timeout'
  | 'protocol'
  | 'token'
  | 'no-token'

/** Why the last attempt failed; cleared when a stream opens or a poll succeeds. */
export interface LastError {
  kind: FailureKind | (string & {})
  status: number | null
  code: string
  message: string
}

export interface StatusView {
  status: Status
  transport: Transport
  lastError: LastError | null
  role: Role
}

// ------------------------------------------------------------------ the client

export interface TokenHint {
  /** True after a 401 and on `system.reauth`: bypass your token cache. */
  forceRefresh: boolean
  reason: string
}

/** The storage the cursor survives a reload in (sessionStorage by default). */
export interface CursorStorage {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
}

/** A timer handle as the injected setTimeout returns it. */
export type TimerHandle = unknown

export interface RealtimeOptions {
  /** The service root ('' = same origin). */
  baseUrl?: string
  /** Called on every attempt; null or '' means nobody is logged in (status `error`); throwing is retried. */
  getToken: (hint: TokenHint) => string | null | undefined | Promise<string | null | undefined>
  channels?: string[]
  /** Where the cursor survives a reload; null keeps it in memory only. */
  storage?: CursorStorage | null
  /** Share one connection between the tabs of this browser (default true). */
  share?: boolean
  /** Names the lock, the BroadcastChannel and the storage key (default: the absolute baseUrl). */
  shareKey?: string
  backoffBaseMs?: number
  backoffCapMs?: number
  healthyMs?: number
  bufferedRetryMs?: number
  firstByteTimeoutMs?: number
  configTimeoutMs?: number
  configRecheckMs?: number
  pollTimeoutS?: number
  minPollIntervalMs?: number
  dedupeSize?: number
  /** Receives exceptions thrown by handlers (default reportError). */
  onError?: (error: unknown) => void
  // Injection points (tests, non-browser hosts).
  fetch?: typeof globalThis.fetch
  now?: () => number
  setTimeout?: (fn: () => void, ms: number) => TimerHandle
  clearTimeout?: (handle: TimerHandle) => void
  random?: () => number
  locks?: LockManager | null
  BroadcastChannel?: typeof globalThis.BroadcastChannel | null
  target?: Pick<EventTarget, 'addEventListener' | 'removeEventListener'> | null
  isOnline?: () => boolean
}

/** Removes the handler it was returned for. */
export type Unsubscribe = () => void

export interface Subscribable {
  on(type: 'reset', handler: (notice: ResetNotice) => void): Unsubscribe
  on(type: 'system.connected', handler: (frame: ConnectedFrame) => void): Unsubscribe
  on<D extends { [key: string]: Json } = { [key: string]: Json }>(type: EventType | '*' | (string & {}), handler: (event: Envelope<D>) => void): Unsubscribe
}

export interface Realtime extends Subscribable {
  /** Starts (idempotent); from `error` it starts over. */
  connect(): void
  /** Stops everything and releases the tab lock; status `closed`. */
  disconnect(): void
  subscribe(channels: string | string[]): void
  unsubscribe(channels: string | string[]): void
  /** The same handlers for one channel: the way to route events to a store. */
  channel(name: string): Subscribable
  /** Called on every change (not immediately). */
  onStatus(callback: (view: StatusView) => void): Unsubscribe
  readonly status: Status
  readonly lastError: LastError | null
  readonly transport: Transport
  /** The cursor: the id of the last durable event delivered (or the last /poll cursor). */
  readonly lastEventId: string | null
  readonly channels: string[]
  readonly role: Role
  readonly connectionId: string | null
}

export function createRealtime(options: RealtimeOptions): Realtime

// ------------------------------------------------------------------ building blocks (exported for tests)

export interface SseEvent {
  type: string
  data: string
  /** This event's own id field (undefined when it had none). */
  id: string | undefined
  /** The spec's sticky last-event-ID buffer. */
  lastEventId: string
}

export type ParserOutput =
  | { kind: 'event'; event: SseEvent }
  | { kind: 'retry'; ms: number }
  | { kind: 'comment'; text: string }

export function createTextStage(): (chunk: Uint8Array | string) => string
export function createLineSplitter(): { push(text: string): string[] }
export function splitField(line: string): [string, string]
export function createEventAssembler(): { push(line: string): ParserOutput | null; readonly lastEventId: string }
export function createParser(): { feed(chunk: Uint8Array | string): ParserOutput[]; readonly lastEventId: string }

export function backoffDelay(attempt: number, opts?: { baseMs?: number; capMs?: number; random?: () => number }): number
export function attemptAfterFailure(s: { attempt: number; openedAt: number | null; now: number; healthyMs: number }): number
export function parseRetryAfter(value: string | null | undefined, now: number): number | null
export function watchdogMs(heartbeatIntervalS: number): number
export function createRecentIds(limit?: number): { seen(id: string): boolean; readonly size: number }

export const STATUSES: readonly Status[]

export interface Timing {
  backoffBaseMs: number
  backoffCapMs: number
  healthyMs: number
  bufferedRetryMs: number
}
export const DEFAULT_TIMING: Readonly<Timing>

export interface MachineState {
  status: Status
  transport: Transport
  /** Consecutive failed attempts (the backoff exponent). */
  attempt: number
  /** A 401 already earned one forced token refresh. */
  tokenRefreshed: boolean
  lastError: LastError | null
  /** The server's `retry:`, the backoff base. */
  retryMs: number | null
  openedAt: number | null
  pollUrl: string | null
  /** No SSE before this time (a buffering proxy was seen). */
  bufferedUntil: number
}

export type Effect =
  | { type: 'none' }
  | { type: 'stop' }
  | { type: 'load-config' }
  | { type: 'stream' | 'poll'; delayMs: number; refreshToken: boolean; reason: string }

export interface Failure {
  kind: FailureKind | (string & {})
  status?: number
  error?: string
  message?: string
  pollUrl?: string
  retryAfterMs?: number | null
}

export function initialState(): MachineState
export function classifyFailure(failure: Failure, state: MachineState): 'retry' | 'refresh' | 'fatal' | 'fallback' | 'fallback-buffered'
export function describeFailure(failure: Failure): LastError
export function reduce(
  state: MachineState,
  event: { type: string; [key: string]: unknown },
  ctx: { now: number; random?: () => number; online?: boolean; timing?: Partial<Timing> },
): { state: MachineState; effect: Effect }

export function isChannelName(name: unknown): name is string
export function resolveUrl(baseUrl: string, path: string): string
export function withQuery(url: string, params: Record<string, string | number | boolean | null | undefined>): string

/** `GET /client-config`'s answer, as the client keeps it. */
export interface ClientConfig {
  transport: Transport
  stream_url: string
  poll_url: string
  heartbeat_interval: number
  compression: boolean
}
export const DEFAULT_CONFIG: Readonly<ClientConfig>
export function normalizeConfig(raw: unknown, fallback?: ClientConfig): ClientConfig
