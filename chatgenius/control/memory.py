"""The control plane's channel and shared state in process (`python app.py`): see ControlStore."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from gevent.queue import Empty, Queue


class MemoryControl:
    """See ControlStore; a mailbox exists from the first receive or reply until discarded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._mailboxes: dict[str, Queue] = {}
        self._marks: dict[str, float] = {}  # throttle key -> window end
        self._flags: dict[str, bool] = {}
        self.on_control: Callable[[bytes], None] | None = None

    def publish_control(self, payload: bytes) -> int:
        """See ControlStore.publish_control: one process, so a direct call."""
        if self.on_control is None:
            return 0
        self.on_control(payload)
        return 1

    def reply(self, mailbox: str, answer: str, ttl: float) -> None:
        """See ControlStore.reply: an answer for an asker already gone is dropped."""
        box = self._mailboxes.get(mailbox)
        if box is not None:  # the asker is gone otherwise: drop the late answer
            box.put(answer)

    def receive(self, mailbox: str, timeout: float) -> str | None:
        """See ControlStore.receive."""
        box = self._mailboxes.setdefault(mailbox, Queue())
        try:
            return box.get(timeout=max(0.0, timeout))
        except Empty:
            return None

    def discard(self, mailbox: str) -> None:
        """See ControlStore.discard."""
        self._mailboxes.pop(mailbox, None)

    def first_within(self, key: str, seconds: float) -> bool:
        """See ControlStore.first_within: expired marks are pruned past 4096 keys."""
        now = self._clock()
        if len(self._marks) > 4096:
            self._marks = {k: end for k, end in self._marks.items() if end > now}
        if self._marks.get(key, 0.0) > now:
            return False
        self._marks[key] = now + seconds
        return True

    def flags(self) -> dict[str, bool]:
        """See ControlStore.flags."""
        return dict(self._flags)

    def set_flags(self, changes: Mapping[str, bool | None]) -> None:
        """See ControlStore.set_flags."""
        for name, value in changes.items():
            if value is None:
                self._flags.pop(name, None)
            else:
                self._flags[name] = value
