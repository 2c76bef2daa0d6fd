"""configure_logging: JSON lines with the call id, the text format, and secret redaction."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from voicecall_server.logs import (
    MASK,
    LogFormat,
    bind_call,
    configure_logging,
    current_call_id,
    redact,
    set_call_id,
)

CALL = "0b0e8a34-1f55-4a5e-9f0c-3c2b6f1a2d7e"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
OPENAI_KEY = "sk-proj-AbCdEf0123456789xyzXYZ"
log = logging.getLogger("voicecall.test")


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


Install = Callable[..., Captured]


@pytest.fixture
def install() -> Iterator[Install]:
    """configure_logging into a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    level = root.level
    out = Captured()
    installed: list[logging.Handler] = []

    def configure(fmt: LogFormat, level: str = "debug") -> Captured:
        installed.append(configure_logging(level, fmt, stream=out.stream))
        return out

    yield configure
    for handler in installed:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def test_json_lines_parse_with_the_standard_fields(install: Install) -> None:
    out = install("json")
    log.info("dialled %s in %d ms", "+15551230001", 42)
    [entry] = out.json()
    assert entry["level"] == "info"
    assert entry["logger"] == "voicecall.test"
    assert entry["message"] == "dialled +15551230001 in 42 ms"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
    assert "call_id" not in entry
    assert "exception" not in entry


def test_bound_call_id_is_on_every_line_until_unbound(install: Install) -> None:
    out = install("json")
    with bind_call(CALL):
        log.info("inside")
        logging.getLogger("aiohttp.access").warning("a library logger too")
    log.info("outside")
    entries = out.json()
    assert [e.get("call_id") for e in entries] == [CALL, CALL, None]
    assert current_call_id.get() is None


def test_extra_call_id_wins_over_the_bound_one(install: Install) -> None:
    out = install("json")
    with bind_call("bound-call"):
        log.info("explicit", extra={"call_id": CALL})
    [entry] = out.json()
    assert entry["call_id"] == CALL


async def test_call_id_follows_tasks_created_after_binding(install: Install) -> None:
    out = install("json")

    async def timer() -> None:
        log.info("timer fired")

    async def rpc() -> None:
        set_call_id(CALL)
        await asyncio.create_task(timer())

    await asyncio.create_task(rpc())
    log.info("elsewhere")
    assert [e.get("call_id") for e in out.json()] == [CALL, None]


def test_exception_text_and_extras_are_included(install: Install) -> None:
    out = install("json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", extra={"provider": "twilio", "attempt": 3})
    [entry] = out.json()
    assert entry["level"] == "error"
    assert "RuntimeError: boom" in entry["exception"]
    assert entry["exception"].startswith("Traceback")
    assert entry["provider"] == "twilio"
    assert entry["attempt"] == 3


def test_text_format_is_unchanged(install: Install) -> None:
    out = install("text")
    with bind_call(CALL):
        log.warning("hello %s", "world")
    [line] = out.lines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING voicecall.test: hello world", line)


def test_level_filters_lines(install: Install) -> None:
    out = install("json", "warning")
    log.info("quiet")
    log.warning("loud")
    assert [e["message"] for e in out.json()] == ["loud"]


def test_reconfiguring_replaces_the_handler(install: Install) -> None:
    install("text")
    out = install("json")
    log.info("once")
    assert len(out.lines()) == 1
    assert json.loads(out.lines()[0])["message"] == "once"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text' or 'json"):
        configure_logging("info", "xml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("secret", "text"),
    [
        ("abc.def-ghi_jkl", "sent Authorization: Bearer abc.def-ghi_jkl to the model"),
        ("QUMxMjM6c2VjcmV0", "header Basic QUMxMjM6c2VjcmV0"),
        (OPENAI_KEY, f"key {OPENAI_KEY} rejected"),
        ("sk_0123456789abcdef0123", "elevenlabs sk_0123456789abcdef0123"),
        ("KEY0183A2B7C4D5E6F7A8B9C0D1E2", "telnyx KEY0183A2B7C4D5E6F7A8B9C0D1E2 failed"),
        ("hunter2secret", "GET https://AC123:hunter2secret@api.twilio.com/2010-04-01"),
        ("tok3n-value", "wss://host/voice/stream?callId=1&token=tok3n-value&x=1"),
        ("s3cr3tvalue", 'config {"authToken": "s3cr3tvalue"}'),
    ],
)
def test_secret_shapes_are_masked_in_messages(install: Install, secret: str, text: str) -> None:
    out = install("json")
    log.info("%s", text)
    line = out.lines()[0]
    assert secret not in line
    assert MASK in json.loads(line)["message"]


def test_ids_are_not_mistaken_for_secrets() -> None:
    text = f"call {CALL} provider id CA{TWILIO_TOKEN} stream token missing"
    assert redact(text) == text


def test_secret_extras_are_masked(install: Install) -> None:
    out = install("json")
    log.info(
        "twilio client built",
        extra={"auth_token": "anything", "account": "AC" + TWILIO_TOKEN, "value": TWILIO_TOKEN},
    )
    [entry] = out.json()
    assert entry["auth_token"] == MASK
    assert entry["value"] == MASK
    assert entry["account"] == "AC" + TWILIO_TOKEN
    assert TWILIO_TOKEN not in out.lines()[0].replace("AC" + TWILIO_TOKEN, "")


def test_secrets_in_exceptions_are_masked_in_both_formats(install: Install) -> None:
    for fmt in ("json", "text"):
        out = install(fmt)
        out.stream.truncate(0)
        out.stream.seek(0)
        try:
            raise PermissionError(f"rejected Bearer {OPENAI_KEY}")
        except PermissionError:
            log.exception("model call failed")
        written = out.stream.getvalue()
        assert "PermissionError" in written
        assert OPENAI_KEY not in written
