"""LOG_FORMAT=text (python app.py on a terminal): the same records as the JSON lines, for a person, redacted alike."""

from __future__ import annotations

import logging
import re

import pytest

from chatgenius import config
from chatgenius.log import JsonFormatter, TextFormatter

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6MX0.c2lnbmF0dXJlLXZhbHVl"


def record(**fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("chatgenius", logging.WARNING, __file__, 1, "", (), None)
    for key, value in fields.items():
        setattr(rec, key, value)
    return rec


def test_text_line_has_time_level_event_and_fields_with_credentials_redacted() -> None:
    rec = record(event="auth.fail", reason="expired", user_id=None, token="secret-1", error=f"refused {JWT}", channels=["a", "b"])
    line = TextFormatter().format(rec)
    expected = r'\d\d:\d\d:\d\d warning auth\.fail error=refused \[redacted\] reason=expired token=\[redacted\] channels=\["a", "b"\]'
    assert re.fullmatch(expected, line), line
    assert "secret-1" not in line and "c2lnbmF0dXJl" not in line and "user_id" not in line
    assert "secret-1" not in JsonFormatter().format(rec)


def test_a_traceback_goes_below_its_line() -> None:
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        import sys

        rec = logging.LogRecord("chatgenius", logging.ERROR, __file__, 1, "", (), sys.exc_info())
    rec.event = "error"
    first, *rest = TextFormatter().format(rec).split("\n")
    assert first.endswith("error   error") and rest[0] == "Traceback (most recent call last):" and rest[-1] == "ZeroDivisionError: boom"


def test_log_format_is_json_unless_asked_and_checked() -> None:
    assert config.load({"AUTH_MODE": "dev"}).log_format == "json"
    assert config.load({"AUTH_MODE": "dev", "LOG_FORMAT": "Text"}).log_format == "text"
    with pytest.raises(config.ConfigError, match="LOG_FORMAT: expected json or text, got 'yaml'"):
        config.load({"AUTH_MODE": "dev", "LOG_FORMAT": "yaml"})
