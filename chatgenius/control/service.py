"""The control plane: ask every process of the deployment something, over the control channel.

A stream lives in one worker of one host, but a request about it (change its
channels, end it, list it) may land anywhere. The asker publishes one message
on the control channel (ControlStore); the store counts the processes it reached (Redis PUBLISH
returns the number of subscribed readers, one per process); each of them answers
into a reply mailbox (a Redis list with a short TTL), and the asker waits for
all answers, or for the first one that says "found", at most `timeout` s. A
process that owns nothing answers "not found" at once, so a missing stream is a
quick 404 rather than a timeout. Handlers run in their own greenlet: they may
block (attaching channels waits for the feed reader, which delivered the message).

Handlers look streams up in this process' one registry (streams.py).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import gevent

from .. import log
from ..bus.base import BusUnavailable
from .base import ControlStore

Handler = Callable[[dict[str, Any]], dict[str, Any] | None]


class ControlPlane:
    """Route operations to the process that owns a stream; gather answers from all of them."""

    def __init__(self, store: ControlStore, timeout: float = 2.0) -> None:
        self.store = store
        self.timeout = timeout
        self._handlers: dict[str, Handler] = {}
        store.on_control = self._received

    @staticmethod
    def whoami() -> dict[str, Any]:
        """How an answer names its process (pids are only unique per host)."""
        return {"worker": os.getpid(), "host": socket.gethostname()}

    # -- asking ---------------------------------------------------------------------------
    def handle(self, op: str, handler: Handler) -> None:
        """Answer `op` with `handler(message)`: a dict, or None for "not mine"."""
        self._handlers[op] = handler

    def broadcast(self, op: str, **fields: Any) -> int:
        """Tell every process (no answers); returns how many it reached."""
        return self.store.publish_control(_encode({"op": op, **fields}))

    def ask(self, op: str, fields: Mapping[str, Any], first_found: bool = False, timeout: float | None = None) -> list[dict[str, Any]]:
        """Every process' answer to `op` (only those that came in time); with `first_found`, stop at
        the first answer whose `found` is true. BusUnavailable if the control channel is down."""
        mailbox = "cg:r:" + uuid.uuid4().hex
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        answers: list[dict[str, Any]] = []
        try:
            reached = self.store.publish_control(_encode({"op": op, "reply": mailbox, **fields}))
            while len(answers) < reached:
                left = deadline - time.monotonic()
                raw = self.store.receive(mailbox, left) if left > 0 else None
                if raw is None:
                    break
                answer = json.loads(raw)
                answers.append(answer)
                if first_found and answer.get("found"):
                    break
        finally:
            self.store.discard(mailbox)
        return answers

    # -- answering ------------------------------------------------------------------------
    def _received(self, payload: bytes) -> None:
        """Called by the feed reader: never block it (handlers may need it), so answer in a greenlet."""
        try:
            message = json.loads(payload)
        except ValueError:
            log.event("control.bad_message", logging.WARNING, error="not JSON")
            return
        if isinstance(message, dict) and isinstance(message.get("op"), str):
            gevent.spawn(self._answer, message)

    def _answer(self, message: dict[str, Any]) -> None:
        handler = self._handlers.get(message["op"])
        result: dict[str, Any] | None = None
        if handler is not None:
            try:
                result = handler(message)
            except Exception as exc:
                log.event("control.error", logging.ERROR, op=message["op"], error=repr(exc), exc_info=exc)
                result = {"found": False, "error": "internal"}
        mailbox = message.get("reply")
        if isinstance(mailbox, str) and mailbox.startswith("cg:r:"):
            answer = {"found": False, **(result or {}), **self.whoami()}
            try:
                self.store.reply(mailbox, json.dumps(answer, separators=(",", ":")), 5 * self.timeout)
            except BusUnavailable as exc:
                log.event("control.reply_failed", logging.WARNING, op=message["op"], error=str(exc))


def _encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()
