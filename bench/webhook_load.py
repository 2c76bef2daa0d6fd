"""Signed Twilio status callbacks at a target rate (open loop), against the Twilio-configured sidecar.

Latency is measured from each request's scheduled send time, so queuing in the driver or the
server counts against it (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp

from providers.twilio.signature import compute_signature

from .fake_twilio import ACCOUNT_SID, AUTH_TOKEN
from .media_load import _self_cpu
from .proc import cpu_seconds
from .stats import percentiles


def status_params(call_sid: str, seq: int) -> list[tuple[str, str]]:
    return [
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid),
        ("CallStatus", "in-progress"),
        ("Direction", "inbound"),
        ("From", "+15551110000"),
        ("SequenceNumber", str(seq)),
        ("Timestamp", f"Sun, 22 Nov 2026 05:00:{seq % 60:02d} +0000"),
        ("To", "+15550000000"),
    ]


async def webhook_rate(
    url: str, call_sids: list[str], rate: float, seconds: float, pid: int | None, seq0: int = 0
) -> dict[str, Any]:
    bodies = []
    total = int(rate * seconds)
    for k in range(total):
        params = status_params(call_sids[k % len(call_sids)], seq0 + k)
        bodies.append((params, compute_signature(AUTH_TOKEN, url, params)))
    lat: list[float] = []
    codes: Counter[int] = Counter()
    # Twilio calls from many addresses; the listener admits 8 webhooks in flight per peer IP, so
    # the driver spreads its requests over 32 loopback source addresses.
    sessions = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32, local_addr=(f"127.0.1.{k + 1}", 0)))
        for k in range(32)
    ]
    try:

        async def one(at: float, params: list[tuple[str, str]], sig: str) -> None:
            http = sessions[hash(sig) % len(sessions)]
            try:
                async with http.post(url, data=params, headers={"X-Twilio-Signature": sig}) as resp:
                    await resp.read()
                    codes[resp.status] += 1
            except aiohttp.ClientError:
                codes[0] += 1
                return
            lat.append((time.monotonic() - at) * 1000)

        tasks = []
        cpu0 = cpu_seconds(pid) if pid else 0.0
        me0 = _self_cpu()
        start = time.monotonic() + 0.05
        for k, (params, sig) in enumerate(bodies):
            at = start + k / rate
            if (delay := at - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(at, params, sig)))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
        cpu1 = cpu_seconds(pid) if pid else 0.0
        me1 = _self_cpu()
    finally:
        for session in sessions:
            await session.close()
    ok = codes.get(200, 0)
    return {
        "target_per_s": rate,
        "sent": total,
        "ok": ok,
        "codes": {str(k): v for k, v in codes.items()},
        "achieved_per_s": round(ok / elapsed, 1),
        "latency_ms": percentiles(lat),
        "server_cpu_pct_core": round(100 * (cpu1 - cpu0) / elapsed, 1),
        "driver_cpu_pct_core": round(100 * (me1 - me0) / elapsed, 1),
    }
