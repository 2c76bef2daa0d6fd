"""Restart time with a full store, memory per live call without media, and speech start latency."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from providers.base import CallMode, Direction, EndReason
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc
from voicecall_server.domain import CallEvent, CallRecord, CallState, EventKind, utcnow
from voicecall_server.store import Store

from .proc import SidecarProcess, rss_bytes


def fill_store(directory: Path, calls: int, live: int = 0) -> None:
    """``calls`` ended calls (and ``live`` unanswered ones) with their event logs, written directly."""
    store = Store(directory)  # commits are not fsynced one by one; close() syncs
    try:
        now = utcnow()
        for i in range(calls + live):
            ended = i < calls
            t = now - timedelta(minutes=calls + live - i)
            rec = CallRecord(
                call_id=f"bench-{i:06d}",
                provider="mock",
                direction=Direction.OUTBOUND,
                state=CallState.COMPLETED if ended else CallState.RINGING,
                from_number="+15550000000",
                to_number=f"+1555{i:07d}",
                mode=CallMode.NOTIFY,
                created_at=t,
                provider_call_id=f"mock-bench-{i:06d}" + ("" if ended else "-live"),
                ended_at=t if ended else None,
                end_reason=EndReason.COMPLETED if ended else None,
            )
            events = [
                CallEvent(rec.call_id, EventKind.STATE_CHANGED, t, {"state": "initiated"}),
                CallEvent(rec.call_id, EventKind.STATE_CHANGED, t, {"state": rec.state.value}),
            ]
            store.commit(rec, events=events, transcript_added=[], dedupe_keys=[], request=None)
    finally:
        store.close()


def restart_time(workdir: Path, calls: int, cpu: str | None) -> dict[str, Any]:
    fill_store(workdir / "store", calls, live=20)
    sc = SidecarProcess(
        workdir, {"provider": "mock", "maxConcurrentCalls": 1000, "staleCallReaperSeconds": 0}, cpu=cpu
    )
    t0 = time.monotonic()
    sc.start(timeout=60)
    serving = time.monotonic() - t0
    sc.stop()
    sc2 = SidecarProcess(workdir / "empty", {"provider": "mock"}, cpu=cpu)
    t1 = time.monotonic()
    sc2.start(timeout=60)
    empty = time.monotonic() - t1
    sc2.stop()
    return {
        "calls_in_store": calls + 20,
        "serving_after_s": round(serving, 2),
        "empty_store_s": round(empty, 2),
    }


async def memory_per_live_call(workdir: Path, calls: int, cpu: str | None) -> dict[str, Any]:
    raw = {
        "provider": "mock",
        "maxConcurrentCalls": calls + 100,
        "maxDurationSeconds": 3600,
        "staleCallReaperSeconds": 0,
        "mock": {"answerAfterMs": 5},
    }
    sc = SidecarProcess(workdir, raw, cpu=cpu)
    sc.start()
    try:
        async with grpc.aio.insecure_channel(sc.grpc_target) as ch:
            stub = pb_grpc.VoiceCallServiceStub(ch)
            # Warm up allocator and caches with a few calls first so the baseline is fair.
            for i in range(20):
                await stub.Initiate(
                    pb.InitiateRequest(
                        to_number=f"+1555700{i:04d}", message="hi", mode=pb.CALL_MODE_CONVERSATION
                    )
                )
            await asyncio.sleep(0.5)
            base = rss_bytes(sc.pid)
            sem = asyncio.Semaphore(32)

            async def one(i: int) -> None:
                async with sem:
                    await stub.Initiate(
                        pb.InitiateRequest(
                            to_number=f"+1555{i:07d}", message="hi", mode=pb.CALL_MODE_CONVERSATION
                        )
                    )

            await asyncio.gather(*(one(i) for i in range(calls)))
            await asyncio.sleep(1.0)
            after = rss_bytes(sc.pid)
    finally:
        sc.stop()
    return {
        "live_calls": calls,
        "rss_mb": round(after / 2**20, 1),
        "kb_per_live_call": round((after - base) / 1024 / calls, 1),
    }


async def speech_latency(target: Any, trials: int) -> dict[str, Any]:
    """Stream start -> first paced media frame, against the fake TTS's first byte (same clock)."""
    from .media_load import MediaRun

    gaps: list[float] = []
    for i in range(trials):
        run = MediaRun(target.open_stream, 1, warmup_s=0.0, window_s=0.0)
        run._readers = []
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as http:
            before = len(target.voice.first_bytes)
            await run._open(http, 100000 + i)
            deadline = time.monotonic() + 5
            while not (run.streams and run.streams[0].first_frame) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            if run.streams and run.streams[0].first_frame and len(target.voice.first_bytes) > before:
                gaps.append((run.streams[0].first_frame - target.voice.first_bytes[before]) * 1000)
            for s in run.streams:
                await s.ws.close()
            for t in run._readers:
                t.cancel()
            await asyncio.gather(*run._readers, return_exceptions=True)
    from .stats import percentiles

    return {"trials": trials, "first_frame_after_tts_first_byte_ms": percentiles(gaps)}
