"""Runtime flags: ENABLE_SSE and ENABLE_COMPRESSION, switchable while running (the rollback plan).

Defaults come from the environment (Settings); overrides live in the control
store (a Redis hash) so every worker and host agrees. A change is pushed on the
control channel, so workers apply it within milliseconds, and each worker
re-reads the overrides every FLAG_REFRESH (1 s) as a safety net for a missed
message (a reader reconnecting, a worker forked meanwhile): every worker sees a
change within 2 s.

SSE switched off: every open stream gets `system.fallback {"poll_url"}` and
ends; /stream answers 503 sse_disabled and /client-config says "poll", so
clients long-poll with the same cursor (nothing lost). Switched back on,
clients re-reading /client-config return to SSE by themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from . import log
from .background import Every, warn
from .config import Settings
from .control.base import ControlStore
from .stream import StreamSession, control_frame

NAMES = {"ENABLE_SSE": "enable_sse", "ENABLE_COMPRESSION": "enable_compression"}
POLL_URL = "/poll"


class Flags:
    """Runtime feature flags: defaults from the settings, overridable at run time."""

    def __init__(self, settings: Settings) -> None:
        self.enable_sse = settings.enable_sse
        self.enable_compression = settings.enable_compression

    def as_dict(self) -> dict[str, bool]:
        """The flags by their environment names (ENABLE_SSE, ENABLE_COMPRESSION)."""
        return {"ENABLE_SSE": self.enable_sse, "ENABLE_COMPRESSION": self.enable_compression}


class RuntimeFlags:
    """Keeps a process' `Flags` equal to defaults + stored overrides, and acts on SSE being turned off."""

    def __init__(
        self,
        flags: Flags,
        settings: Settings,
        store: ControlStore,
        streams: Iterable[StreamSession],
    ) -> None:
        self.flags = flags
        self.defaults = {name: bool(getattr(settings, attr)) for name, attr in NAMES.items()}
        self.store = store
        self.interval = settings.flag_refresh
        self._streams = streams  # this process' registry (streams.py): iterating it is a snapshot
        # Redis down: keep the flags we have, retry next round
        self._refresher = Every(self.interval, self.refresh, warn("flags.refresh_failed"))

    def current(self) -> dict[str, bool]:
        """The flags in force in this process, by environment name."""
        return {name: bool(getattr(self.flags, attr)) for name, attr in NAMES.items()}

    def update(self, changes: Mapping[str, bool | None]) -> dict[str, bool]:
        """Store overrides (None: back to the default) and apply them here; the caller tells the others."""
        self.store.set_flags(changes)
        self.refresh()
        return self.current()

    def refresh(self) -> None:
        """Read the overrides and apply them (BusUnavailable: keep what we have)."""
        self.apply(self.store.flags())

    def apply(self, overrides: Mapping[str, bool]) -> None:
        """Set the flags to env defaults plus `overrides`; with SSE off, move open streams to polling."""
        before = self.current()
        for name, attr in NAMES.items():
            setattr(self.flags, attr, bool(overrides.get(name, self.defaults[name])))
        after = self.current()
        if after != before:
            log.event("flags.changed", flags=after, previous=before)
        if not self.flags.enable_sse:
            # Every round, not only on the change: a stream that was opening meanwhile goes too.
            self.fall_back()

    def fall_back(self) -> int:
        """End every open stream of this process with system.fallback."""
        frame = control_frame("system.fallback", {"poll_url": POLL_URL})
        ended = 0
        for session in self._streams:
            if session.sub.end_reason is None:
                session.sub.end("sse_disabled", frame)
                ended += 1
        if ended:
            log.event("flags.fallback", streams=ended)
        return ended

    def start(self) -> None:
        """Apply the stored overrides now (a worker forked after a change serves it at once), then every interval."""
        if not self._refresher.running:
            try:
                self.refresh()
            except Exception as exc:
                self._refresher.on_error(exc)
            self._refresher.start()

    def close(self) -> None:
        """Stop the 1 s refresher."""
        self._refresher.stop()
