"""gRPC load on the mock provider: durable Initiates/s, Status latency at a rate, Tail fan-out latency."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc

from .media_load import _self_cpu
from .proc import cpu_seconds
from .stats import percentiles


async def initiate_throughput(target: str, seconds: float, workers: int, pid: int | None) -> dict[str, Any]:
    done = 0
    errors: dict[str, int] = {}
    lat: list[float] = []
    stop = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.VoiceCallServiceStub(ch)

        async def worker(w: int) -> None:
            nonlocal done
            i = 0
            while time.monotonic() < stop:
                i += 1
                req = pb.InitiateRequest(
                    to_number=f"+1555{w:03d}{i:04d}",
                    message="Hi",
                    mode=pb.CALL_MODE_NOTIFY,
                    request_id=f"bench-{w}-{i}-{time.monotonic_ns()}",
                )
                t = time.monotonic()
                try:
                    await stub.Initiate(req, timeout=10)
                except grpc.aio.AioRpcError as err:
                    errors[err.code().name] = errors.get(err.code().name, 0) + 1
                    continue
                lat.append((time.monotonic() - t) * 1000)
                done += 1

        cpu0 = cpu_seconds(pid) if pid else 0.0
        me0 = _self_cpu()
        t0 = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(workers)))
        elapsed = time.monotonic() - t0
        cpu1 = cpu_seconds(pid) if pid else 0.0
        me1 = _self_cpu()
    return {
        "initiates_per_s": round(done / elapsed, 1),
        "workers": workers,
        "errors": errors,
        "latency_ms": percentiles(lat),
        "server_cpu_pct_core": round(100 * (cpu1 - cpu0) / elapsed, 1),
        "driver_cpu_pct_core": round(100 * (me1 - me0) / elapsed, 1),
    }


async def status_at_rate(
    target: str, call_id: str, rate: float, seconds: float, pid: int | None
) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.VoiceCallServiceStub(ch)
        await stub.Status(pb.StatusRequest(call_id=call_id))

        async def one(at: float) -> None:
            nonlocal errors
            try:
                await stub.Status(pb.StatusRequest(call_id=call_id), timeout=5)
            except grpc.aio.AioRpcError:
                errors += 1
                return
            lat.append((time.monotonic() - at) * 1000)

        tasks = []
        total = int(rate * seconds)
        cpu0 = cpu_seconds(pid) if pid else 0.0
        me0 = _self_cpu()
        start = time.monotonic() + 0.05
        for k in range(total):
            at = start + k / rate
            if (delay := at - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(at)))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
        cpu1 = cpu_seconds(pid) if pid else 0.0
        me1 = _self_cpu()
    return {
        "target_per_s": rate,
        "achieved_per_s": round(len(lat) / elapsed, 1),
        "errors": errors,
        "latency_ms": percentiles(lat),
        "server_cpu_pct_core": round(100 * (cpu1 - cpu0) / elapsed, 1),
        "driver_cpu_pct_core": round(100 * (me1 - me0) / elapsed, 1),
    }


async def tail_fanout(
    target: str, subscribers: int, events_calls: int, pid: int | None, max_batch: int = 0
) -> dict[str, Any]:
    """``subscribers`` Tail streams on all calls; ``events_calls`` Initiates produce the events.
    ``max_batch`` > 1 lets the server coalesce events that are ready together (as the client
    library asks); 0 is one message per event."""
    lat: list[float] = []
    received = 0
    messages = 0
    channels = [grpc.aio.insecure_channel(target) for _ in range(8)]
    try:
        stubs = [pb_grpc.VoiceCallServiceStub(c) for c in channels]
        ctl = stubs[0]
        start_seq = 0  # a fresh sidecar: every event in the log is one this run produced
        ready = 0
        all_ready = asyncio.Event()

        async def sub(k: int) -> None:
            nonlocal received, ready, messages
            stream = stubs[k % len(stubs)].Tail(pb.TailRequest(max_batch=max_batch))
            ready += 1
            if ready == subscribers:
                all_ready.set()
            try:
                async for item in stream:
                    now = time.time()
                    messages += 1
                    for ev in item.events or [item.event]:
                        if ev.sequence > start_seq:
                            sent = ev.event_time.seconds + ev.event_time.nanos / 1e9
                            lat.append((now - sent) * 1000)
                            received += 1
            except grpc.aio.AioRpcError:
                pass

        subs = [asyncio.create_task(sub(k)) for k in range(subscribers)]
        await all_ready.wait()
        await asyncio.sleep(1.0)  # let every stream reach the server
        cpu0 = cpu_seconds(pid) if pid else 0.0
        me0 = _self_cpu()
        t0 = time.monotonic()
        for i in range(events_calls):
            await ctl.Initiate(
                pb.InitiateRequest(to_number=f"+1555888{i:04d}", message="x", mode=pb.CALL_MODE_NOTIFY)
            )
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)
        elapsed = time.monotonic() - t0
        cpu1 = cpu_seconds(pid) if pid else 0.0
        me1 = _self_cpu()
        for t in subs:
            t.cancel()
        await asyncio.gather(*subs, return_exceptions=True)
    finally:
        for c in channels:
            await c.close()
    return {
        "subscribers": subscribers,
        "max_batch": max_batch,
        "messages": messages,
        "deliveries": received,
        "latency_ms": percentiles(lat),
        "server_cpu_pct_core": round(100 * (cpu1 - cpu0) / elapsed, 1),
        "driver_cpu_pct_core": round(100 * (me1 - me0) / elapsed, 1),
    }
