"""/metrics on the real sidecar (in-process, loopback): what an operator scrapes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import aiohttp
import grpc
import pytest
from aiohttp.test_utils import make_mocked_request

from tests.e2e.harness import Running, make_config, start
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_server import store as store_module
from voicecall_server.metrics import _is_loopback

TO = "+15551230001"


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in Prometheus text format, or None when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


async def scrape(server: Running, headers: dict[str, str] | None = None) -> tuple[int, str]:
    url = f"http://127.0.0.1:{server.sidecar.ports.http}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers or {}) as resp:
        return resp.status, await resp.text()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    cfg = make_config(
        tmp_path / "store",
        mock={"callerReplies": ["yes please"], "replyAfterMs": 10, "answerAfterMs": 10},
    )
    running = await start(cfg)
    yield running
    await running.close()


async def test_calls_rpcs_and_turns_are_counted(server: Running) -> None:
    resp = await server.stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="Hello", mode=pb.CALL_MODE_CONVERSATION, request_id="r1")
    )
    await server.wait_state(resp.call_id, pb.CALL_STATE_LISTENING, pb.CALL_STATE_SPEAKING)
    turn = await server.stub.Continue(pb.ContinueRequest(call_id=resp.call_id, message="Anything else?"))
    assert turn.transcript == "yes please"
    status, live_text = await scrape(server)
    assert status == 200
    assert sample(live_text, "voicecall_live_calls", provider="mock", direction="outbound") == 1
    await server.stub.End(pb.EndRequest(call_id=resp.call_id))
    with pytest.raises(grpc.aio.AioRpcError):
        await server.stub.Status(pb.StatusRequest(call_id="no-such-call"))
    status, text = await scrape(server)
    assert status == 200
    assert sample(text, "voicecall_calls_started_total", provider="mock", direction="outbound") == 1
    assert (
        sample(
            text,
            "voicecall_calls_ended_total",
            provider="mock",
            direction="outbound",
            end_reason="hangup-bot",
        )
        == 1
    )
    assert sample(text, "voicecall_call_state_changes_total", state="answered") == 1
    assert sample(text, "voicecall_live_calls", provider="mock") is None
    assert sample(text, "voicecall_rpc_duration_seconds_count", method="Initiate", code="OK") == 1
    assert sample(text, "voicecall_rpc_duration_seconds_count", method="Continue", code="OK") == 1
    assert sample(text, "voicecall_rpc_duration_seconds_count", method="Status", code="NOT_FOUND") == 1
    assert sample(text, "voicecall_turn_latency_seconds_count", stage="total") == 1
    assert sample(text, "voicecall_turn_latency_seconds_count", stage="listen_wait") == 1
    assert (sample(text, "voicecall_turn_latency_seconds_sum", stage="total") or 0) > 0


async def test_webhook_outcomes_and_tail_streams_are_counted(server: Running) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(server.webhook_url, data=b"not json") as reply:
            assert reply.status == 400
        async with http.get(server.webhook_url) as reply:
            assert reply.status == 405
        async with http.post(server.webhook_url, json={"events": []}) as reply:
            assert reply.status == 200
    tail = server.stub.Tail(pb.TailRequest(call_id="nope"))
    with pytest.raises(grpc.aio.AioRpcError):
        async for _ in tail:
            pass
    # The server records a stream's end just after the client has its status: wait for it.
    for _ in range(100):
        _, text = await scrape(server)
        if sample(text, "voicecall_rpc_streams_total", method="Tail", code="NOT_FOUND") is not None:
            break
        await asyncio.sleep(0.02)
    assert sample(text, "voicecall_webhooks_total", provider="mock", outcome="malformed") == 1
    assert sample(text, "voicecall_webhooks_total", provider="mock", outcome="method") == 1
    assert sample(text, "voicecall_webhooks_total", provider="mock", outcome="accepted") == 1
    assert sample(text, "voicecall_rpc_streams_total", method="Tail", code="NOT_FOUND") == 1
    assert sample(text, "voicecall_tail_subscribers") is not None


async def test_the_store_reports_its_wal_and_checkpoints(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = server.sidecar.store
    _, text = await scrape(server)
    assert sample(text, "voicecall_store_wal_bytes") == store.wal_bytes() > 0
    assert sample(text, "voicecall_store_unsynced_commits") == store.unsynced
    assert sample(text, "voicecall_store_checkpoints_total", mode="passive") == 0
    # A lower threshold makes the next sync round checkpoint what the WAL holds.
    monkeypatch.setattr(store_module, "_CHECKPOINT_WAL_BYTES", 1)
    await server.stub.Initiate(pb.InitiateRequest(to_number=TO, message="Hello"))
    _, text = await scrape(server)
    assert (sample(text, "voicecall_store_checkpoints_total", mode="passive") or 0) >= 1
    assert sample(text, "voicecall_store_checkpoints_total", mode="truncate") == 0


async def test_each_sidecar_has_its_own_registry(tmp_path: Path, server: Running) -> None:
    other = await start(make_config(tmp_path / "other"))
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await other.stub.Status(pb.StatusRequest(call_id="x"))
        _, mine = await scrape(server)
        _, theirs = await scrape(other)
        assert sample(mine, "voicecall_rpc_duration_seconds_count", method="Status") is None
        assert sample(theirs, "voicecall_rpc_duration_seconds_count", method="Status", code="NOT_FOUND") == 1
    finally:
        await other.close()


async def test_token_protects_metrics(tmp_path: Path) -> None:
    running = await start(make_config(tmp_path / "s", metrics={"authToken": "s3cret-token"}))
    try:
        status, _ = await scrape(running)
        assert status == 401
        status, _ = await scrape(running, {"Authorization": "Bearer wrong"})
        assert status == 401
        status, text = await scrape(running, {"Authorization": "Bearer s3cret-token"})
        assert status == 200
        assert "voicecall_webhooks" in text
        assert "s3cret-token" not in repr(running.sidecar.config)
    finally:
        await running.close()


async def test_disabled_metrics_has_no_route(tmp_path: Path) -> None:
    running = await start(make_config(tmp_path / "s", metrics={"enabled": False}))
    try:
        status, _ = await scrape(running)
        assert status == 404
        assert running.sidecar._interceptors == []
    finally:
        await running.close()


async def test_remote_peers_are_refused_without_a_token(server: Running) -> None:
    assert server.sidecar.runner is not None
    app = server.sidecar.runner.app
    route = next(r for r in app.router.routes() if r.resource and r.resource.canonical == "/metrics")
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        ("203.0.113.9", 40000) if name == "peername" else default
    )
    request = make_mocked_request("GET", "/metrics", app=app, transport=transport)
    assert request.remote == "203.0.113.9"
    response = await route.handler(request)
    assert response.status == 403


@pytest.mark.parametrize(
    ("peer", "ok"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("127.8.0.2", True),
        ("10.0.0.1", False),
        ("", False),
        (None, False),
        ("unix-socket", False),
    ],
)
def test_loopback_detection(peer: str | None, ok: bool) -> None:
    assert _is_loopback(peer) is ok
