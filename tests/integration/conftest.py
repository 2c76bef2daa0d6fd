"""A real sidecar (mock provider, in-process, port 0) and a real VoiceCallClient pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from providers.base import Provider
from tests.e2e.harness import Running, make_config, start
from voicecall_client import VoiceCallClient
from voicecall_client.tool import execute_tool

TO = "+15551230001"
REPLIES = ["yes please", "bye"]

StartSidecar = Callable[..., Awaitable[Running]]


@pytest.fixture
async def sidecar_factory(tmp_path: Path) -> AsyncIterator[StartSidecar]:
    """Start sidecars with config overrides (and optionally a provider); all are stopped afterwards."""
    started: list[Running] = []

    async def make(provider: Provider | None = None, **overrides: Any) -> Running:
        running = await start(make_config(tmp_path / f"store{len(started)}", **overrides), provider)
        started.append(running)
        return running

    yield make
    for running in reversed(started):
        await running.close()


@pytest.fixture
async def sidecar(sidecar_factory: StartSidecar) -> Running:
    return await sidecar_factory(mock={"callerReplies": REPLIES})


def address(running: Running) -> str:
    return f"127.0.0.1:{running.sidecar.ports.grpc}"


@pytest.fixture
async def client(sidecar: Running) -> AsyncIterator[VoiceCallClient]:
    async with VoiceCallClient(address(sidecar), retry_backoff=0.01) as c:
        yield c


async def wait_for_state(
    client: VoiceCallClient, call_id: str, *states: str, timeout: float = 5.0
) -> dict[str, Any]:
    """Poll get_status through the tool until the call's state (a CallState name) is one of ``states``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await execute_tool(client, {"action": "get_status", "callId": call_id})
        assert result.get("found") is True, result
        if result["call"]["state"] in states:
            return dict(result["call"])
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"call stuck in {result['call']['state']}")
        await asyncio.sleep(0.01)


CONNECTED = ("CALL_STATE_SPEAKING", "CALL_STATE_LISTENING")
