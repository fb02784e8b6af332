"""The exactly-once helper itself: a duplicate on the wire fails it even when the app saw each event once."""

from __future__ import annotations

import pytest

from .chat import assert_exactly_once_in_order


def test_a_duplicate_the_client_hid_still_fails() -> None:
    with pytest.raises(AssertionError, match="sent these more than once.*'e-2'"):
        assert_exactly_once_in_order(["e-1", "e-2"], ["e-1", "e-2"], wire=["e-1", "e-2", "e-2"])


def test_an_event_missing_from_the_wire_fails() -> None:
    with pytest.raises(AssertionError, match="on the wire"):
        assert_exactly_once_in_order(["e-1", "e-2"], ["e-1", "e-2"], wire=["e-1"])


def test_the_same_ids_once_on_the_wire_pass() -> None:
    assert_exactly_once_in_order(["e-1", "e-2"], ["e-1", "e-2"], wire=["e-1", "e-2"])
