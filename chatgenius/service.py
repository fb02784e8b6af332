"""The realtime service's use cases: identify, open a stream, poll, publish.

Plain Python over the bus and the verifier; the Flask blueprints only turn
requests into these calls and results into responses.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Sequence

from limits import parse_many

from . import log
from .auth import AuthError, DevIssuer, Identity, Verifier, bearer
from .bus.base import BusUnavailable, EventBus, Published, Replay
from .config import Settings
from .cursor import Cursor, CursorError
from .errors import ServiceError, bus_or_503, bus_unavailable
from .events import Draft, EventError, parse_channels
from .flags import Flags
from .leases import ConnectionLeases
from .publishing import Publisher, PublishError, checked_key
from .state.base import SharedState
from .state.memory import MemoryState
from .stream import StreamSession, control_frame, jittered, open_session
from .streams import Streams
from .subscriber import Subscriber
from .tickets import Tickets


def unauthorized(reason: str, message: str) -> ServiceError:
    """A 401 with the RFC 6750 challenge, logged as `auth.fail` with its reason (never the credential)."""
    log.event("auth.fail", logging.WARNING, reason=reason, error=message)
    challenge = 'Bearer realm="chatgenius"'
    if reason != "missing":  # RFC 6750, 3.1: no error code when no credential was sent at all
        challenge += f', error="invalid_token", error_description="{reason}"'
    return ServiceError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge}, extra={"reason": reason})


def reconnect_frame(retry_ms: int) -> bytes:
    """`system.reconnect` with a jittered retry: how a stream ends when the server sends it away
    (feed lost, admin kick), so that thousands of clients do not come back in the same instant."""
    return control_frame("system.reconnect", {"retry_ms": jittered(retry_ms)})


class Realtime:
    """Everything a request needs, built once per process by the factory."""

    def __init__(
        self,
        settings: Settings,
        bus: EventBus,
        verifier: Verifier,
        dev: DevIssuer | None,
        state: SharedState | None = None,
        on_write: Callable[[list[bytes]], None] | None = None,
        published: Sequence[Callable[[Sequence[Draft]], None]] = (),
        streams: Streams | None = None,
    ) -> None:
        """`on_write` hears each write of live frames to any stream (the hot path: one call), and
        `published` the drafts each publish actually published (both: telemetry.py)."""
        self.settings = settings
        self.bus = bus
        self.verifier = verifier
        self.dev = dev
        self.flags = Flags(settings)
        self.worker_id = 0
        self.draining = False
        # Streams this process accepts (gunicorn's worker_connections, set by drain.watch): a
        # detached stream (stream.py) leaves gunicorn's pool, so the pool no longer counts it.
        self.capacity: int | None = None
        # This process' open streams; observers (telemetry, presence) register with streams.observe.
        self.streams = streams if streams is not None else Streams()
        self.on_write = on_write
        self._published = list(published)
        state = state if state is not None else MemoryState()
        self.tickets = Tickets(state, settings.ticket_ttl)
        self.leases = ConnectionLeases(state, settings.max_connections_per_user, settings.lease_ttl)
        # RATE_LIMIT_PUBLISH for POST /events, counted by the bus inside the publish itself
        # (EventBus.publish quotas) rather than by flask-limiter's own Redis round trip.
        self.publish_limits = [(item, item.amount, item.get_expiry()) for item in parse_many(settings.rate_limit_publish)]
        # Every publish goes through this one (POST /events, the app's own code: chatgenius.realtime(app)).
        self.publisher = Publisher(
            bus, settings.max_event_bytes, [(str(item), amount, seconds) for item, amount, seconds in self.publish_limits],
            published=self._published,
        )

    # -- identity ---------------------------------------------------------------
    def identify(self, authorization: str | None) -> Identity:
        """The caller's Identity from an Authorization header, or a 401 with the reason."""
        try:
            identity = self.verifier.verify(bearer(authorization))
        except AuthError as exc:
            raise unauthorized(exc.reason, str(exc)) from None
        log.event("auth.ok", logging.DEBUG, user_id=identity.sub)
        return identity

    def issue_ticket(self, identity: Identity) -> dict:
        """A single-use ticket for `GET /stream?ticket=` (browsers' EventSource cannot send headers)."""
        with bus_or_503():
            issued = self.tickets.issue(identity)
        if issued is None:
            raise unauthorized("expired", "token expires too soon to issue a ticket; refresh it first")
        ticket, expires_in = issued
        log.event("ticket.issue", user_id=identity.sub, expires_in=expires_in)
        return {"ticket": ticket, "expires_in": expires_in}

    def redeem_ticket(self, ticket: str) -> Identity:
        """The user a ticket was issued to, once; 401 for an unknown, used or expired ticket."""
        with bus_or_503():
            identity = self.tickets.redeem(ticket)
        if identity is None:
            raise unauthorized("bad_ticket", "ticket is unknown, used or expired; get a new one from POST /tickets")
        log.event("auth.ok", logging.DEBUG, user_id=identity.sub, via="ticket")
        return identity

    def authorize(self, identity: Identity, raw_channels: str | None) -> list[str]:
        """The requested channels, parsed and each readable by `identity`, or a 400/403 naming them."""
        try:
            channels = parse_channels(raw_channels, self.settings.max_channels_per_stream)
        except EventError as exc:
            raise ServiceError(exc.status, exc.code, str(exc)) from None
        denied = identity.forbidden(channels)
        if denied:
            raise ServiceError(403, "forbidden", f"not allowed to read {denied[0]!r}", extra={"channels": denied})
        return channels

    # -- streams ------------------------------------------------------------------
    def sse_disabled_error(self) -> ServiceError:
        """The 503 a stream gets while SSE is switched off: it names the long-poll URL to use instead."""
        return ServiceError(503, "sse_disabled", "streaming is switched off; use long-polling", extra={"poll_url": "/poll"})

    def open_stream(self, identity: Identity, channels: list[str], last_event_id: str | None) -> tuple[StreamSession, dict]:
        """Admit, lease and open one stream (subscribe, then replay after the cursor), or refuse it."""
        if not self.flags.enable_sse:
            raise self.sse_disabled_error()
        if self.draining:
            raise ServiceError(503, "draining", "this worker is shutting down; retry", headers={"Retry-After": "1"})
        if self.capacity is not None and len(self.bus.hub.subscribers) >= self.capacity:
            raise ServiceError(503, "at_capacity", "this worker holds as many streams as it may; retry", headers={"Retry-After": "1"})
        after = _cursor(last_event_id, self.bus.parse_cursor)
        sub = Subscriber(uuid.uuid4().hex, identity.sub, channels, self.settings.queue_max_bytes)
        sub.resumed = after is not None
        sub.worker = self.worker_id
        deadline = None
        if identity.exp is not None:
            margin = min(random.uniform(2.0, 6.0), max(0.0, (identity.exp - time.time()) / 3))
            deadline = identity.exp - margin
        self._lease(identity.sub, sub.id)
        try:
            session = open_session(
                self.bus, sub, after, self.settings.history_maxlen,
                self.settings.heartbeat_interval, self.settings.reconnect_retry_ms, deadline, self.on_write,
            )
        except BusUnavailable as exc:
            self.leases.release(identity.sub, sub.id)
            raise bus_unavailable(exc) from None
        except BaseException:
            self.leases.release(identity.sub, sub.id)
            raise
        session.on_close = self._closed
        connected = {
            "connection_id": sub.id,
            "user_id": identity.sub,
            "channels": sorted(sub.channels),
            "heartbeat_interval": self.settings.heartbeat_interval,
            "resumed": sub.resumed,
        }
        log.event(
            "connection.open", connection_id=sub.id, user_id=identity.sub, channels=connected["channels"],
            resumed=sub.resumed, replayed=len(session.replay.events), reset=session.replay.reset,
        )
        self.streams.opened(session)
        return session, connected

    def _lease(self, user: str, connection_id: str) -> None:
        """Take one of the user's MAX_CONNECTIONS_PER_USER slots (streams and waiting long-polls, all
        workers and hosts), or 429."""
        with bus_or_503():
            lease = self.leases.acquire(user, connection_id)
        if not lease.granted:
            log.event("connection.reject", logging.INFO, user_id=user, reason="connection_limit", held=lease.held)
            retry_after = max(1, min(int(self.leases.ttl), math.ceil(lease.retry_after)))
            raise ServiceError(
                429, "connection_limit",
                f"at most {self.leases.limit} concurrent streams and long-polls per user; close one first",
                headers={"Retry-After": str(retry_after)}, extra={"limit": self.leases.limit},
            )

    def _closed(self, session: StreamSession) -> None:
        sub = session.sub
        self.leases.release(sub.user_id, sub.id)
        log.event(
            "connection.close", connection_id=sub.id, user_id=sub.user_id, reason=session.stats.end_reason,
            duration=round(time.time() - sub.opened, 3), events_sent=sub.sent,
        )
        self.streams.closed(session)

    def announce_published(self, drafts: Sequence[Draft]) -> None:
        """Tell the publish observers of drafts published without the Publisher (chat's user.typing)."""
        for hook in self._published:
            hook(drafts)

    def reconnect_frame(self, sub: Subscriber) -> bytes:
        """The `system.reconnect` frame a stream ends with when the service asks the client to come back."""
        return reconnect_frame(self.settings.reconnect_retry_ms)

    # -- long-poll ------------------------------------------------------------------
    def poll(self, identity: Identity, channels: list[str], raw_cursor: str | None, timeout: float) -> dict:
        """One long-poll: events after the cursor, waiting up to `timeout` s for the first one."""
        after = _cursor(raw_cursor, self.bus.parse_cursor)
        with bus_or_503():
            if after is None:
                return {"events": [], "cursor": str(self.bus.head()), "reset": False}
            sub = Subscriber(uuid.uuid4().hex, identity.sub, channels, self.settings.queue_max_bytes)
            # A waiting long-poll holds a connection like a stream: it takes one of the same slots.
            self._lease(identity.sub, "poll:" + sub.id)
            try:
                self.bus.attach(sub, channels)
                try:
                    found = self.bus.replay(channels, after, self.settings.history_maxlen)
                    live: list[str] = []
                    if not found.events and not found.reset:
                        frames = sub.take(timeout)
                        if any(seq for seq, _ in frames):
                            found = self.bus.replay(channels, after, self.settings.history_maxlen)
                        live = [_envelope(f) for seq, f in frames if not seq]
                finally:
                    self.bus.detach(sub)
            finally:
                self.leases.release(identity.sub, "poll:" + sub.id)
        return _poll_result(found, live)

    # -- publishing -------------------------------------------------------------------
    def publish(self, identity: Identity, payload: object, idempotency_key: str | None = None) -> Published:
        """POST /events: `payload` is the JSON body, `idempotency_key` the header as sent (None if absent).

        The answer is publishing.answer(result). Keys are scoped to the caller
        (`user:<sub>`); a repeat is never refused by the rate limit (see EventBus.publish_once).
        """
        if not identity.can_publish:
            raise ServiceError(403, "forbidden", "publishing needs the publish:events permission")
        key = checked_key(idempotency_key)
        drafts = self.publisher.drafts(payload)
        try:
            done = self.publisher.send(drafts, key, user=identity.sub)
        except PublishError as exc:
            if exc.code == "rate_limited":
                limit = exc.message.removeprefix("rate limit exceeded: ")
                log.event("request.reject", logging.INFO, reason="rate_limited", path="/events", limit=limit)
            raise
        # One line per request at debug only; the `broadcast` summary (telemetry.py) is the info-level view.
        log.event(
            "publish", logging.DEBUG, user_id=identity.sub, count=len(done.ids), event_type=drafts[0].type,
            replayed=done.replayed, repeats=len(done.repeats),
        )
        return done


def _cursor(raw: str | None, parse: Callable[[str], Cursor]) -> Cursor | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        return parse(raw.strip())
    except CursorError as exc:
        raise ServiceError(400, "bad_cursor", str(exc)) from None


def _envelope(frame: bytes) -> str:
    """The JSON of a live ephemeral frame (its `data:` line)."""
    for line in frame.split(b"\n"):
        if line.startswith(b"data: "):
            return line[6:].decode()
    return "{}"


def _poll_result(found: Replay, live: list[str]) -> dict:
    """Events and the next cursor: the head of the same snapshot, so nothing between is skipped."""
    events = [json.loads(r.envelope) for r in found.events] + [json.loads(e) for e in live]
    return {"events": events, "cursor": str(found.head), "reset": bool(found.reset), "reset_channels": found.reset}
