"""Property-based: arbitrary paths, headers and bodies POSTed to the real sidecar's webhook never
produce a 5xx or an unhandled exception, for the mock provider and for a signing provider (Twilio).

The server runs on the test's event loop; Hypothesis drives a blocking HTTP client from a worker
thread, so each example is a real request over loopback.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.harness import Running, make_config, start

PATH = "/voice/webhook"
_URL_CHARS = string.ascii_letters + string.digits + "-._~%/?&=+;:@!$'()*,[]"
# Visible Latin-1 plus space and tab: what an HTTP/1.1 header value may carry on the wire.
_VALUE_CHARS = st.characters(codec="latin-1", exclude_categories=["Cc"]) | st.sampled_from(" \t")
_INTERESTING = (
    "Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-For",
    "Forwarded",
    "X-Original-Host",
    "Ngrok-Forwarded-Host",
    "Content-Type",
    "X-Twilio-Signature",
    "Telnyx-Signature-Ed25519",
    "Telnyx-Timestamp",
    "X-Plivo-Signature-V3",
    "X-Plivo-Signature-V3-Nonce",
)
_HOSTISH = st.sampled_from(
    [
        "example.com",
        "evil.com@good.com",
        "[::1]:443",
        "[fe80::1%25eth0]",
        "a..b",
        "host:99999",
        "for=1.2.3.4;host=x.com;proto=https",
        'host="[2001:db8::1]:8443"',
        "https",
        "ftp",
        "",
    ]
)

paths = st.one_of(
    st.just(PATH),
    st.builds(lambda tail: PATH + tail, st.text(_URL_CHARS, max_size=40)),
    st.builds(lambda tail: "/" + tail, st.text(_URL_CHARS, max_size=40)),
)
header_names = st.one_of(
    st.sampled_from(_INTERESTING),
    st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=20),
)
header_values = st.one_of(_HOSTISH, st.text(_VALUE_CHARS, max_size=80).map(str.strip))
headers = st.dictionaries(header_names, header_values, max_size=8).map(
    lambda d: {
        k: v for k, v in d.items() if k.lower() not in ("content-length", "transfer-encoding", "connection")
    }
)
bodies = st.one_of(
    st.binary(max_size=1500),
    st.text(max_size=300).map(str.encode),
    st.sampled_from([b"", b"{}", b'{"events": [{}]}', b'{"events": "x"}', b"CallSid=CA1&CallStatus=ringing"]),
)


def post(port: int, path: str, hdrs: dict[str, str], body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
        if not any(k.lower() == "host" for k in hdrs):
            conn.putheader("Host", f"127.0.0.1:{port}")
        for name, value in hdrs.items():
            conn.putheader(name, value.encode("latin-1"))
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Connection", "close")
        conn.endheaders(body)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def run_properties(port: int) -> None:
    @settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(path=paths, hdrs=headers, body=bodies)
    def prop(path: str, hdrs: dict[str, str], body: bytes) -> None:
        status = post(port, path, hdrs, body)
        assert status < 500, (path, hdrs, body, status)

    prop()


async def check(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    await asyncio.to_thread(run_properties, running.sidecar.ports.http)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    # Nothing a stranger sent created a call.
    assert running.sidecar.manager.live_count == 0
    assert running.sidecar.listener is not None
    assert len(running.sidecar.listener.inflight) == 0


async def test_mock_webhook_never_fails_with_5xx(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    running = await start(make_config(tmp_path / "s"))
    try:
        await check(running, caplog)
    finally:
        await running.close()


async def test_twilio_webhook_never_fails_with_5xx(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_config(
        tmp_path / "s",
        provider="twilio",
        fromNumber="+15550001111",
        twilio={"accountSid": "AC" + "0" * 32, "authToken": "twilio-test-token"},
        webhookSecurity={"trustForwardingHeaders": True},
    )
    running = await start(cfg)
    try:
        await check(running, caplog)
    finally:
        await running.close()
