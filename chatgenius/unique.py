"""Names unique per call without asking the OS for randomness each time (request ids, epochs).

Why: drawing fresh randomness per name is a getrandom(2) call per name (uuid4,
`secrets`), a visible share of a publish's system calls when a name is made
per request or per publish. Uniqueness is what these names need, not secrecy:
a random prefix per process, drawn again in a forked child (gunicorn's
workers), and a counter from a random start never repeat within the prefix.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable


class UniqueNames:
    """Call it for a name: `render(prefix, n)`, `n` the next of a counter under this process' prefix."""

    def __init__(self, prefix: Callable[[], str], start_below: int, render: Callable[[str, int], str]) -> None:
        self._new_prefix = prefix
        self._start_below = start_below
        self._render = render
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        """A new prefix and counter start (run in every forked child)."""
        self.prefix = self._new_prefix()
        self.counter = itertools.count(secrets.randbelow(self._start_below))

    def __call__(self) -> str:
        return self._render(self.prefix, next(self.counter))
