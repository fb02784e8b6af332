"""The one error type the HTTP layer turns into `{"error", "message"}` JSON."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from .bus.base import BusUnavailable


class ServiceError(Exception):
    """A refusal with its HTTP status, stable code, message and extra headers/fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, object]:
        """The JSON error body: `error` (the code), `message`, and any extra fields."""
        return {"error": self.code, "message": self.message, **self.extra}


def bus_unavailable(reason: object, kind: type[ServiceError] = ServiceError) -> ServiceError:
    """The bus (Redis) cannot serve now: 503 with Retry-After, the client retries (contract: Errors).

    The one place this answer is built; `kind` keeps a caller's subclass (PublishError)."""
    return kind(503, "bus_unavailable", str(reason), headers={"Retry-After": "2"})


@contextmanager
def bus_or_503() -> Iterator[None]:
    """Run the block; a BusUnavailable it raises becomes the 503 answer (bus_unavailable)."""
    try:
        yield
    except BusUnavailable as exc:
        raise bus_unavailable(exc) from None
