"""N concurrent simulated Twilio Media Streams (Twilio's exact messages), measuring what comes back.

Each stream sends ``connected``, ``start``, then one ``media`` frame (160 bytes μ-law) every 20 ms,
then ``stop``; marks the server sends are echoed as Twilio does. Outbound ``media`` frames are
timed on arrival: inter-arrival percentiles, frames received against the 50/s real-time rate.
One ticker drives every stream's inbound frames so the driver itself stays cheap.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .stats import percentiles

FRAME_S = 0.020
PAYLOAD = base64.b64encode(b"\xff" * 160).decode()
STREAM_RE = re.compile(r'<Stream[^>]*\surl="([^"]+)"')
TOKEN_RE = re.compile(r'<Parameter name="token" value="([^"]+)"')

# open_stream(http, i) -> (ws_url, customParameters, callSid)
Opener = Callable[[aiohttp.ClientSession, int], Awaitable[tuple[str, dict[str, str], str]]]


@dataclass
class Stream:
    index: int
    sid: str
    ws: aiohttp.ClientWebSocketResponse
    seq: int = 2
    last: float = 0.0
    frames: int = 0
    window_frames: int = 0
    first_frame: float = 0.0
    opened: float = 0.0
    intervals: array[float] = field(default_factory=lambda: array("d"))


@dataclass
class MediaRun:
    opener: Opener
    n: int
    ramp_per_s: float = 100.0
    warmup_s: float = 2.0
    window_s: float = 8.0
    sidecar_pid: int | None = None
    streams: list[Stream] = field(default_factory=list)
    window: tuple[float, float] = (0.0, 0.0)
    errors: list[str] = field(default_factory=list)
    ticks_late: int = 0

    async def _open(self, http: aiohttp.ClientSession, i: int) -> None:
        try:
            url, params, call_sid = await self.opener(http, i)
            ws = await http.ws_connect(url, max_msg_size=0, compress=0)
        except Exception as exc:
            self.errors.append(f"stream {i}: {type(exc).__name__}: {exc}")
            return
        sid = f"MZ{i:032x}"
        await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": "AC" + "0" * 32,
                "streamSid": sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": params,
            },
            "streamSid": sid,
        }
        stream = Stream(i, sid, ws, opened=time.monotonic())
        await ws.send_str(json.dumps(start))
        self.streams.append(stream)
        self._readers.append(asyncio.create_task(self._read(stream)))

    async def _read(self, s: Stream) -> None:
        lo_hi = self
        async for msg in s.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = msg.data
            if data.startswith('{"event":"media"') or '"event": "media"' in data or '"event":"media"' in data:
                now = time.monotonic()
                s.frames += 1
                if not s.first_frame:
                    s.first_frame = now
                lo, hi = lo_hi.window
                if lo <= now <= hi and lo > 0:
                    s.window_frames += 1
                    if s.last >= lo:
                        s.intervals.append((now - s.last) * 1000.0)
                s.last = now
            elif '"mark"' in data:
                mark = json.loads(data).get("mark", {}).get("name", "")
                await s.ws.send_str(json.dumps({"event": "mark", "streamSid": s.sid, "mark": {"name": mark}}))

    async def _ticker(self, stop: asyncio.Event) -> None:
        start = time.monotonic()
        k = 0
        while not stop.is_set():
            k += 1
            deadline = start + k * FRAME_S
            delay = deadline - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.ticks_late += 1
            for s in self.streams:
                if s.ws.closed:
                    continue
                seq = s.seq
                s.seq += 1
                ts = (seq - 2) * 20
                await s.ws.send_str(
                    f'{{"event":"media","sequenceNumber":"{seq}","media":{{"track":"inbound","chunk":"{seq - 1}",'
                    f'"timestamp":"{ts}","payload":"{PAYLOAD}"}},"streamSid":"{s.sid}"}}'
                )

    async def run(self, on_window: Callable[[str], None] | None = None) -> dict[str, Any]:
        from .proc import cpu_busy_seconds, cpu_seconds, rss_bytes

        self._readers: list[asyncio.Task[None]] = []
        pid = self.sidecar_pid
        idle_rss = rss_bytes(pid) if pid else 0
        stop = asyncio.Event()
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as http:
            ticker = asyncio.create_task(self._ticker(stop))
            opens = []
            for i in range(self.n):
                opens.append(asyncio.create_task(self._open(http, i)))
                await asyncio.sleep(1 / self.ramp_per_s)
            await asyncio.gather(*opens)
            await asyncio.sleep(self.warmup_s)
            t0 = time.monotonic()
            self.window = (t0, t0 + self.window_s)
            cpu0 = cpu_seconds(pid) if pid else 0.0
            me0 = _self_cpu()
            busy0 = [cpu_busy_seconds(0), cpu_busy_seconds(1)]
            await asyncio.sleep(self.window_s)
            cpu1 = cpu_seconds(pid) if pid else 0.0
            me1 = _self_cpu()
            busy1 = [cpu_busy_seconds(0), cpu_busy_seconds(1)]
            rss = rss_bytes(pid) if pid else 0
            stop.set()
            await ticker
            for s in self.streams:
                if not s.ws.closed:
                    await s.ws.send_str(
                        json.dumps(
                            {
                                "event": "stop",
                                "sequenceNumber": str(s.seq),
                                "streamSid": s.sid,
                                "stop": {"accountSid": "AC" + "0" * 32, "callSid": "x"},
                            }
                        )
                    )
                    await s.ws.close()
            for task in self._readers:
                task.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)
        summary = self._summary(cpu1 - cpu0, me1 - me0, idle_rss, rss)
        # Other processes on the machine (e.g. a test suite) show up as CPU 0 busy beyond the server.
        foreign0 = (busy1[0] - busy0[0]) - (cpu1 - cpu0)
        foreign1 = (busy1[1] - busy0[1]) - (me1 - me0)
        summary["foreign_cpu_pct"] = [
            round(100 * foreign0 / self.window_s, 1),
            round(100 * foreign1 / self.window_s, 1),
        ]
        return summary

    def _summary(self, cpu: float, driver_cpu: float, idle_rss: int, rss: int) -> dict[str, Any]:
        n_ok = len(self.streams)
        expected = self.window_s / FRAME_S
        got = sum(s.window_frames for s in self.streams)
        pooled = array("d")
        for s in self.streams:
            pooled.extend(s.intervals)
        loss = 1 - got / (expected * n_ok) if n_ok else 1.0
        worst = min((s.window_frames / expected for s in self.streams), default=0.0)
        pct = percentiles(pooled)
        held = bool(n_ok == self.n and pct["p99"] <= 30.0 and loss <= 0.001)
        return {
            "streams": self.n,
            "streams_open": n_ok,
            "errors": self.errors[:5],
            "window_s": self.window_s,
            "server_cpu_s": round(cpu, 3),
            "server_cpu_pct_core": round(100 * cpu / self.window_s, 1),
            "cpu_pct_per_stream": round(100 * cpu / self.window_s / max(n_ok, 1), 3),
            "driver_cpu_pct_core": round(100 * driver_cpu / self.window_s, 1),
            "driver_late_ticks": self.ticks_late,
            "rss_mb": round(rss / 2**20, 1),
            "idle_rss_mb": round(idle_rss / 2**20, 1),
            "kb_per_stream": round((rss - idle_rss) / 1024 / max(n_ok, 1), 1),
            "interval_ms": pct,
            "frames_expected": int(expected * n_ok),
            "frames_received": got,
            "loss_pct": round(100 * loss, 3),
            "worst_stream_realtime": round(worst, 3),
            "held": held,
        }


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system
