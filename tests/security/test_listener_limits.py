"""Pre-auth limits of the webhook listener against the real sidecar over HTTP; each one is held and
the server still answers a good request afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from providers.base import Verification, WebhookRequest
from providers.mock import MockProvider, MockSettings
from tests.e2e.harness import Running, make_config, start
from voicecall_server.webhook.listener import WebhookListener

from .rawhttp import RawRequest

PATH = "/voice/webhook"
GOOD_BODY = json.dumps({"events": []}).encode()
SIGNATURE = "x-mock-signature"


class SignedMock(MockProvider):
    """The mock provider with a required signature header, as the real providers have."""

    signature_headers: tuple[str, ...] = (SIGNATURE,)

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        ok = hmac.compare_digest(request.headers.get(SIGNATURE, ""), "good")
        return Verification(ok, reason="" if ok else "Invalid signature", checked_url=request.url)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    running = await start(make_config(tmp_path / "s"))
    yield running
    await running.close()


@pytest.fixture
async def signed(tmp_path: Path) -> AsyncIterator[Running]:
    running = await start(make_config(tmp_path / "s"), provider=SignedMock(MockSettings()))
    yield running
    await running.close()


def listener(running: Running) -> WebhookListener:
    assert running.sidecar.listener is not None
    return running.sidecar.listener


def tune(running: Running, read_timeout_s: float) -> None:
    target = listener(running)
    target.settings = dataclasses.replace(target.settings, preauth_read_timeout_s=read_timeout_s)


async def assert_healthy(running: Running, headers: dict[str, str] | None = None) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(running.webhook_url, data=GOOD_BODY, headers=headers or {}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["ok"] is True
    assert len(listener(running).inflight) == 0
    assert running.sidecar.manager.live_count == 0


async def test_declared_oversized_body_is_413(server: Running) -> None:
    req = await RawRequest.open(
        server.sidecar.ports.http, "POST", PATH, {"Content-Length": str(64 * 1024 + 1)}
    )
    try:
        assert (await req.reply()).status == 413
    finally:
        await req.close()
    await assert_healthy(server)


async def test_chunked_body_over_the_cap_is_413(server: Running) -> None:
    chunk = b"a" * 40_000
    framed = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(2)) + b"0\r\n\r\n"
    req = await RawRequest.open(server.sidecar.ports.http, "POST", PATH, {"Transfer-Encoding": "chunked"})
    try:
        await req.send(framed)
        assert (await req.reply()).status == 413
    finally:
        await req.close()
    await assert_healthy(server)


async def test_body_of_exactly_the_cap_is_read(server: Running) -> None:
    body = GOOD_BODY + b" " * (64 * 1024 - len(GOOD_BODY))
    async with aiohttp.ClientSession() as http:
        async with http.post(server.webhook_url, data=body) as resp:
            assert resp.status == 200


async def test_slow_body_is_408(server: Running) -> None:
    tune(server, 0.3)
    req = await RawRequest.open(server.sidecar.ports.http, "POST", PATH, {"Content-Length": "100"}, b'{"ev')
    try:
        await req.send(b"en")  # a trickle that never completes the declared length
        reply = await req.reply()
        assert reply.status == 408
    finally:
        await req.close()
    await assert_healthy(server)


async def _wait_inflight(running: Running, ip: str, count: int) -> None:
    # Polls: the limiter has no event to wait on, and this is bounded by the timeout.
    async with asyncio.timeout(10):
        while listener(running).inflight.in_flight(ip) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_more_than_eight_pending_requests_from_one_ip_is_429(server: Running) -> None:
    port = server.sidecar.ports.http
    headers = {"Content-Length": str(len(GOOD_BODY)), "Content-Type": "application/json"}
    pending = [await RawRequest.open(port, "POST", PATH, headers) for _ in range(8)]
    extra: list[RawRequest] = []
    try:
        await _wait_inflight(server, "127.0.0.1", 8)
        ninth = await RawRequest.open(port, "POST", PATH, headers, GOOD_BODY)
        extra.append(ninth)
        assert (await ninth.reply()).status == 429
        # Another source address is not affected by the first one's cap.
        other = await RawRequest.open(port, "POST", PATH, headers, GOOD_BODY, source="127.0.0.2")
        extra.append(other)
        assert (await other.reply()).status == 200
        # The held requests complete normally once their bodies arrive.
        for req in pending:
            await req.send(GOOD_BODY)
        assert [(await req.reply()).status for req in pending] == [200] * 8
    finally:
        for req in [*pending, *extra]:
            await req.close()
    await assert_healthy(server)


async def test_missing_signature_header_is_401_before_the_body_is_read(signed: Running) -> None:
    # A long read timeout: had the listener waited for the body, the answer would not be a 401.
    tune(signed, 60.0)
    req = await RawRequest.open(signed.sidecar.ports.http, "POST", PATH, {"Content-Length": "50000"})
    try:
        reply = await req.reply()
        assert reply.status == 401
        assert b"signature" in reply.body
    finally:
        await req.close()
    assert len(listener(signed).inflight) == 0
    async with aiohttp.ClientSession() as http:
        async with http.post(signed.webhook_url, data=GOOD_BODY, headers={SIGNATURE: "forged"}) as resp:
            assert resp.status == 401
    await assert_healthy(signed, {SIGNATURE: "good"})


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_wrong_method_is_405(server: Running, method: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, server.webhook_url, data=GOOD_BODY) as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "POST"
    await assert_healthy(server)


async def test_other_paths_are_not_the_webhook(server: Running) -> None:
    base = f"http://127.0.0.1:{server.sidecar.ports.http}"
    async with aiohttp.ClientSession() as http:
        for path in (PATH + "x", PATH + "/extra", "/voice", "/" + PATH.upper().lstrip("/")):
            async with http.post(base + path, data=GOOD_BODY) as resp:
                assert resp.status == 404, path
    await assert_healthy(server)
