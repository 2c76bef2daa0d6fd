"""Lean loopback fakes of OpenAI's speech endpoints for load runs (the tests' fakes record too much).

- ``POST /v1/audio/speech``: streams ``seconds`` of 24 kHz 16-bit PCM (OpenAI's ``pcm`` format) in
  1 s chunks, as fast as the client reads; notes when the first byte of each response went out.
- ``GET /v1/realtime``: the Realtime transcription WebSocket: ``session.created``, then
  ``session.updated`` for each ``session.update``; audio appends are counted, never decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

API_KEY = "sk-bench-0123456789abcdef"


def _tone(seconds: float, rate: int = 24000) -> bytes:
    n = int(seconds * rate)
    one = [int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate // 440 * 10)]
    reps = n // len(one) + 1
    return struct.pack(f"<{len(one)}h", *one) * reps


@dataclass
class VoiceFakes:
    seconds: float = 30.0
    speed: float = 1.25
    url: str = ""
    tts_requests: int = 0
    first_bytes: list[float] = field(default_factory=list)  # time.monotonic() of each first write
    stt_sockets: int = 0
    stt_appends: int = 0
    stt_bytes: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> VoiceFakes:
        self._pcm = _tone(self.seconds)[: int(self.seconds * 24000) * 2]
        app = web.Application()
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_get("/v1/realtime", self._realtime)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        self.tts_requests += 1
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        pcm = self._pcm
        step = 24000  # 0.5 s of audio per write
        began = time.monotonic()
        for n, i in enumerate(range(0, len(pcm), step)):
            # The first second at once, then 1.25x real time: a long answer streamed as it is
            # generated, so the sidecar buffers about what a real call would.
            due = began + max(0, n - 2) * 0.5 / self.speed
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            try:
                await resp.write(pcm[i : i + step])
            except ConnectionError:
                return resp  # the sidecar hung up (barge-in, call end, shutdown)
            if n == 0:
                self.first_bytes.append(time.monotonic())
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp

    async def _realtime(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.stt_sockets += 1
        await ws.send_str(
            '{"type":"session.created","event_id":"e0","session":{"type":"transcription","id":"s"}}'
        )
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = msg.data
            if '"input_audio_buffer.append"' in data:
                self.stt_appends += 1
                self.stt_bytes += len(data)
            elif '"session.update"' in data:
                await ws.send_str(
                    '{"type":"session.updated","event_id":"e1","session":'
                    '{"type":"transcription","id":"s","object":"realtime.transcription_session"}}'
                )
        return ws
