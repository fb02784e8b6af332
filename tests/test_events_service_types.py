"""user.presence is in the catalog but the service's own (it follows connections): a publisher cannot forge it."""

from __future__ import annotations

import pytest

from chatgenius.events import EventError, drafts_from_request
from chatgenius.presence.base import presence_draft


def test_publishing_user_presence_is_refused_alone_and_in_a_batch() -> None:
    forged = {"channel": "channel:general", "type": "user.presence", "data": {"user_id": "ceo", "status": "online"}}
    with pytest.raises(EventError) as single:
        drafts_from_request(forged, 65536)
    assert single.value.code == "bad_type" and single.value.status == 400
    ok = {"channel": "channel:general", "type": "message.created", "data": {}}
    with pytest.raises(EventError) as batch:
        drafts_from_request({"events": [ok, forged]}, 65536)
    assert str(batch.value).startswith("events[1]: user.presence is sent by the service itself")


def test_the_service_still_announces_presence_itself() -> None:
    assert presence_draft("channel:general", "alice", "online").type == "user.presence"
