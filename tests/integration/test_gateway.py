"""The gateway adapter's method table, params and errors; the stdio bridge and the HTTP bridge."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from providers.mock import MockProvider
from tests.e2e.harness import Running
from voicecall_client import VoiceCallClient
from voicecall_client.gateway import METHODS, GatewayAdapter
from voicecall_client.gateway_bridge import main as bridge_main
from voicecall_client.gateway_bridge import make_http_app

from .conftest import CONNECTED, TO, StartSidecar, address, wait_for_state

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def adapter(client: VoiceCallClient) -> GatewayAdapter:
    return GatewayAdapter(client)


def test_method_table() -> None:
    assert set(METHODS) == {
        "voicecall.initiate",
        "voicecall.start",
        "voicecall.continue",
        "voicecall.speak",
        "voicecall.end",
        "voicecall.status",
        "voicecall.dtmf",
    }


@pytest.mark.parametrize(
    ("method", "params", "error"),
    [
        ("voicecall.initiate", {}, "message required"),
        ("voicecall.initiate", {"message": "  ", "to": TO}, "message required"),
        ("voicecall.initiate", {"message": "Hi", "mode": "loud"}, "mode must be notify or conversation"),
        ("voicecall.start", {"message": "Hi"}, "to required"),
        ("voicecall.start", {"to": " "}, "to required"),
        ("voicecall.continue", {"callId": "c1"}, "callId and message required"),
        ("voicecall.continue", {"message": "x"}, "callId and message required"),
        ("voicecall.speak", {"callId": "c1", "message": 7}, "callId and message required"),
        ("voicecall.end", {}, "callId required"),
        ("voicecall.dtmf", {"callId": "c1"}, "callId and digits required"),
    ],
)
async def test_params_validation(
    adapter: GatewayAdapter, method: str, params: dict[str, Any], error: str
) -> None:
    assert await adapter.call(method, params) == (False, {"error": error})


async def test_unknown_method_and_bad_params(adapter: GatewayAdapter) -> None:
    ok, payload = await adapter.call("voicecall.dial", {})
    assert not ok and payload["error"].startswith(
        "unknown method 'voicecall.dial'; known: voicecall.initiate"
    )
    assert await adapter.call("voicecall.end", ["c1"]) == (False, {"error": "params must be an object"})  # type: ignore[arg-type]
    assert await adapter.call("voicecall.end", None) == (False, {"error": "callId required"})


async def test_every_method_end_to_end(sidecar: Running, adapter: GatewayAdapter) -> None:
    provider = sidecar.sidecar.provider
    assert isinstance(provider, MockProvider)
    ok, placed = await adapter.call(
        "voicecall.initiate",
        {"message": " Hi ", "to": f" {TO} ", "mode": "conversation", "sessionKey": "s-1", "requestId": "r-1"},
    )
    assert ok and set(placed) == {"callId", "initiated"} and placed["initiated"] is True
    call_id = placed["callId"]
    # The same requestId is an idempotent retry: the same call, not a second one.
    again = await adapter.call(
        "voicecall.initiate",
        {"message": "Hi", "to": TO, "mode": "conversation", "sessionKey": "s-1", "requestId": "r-1"},
    )
    assert again == (True, placed)
    await wait_for_state(adapter.client, call_id, *CONNECTED)
    assert await adapter.call("voicecall.continue", {"callId": call_id, "message": "Deploy?"}) == (
        True,
        {"success": True, "transcript": "yes please"},
    )
    assert await adapter.call("voicecall.speak", {"callId": call_id, "message": "Deploying"}) == (
        True,
        {"success": True},
    )
    assert await adapter.call("voicecall.dtmf", {"callId": call_id, "digits": "9#"}) == (
        True,
        {"success": True},
    )
    assert provider.dtmf_sent == [(call_id, "9#")]
    ok, status = await adapter.call("voicecall.status", {"callId": call_id})
    assert ok and status["found"] is True and status["call"]["sessionKey"] == "s-1"
    ok, by_sid = await adapter.call("voicecall.status", {"sid": status["call"]["providerCallId"]})
    assert ok and by_sid["call"]["callId"] == call_id
    ok, live = await adapter.call("voicecall.status", {})
    assert ok and [c["callId"] for c in live["calls"]] == [call_id]
    assert await adapter.call("voicecall.end", {"callId": call_id}) == (True, {"success": True})
    assert await adapter.call("voicecall.status", {}) == (True, {"calls": []})
    assert await adapter.call("voicecall.status", {"callId": "nope"}) == (True, {"found": False})
    ok, ended = await adapter.call("voicecall.speak", {"callId": call_id, "message": "x"})
    assert not ok and ended["reason"] == "CALL_NOT_ACTIVE" and "has ended" in ended["error"]


async def test_start_is_the_legacy_initiate(adapter: GatewayAdapter) -> None:
    ok, placed = await adapter.call("voicecall.start", {"to": TO, "message": "Hello", "dtmfSequence": "1"})
    assert ok and placed["initiated"] is True
    ok, status = await adapter.call("voicecall.status", {"callId": placed["callId"]})
    assert ok and status["call"]["mode"] == "CALL_MODE_NOTIFY"


async def test_server_errors_carry_the_servers_message_and_reason(adapter: GatewayAdapter) -> None:
    assert await adapter.call("voicecall.initiate", {"message": "Hi"}) == (
        False,
        {"error": "to required", "reason": "INVALID_FIELD"},
    )
    ok, payload = await adapter.call("voicecall.initiate", {"message": "Hi", "to": "555"})
    assert not ok and payload["reason"] == "INVALID_PHONE_NUMBER"
    assert payload["error"].startswith("to_number must be an E.164 number")
    assert await adapter.call("voicecall.end", {"callId": "nope"}) == (
        False,
        {"error": "no call with id 'nope'", "reason": "CALL_NOT_FOUND"},
    )


async def test_transport_failure_reason_is_the_grpc_code() -> None:
    async with VoiceCallClient("127.0.0.1:1", retry_attempts=1, default_timeout=5) as client:
        ok, payload = await GatewayAdapter(client).call("voicecall.end", {"callId": "c1"})
    assert not ok and payload["reason"] == "UNAVAILABLE" and payload["error"]


# -- the stdio bridge, as a subprocess --------------------------------------------------------------
async def run_stdio(server: str, stdin: bytes | Path) -> list[dict[str, Any]]:
    args = [sys.executable, "-m", "voicecall_client.gateway_bridge", "--stdio", "--server", server]
    if isinstance(stdin, Path):
        with stdin.open("rb") as fh:
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=fh, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT
            )
            out, err = await proc.communicate()
    else:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        out, err = await proc.communicate(stdin)
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


def lines(*requests: dict[str, Any] | str) -> bytes:
    return b"".join((r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in requests)


async def test_stdio_bridge(sidecar_factory: StartSidecar) -> None:
    running = await sidecar_factory(transcriptTimeoutMs=2000)  # the caller never answers
    async with VoiceCallClient(address(running)) as client:
        ok, placed = await GatewayAdapter(client).call(
            "voicecall.initiate", {"message": "Hi", "to": TO, "mode": "conversation"}
        )
        assert ok
        call_id = placed["callId"]
        await wait_for_state(client, call_id, *CONNECTED)
    responses = await run_stdio(
        address(running),
        lines(
            {"id": 1, "method": "voicecall.continue", "params": {"callId": call_id, "message": "Anyone?"}},
            "",
            {"id": "two", "method": "voicecall.status", "params": {"callId": call_id}},
            "{not json",
            {"id": 3, "method": "voicecall.nope"},
            {"id": 4},
            "[1, 2]",
            {"id": 5, "method": "voicecall.end", "params": {}},
        ),
    )
    by_id = {r["id"]: r for r in responses if r["id"] is not None}
    anonymous = [r for r in responses if r["id"] is None]
    assert len(responses) == 7
    # Requests run concurrently: status answers while the continue is still waiting for the caller.
    assert [r["id"] for r in responses].index("two") < [r["id"] for r in responses].index(1)
    assert by_id[1] == {
        "id": 1,
        "ok": False,
        "payload": {"error": "the caller said nothing within 2 s", "reason": "TRANSCRIPT_TIMEOUT"},
    }
    assert by_id["two"]["ok"] is True and by_id["two"]["payload"]["call"]["callId"] == call_id
    assert by_id[3]["ok"] is False and by_id[3]["payload"]["error"].startswith("unknown method")
    assert by_id[4] == {"id": 4, "ok": False, "payload": {"error": "method required"}}
    assert by_id[5] == {"id": 5, "ok": False, "payload": {"error": "callId required"}}
    assert sorted(r["payload"]["error"].split(":")[0] for r in anonymous) == [
        "a request must be a JSON object {id, method, params}",
        "invalid JSON",
    ]


async def test_stdio_bridge_reads_a_regular_file(sidecar: Running, tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(
        lines(
            {
                "id": 1,
                "method": "voicecall.initiate",
                "params": {"message": "Hi", "to": TO, "mode": "notify"},
            },
            {"id": 2, "method": "voicecall.status", "params": {"callId": "nope"}},
        )
    )
    responses = sorted(await run_stdio(address(sidecar), requests), key=lambda r: r["id"])
    assert responses[0]["ok"] is True and responses[0]["payload"]["initiated"] is True
    assert responses[1] == {"id": 2, "ok": True, "payload": {"found": False}}


# -- the HTTP bridge, with a real aiohttp client ---------------------------------------------------
@pytest.fixture
async def http_bridge(adapter: GatewayAdapter) -> AsyncIterator[str]:
    runner = web.AppRunner(make_http_app(adapter, token="s3cret"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/rpc"
    await runner.cleanup()


AUTH = {"Authorization": "Bearer s3cret"}


async def test_http_bridge(http_bridge: str) -> None:
    async with aiohttp.ClientSession() as session:
        body = {
            "id": "a",
            "method": "voicecall.initiate",
            "params": {"message": "Hi", "to": TO, "mode": "notify"},
        }
        async with session.post(http_bridge, json=body, headers=AUTH) as resp:
            assert resp.status == 200
            placed = await resp.json()
        assert placed["id"] == "a" and placed["ok"] is True and placed["payload"]["initiated"] is True
        status = {"id": 2, "method": "voicecall.status", "params": {"sid": placed["payload"]["callId"]}}
        async with session.post(http_bridge, json=status, headers=AUTH) as resp:
            assert (await resp.json())["payload"]["found"] is True
        async with session.post(http_bridge, json={"id": 3, "method": "voicecall.end"}, headers=AUTH) as resp:
            assert resp.status == 200
            assert await resp.json() == {"id": 3, "ok": False, "payload": {"error": "callId required"}}
        async with session.post(http_bridge, data=b"{nope", headers=AUTH) as resp:
            assert resp.status == 400 and (await resp.json())["payload"]["error"].startswith("invalid JSON")
        async with session.post(http_bridge, json=[1], headers=AUTH) as resp:
            assert resp.status == 400
        async with session.post(http_bridge, json=body) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
        async with session.post(http_bridge, json=body, headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
        async with session.get(http_bridge, headers=AUTH) as resp:
            assert resp.status == 405


async def test_http_bridge_subprocess(sidecar: Running) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicecall_client.gateway_bridge",
        "--http",
        "127.0.0.1:0",
        "--server",
        address(sidecar),
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line.startswith("voicecall-bridge: listening on http://127.0.0.1:"), line
        url = line.split("listening on ", 1)[1].strip()
        async with aiohttp.ClientSession() as session:
            async with session.post(
                url, json={"id": 1, "method": "voicecall.status", "params": {"callId": "x"}}
            ) as resp:
                assert await resp.json() == {"id": 1, "ok": True, "payload": {"found": False}}
    finally:
        proc.terminate()
        await proc.communicate()
    assert proc.returncode == 0


def test_http_bridge_refuses_an_open_bind_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICECALL_BRIDGE_TOKEN", raising=False)
    with pytest.raises(SystemExit) as info:
        bridge_main(["--http", "0.0.0.0:8765"])
    assert info.value.code == 2
