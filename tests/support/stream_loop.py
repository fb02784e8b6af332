"""Helpers for the stream-loop tests: a bus that publishes inside the attach/replay race, frame parsing."""

from __future__ import annotations

from chatgenius.bus.memory import MemoryBus
from chatgenius.cursor import parse
from chatgenius.events import draft

CHAN = "channel:a"


def ev(n: int, etype: str = "message.created"):
    return draft({"channel": CHAN, "type": etype, "data": {"n": n}}, 65536)


class RacingBus(MemoryBus):
    """A real in-process bus whose next replay first publishes `race` (the attach/replay race, forced)."""

    def __init__(self) -> None:
        super().__init__(1000, 3600)
        self.race: list = []
        self.late: list | None = None  # when a list: the raced events' live frames wait here (see below)
        self.behind: list = []  # published once history is read: above the head, queued before the floor is set

    def replay(self, channels, after, limit):
        race, self.race = self.race, []
        if race:
            if self.late is None:
                self.publish(race)
            else:  # stored now, delivered live only later: Redis' reader may be behind the history read
                dispatch, self.hub.dispatch = self.hub.dispatch, lambda *a: self.late.append(a)  # type: ignore
                try:
                    self.publish(race)
                finally:
                    self.hub.dispatch = dispatch  # type: ignore[method-assign]
        found = super().replay(channels, after, limit)
        behind, self.behind = self.behind, []
        if behind:
            self.publish(behind)
        return found

    def deliver_late(self) -> None:
        for args in self.late or ():
            self.hub.dispatch(*args)


def frames_of(data: bytes) -> list[dict[str, str]]:
    """The SSE frames in `data` as {field: value} (comments and retry lines left out)."""
    out = []
    for block in data.split(b"\n\n"):
        fields = {}
        for line in block.decode().split("\n"):
            name, sep, value = line.partition(": ")
            if sep and name in ("id", "event", "data"):
                fields[name] = value
        if "event" in fields:
            out.append(fields)
    return out


def ids(frames: list[dict[str, str]]) -> list[int]:
    return [parse(f["id"]).seq for f in frames if "id" in f]
