"""Structured JSON-lines logs: event names, fields, secret redaction everywhere."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.config import Secret
from engine.logs import LogSetup, RedactingFilter, Redactor, configure_logging

KEY = "paper-key-0123456789abcdef"
SECRET = 'paper-secret-"quoted"\\slash-fedcba9876543210'


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[tuple[io.StringIO, Path, LogSetup]]:
    stream = io.StringIO()
    path = tmp_path / "logs" / "engine.jsonl"
    setup = configure_logging("debug", path, [KEY, Secret(SECRET)], stream=stream)
    yield stream, path, setup
    setup.close()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_log_line_when_written_then_json_with_ts_level_event_and_extras(
    capture: tuple[io.StringIO, Path, LogSetup],
) -> None:
    stream, path, setup = capture
    log = logging.getLogger("engine.test")
    log.info(
        "order_sent cid=%s qty=%s", "e-1", Decimal("0.010"), extra={"cid": "e-1", "qty": Decimal("0.010")}
    )
    log.warning("Something Happened in a library")
    log.info("clash", extra={"level": "x", "msg_extra": [1, {"a": Decimal("1.5")}]})
    for h in setup.handlers:
        h.flush()
    first, second, third = _lines(stream)
    assert first["event"] == "order_sent" and first["level"] == "info" and first["logger"] == "engine.test"
    assert first["msg"] == "order_sent cid=e-1 qty=0.010"
    assert first["cid"] == "e-1" and first["qty"] == "0.010"
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert second["event"] == "log" and second["level"] == "warning"
    assert third["x_level"] == "x" and third["msg_extra"] == [1, {"a": "1.5"}]
    assert [json.loads(x) for x in path.read_text().splitlines()] == [first, second, third]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_secrets_when_in_message_args_extras_and_exception_then_redacted_everywhere(
    capture: tuple[io.StringIO, Path, LogSetup],
) -> None:
    stream, path, setup = capture
    log = logging.getLogger("engine.test")
    log.info(f"auth_header key={KEY}")
    log.info("signing key=%s secret=%s", KEY, SECRET)
    log.info("extras", extra={"api_key": KEY, "nested": {"s": [SECRET]}, "obj": Secret(SECRET)})
    try:
        raise RuntimeError(f"venue refused signature made with {SECRET} for {KEY}")
    except RuntimeError:
        log.exception("venue_error")
    logging.getLogger("aiohttp.client").error("url=https://x/?apiKey=%s", KEY)
    for h in setup.handlers:
        h.flush()
    text = stream.getvalue() + path.read_text()
    assert KEY not in text and SECRET not in text
    assert json.dumps(SECRET)[1:-1] not in text
    lines = _lines(stream)
    assert len(lines) == 5
    assert lines[0]["msg"] == "auth_header key=***"
    assert lines[1]["msg"] == "signing key=*** secret=***"
    assert lines[2]["api_key"] == "***" and lines[2]["nested"] == {"s": ["***"]} and lines[2]["obj"] == "***"
    assert "RuntimeError: venue refused signature made with *** for ***" in lines[3]["exc"]
    assert lines[4]["msg"] == "url=https://x/?apiKey=***"


def test_configure_when_called_twice_then_handlers_replaced_not_doubled(tmp_path: Path) -> None:
    a, b = io.StringIO(), io.StringIO()
    configure_logging("info", None, [], stream=a)
    setup = configure_logging("info", None, [], stream=b)
    try:
        logging.getLogger("engine.x").info("hello there")
        assert a.getvalue() == "" and len(b.getvalue().splitlines()) == 1
    finally:
        setup.close()


def test_level_when_warning_then_info_dropped_and_bad_level_refused() -> None:
    s = io.StringIO()
    setup = configure_logging("warning", None, [], stream=s)
    try:
        logging.getLogger("engine.x").info("dropped")
        logging.getLogger("engine.x").error("kept")
        assert [x["event"] for x in _lines(s)] == ["kept"]
    finally:
        setup.close()
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("chatty", None, [])


def test_redacting_filter_when_on_a_plain_handler_then_secret_gone() -> None:
    s = io.StringIO()
    handler = logging.StreamHandler(s)
    handler.setFormatter(logging.Formatter("%(message)s %(k)s"))
    handler.addFilter(RedactingFilter(Redactor([KEY])))
    log = logging.getLogger("engine.plain")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("key %s", KEY, extra={"k": KEY})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert s.getvalue() == "key *** ***\n"


def test_short_secret_when_configured_then_ignored() -> None:
    assert Redactor(["abc", "", None]).secrets == ()
