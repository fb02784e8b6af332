"""Whether this run is CI: any truthy CI variable counts (1, true, yes, on; any case).

CI services set CI=true, some set CI=1, and .ci/run keeps whatever was preset:
an exact comparison with "true" would let a CI=1 machine skip silently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

TRUTHY = frozenset({"1", "true", "yes", "on"})


def under_ci(environ: Mapping[str, str] | None = None) -> bool:
    """True if CI is set to a truthy value in `environ` (default: the process environment)."""
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() in TRUTHY
