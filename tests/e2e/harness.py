"""Start the real sidecar (gRPC + aiohttp on port 0) in-process, and talk to it over loopback."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from providers.base import Provider
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc
from voicecall_server.app import Sidecar
from voicecall_server.config import Config, config_from_mapping


def make_config(store: Path, **overrides: Any) -> Config:
    raw: dict[str, Any] = {
        "provider": "mock",
        "store": str(store),
        "maxConcurrentCalls": 5,
        "outbound": {"notifyHangupDelaySec": 0},
        "mock": {"answerAfterMs": 20, "replyAfterMs": 20},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    cfg = config_from_mapping(raw, {})
    # Port 0: let the OS pick free ports (the config schema itself requires a real port).
    return dataclasses.replace(
        cfg, serve=dataclasses.replace(cfg.serve, port=0), grpc=dataclasses.replace(cfg.grpc, port=0)
    )


class Running:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.ports.grpc}")
        self.stub = pb_grpc.VoiceCallServiceStub(self.channel)

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.sidecar.ports.http}{self.sidecar.config.serve.path}"

    async def close(self) -> None:
        await self.channel.close()
        await self.sidecar.stop()

    async def wait_state(self, call_id: str, *states: int, timeout: float = 5.0) -> pb.Call:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            call = (await self.stub.Status(pb.StatusRequest(call_id=call_id))).call
            if call.state in states:
                return call
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"call stuck in {pb.CallState.Name(call.state)}")
            await asyncio.sleep(0.01)


async def start(config: Config, provider: Provider | None = None) -> Running:
    sidecar = Sidecar(config, provider=provider)
    await sidecar.start()
    return Running(sidecar)


def error_reason(err: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason carried in the status details."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""


async def collect(
    stream: AsyncIterator[pb.TailResponse], count: int, timeout: float = 5.0
) -> list[pb.CallEvent]:
    out: list[pb.CallEvent] = []

    async def run() -> None:
        async for item in stream:
            out.append(item.event)
            if len(out) >= count:
                return

    await asyncio.wait_for(run(), timeout)
    return out
