"""The control seam: ControlStore, the control channel and the shared state behind ControlPlane
(control/service.py). Backends: control/memory.py (one process: the channel is a direct call) and
control/redis.py (the channel rides the process' one pub/sub connection, bus/redis_feed.py); both
pass tests/chat/test_stores.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol


class ControlStore(Protocol):
    """The control channel and the small shared state of the control plane (control/memory.py, control/redis.py)."""

    # The control channel (control/service.py owns `on_control`): one message to every process
    # of the deployment, this one included, e.g. "change stream X's channels", "flags changed".
    on_control: Callable[[bytes], None] | None

    def publish_control(self, payload: bytes) -> int:
        """Hand `payload` to `on_control` in every process; returns how many processes it reached."""

    def reply(self, mailbox: str, answer: str, ttl: float) -> None:
        """Append `answer` to `mailbox`; the mailbox vanishes `ttl` s after the last answer."""

    def receive(self, mailbox: str, timeout: float) -> str | None:
        """The oldest answer in `mailbox`, waiting up to `timeout` s; None if none came."""

    def discard(self, mailbox: str) -> None:
        """The asker is done with `mailbox`; late answers may be dropped."""

    def first_within(self, key: str, seconds: float) -> bool:
        """True for the first call with `key` in any `seconds`-long window, across processes (throttles)."""

    def flags(self) -> dict[str, bool]:
        """The runtime flag overrides stored by PUT /admin/flags."""

    def set_flags(self, changes: Mapping[str, bool | None]) -> None:
        """Store overrides; None removes one (back to the environment's default)."""
