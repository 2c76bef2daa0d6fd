"""Test-side pieces of a phone call: a Twilio Media Streams client, real speech, and a TTS fake.

The client speaks Twilio's exact stream messages (``connected``, ``start`` with
``customParameters``, ``media``, ``mark`` echoes, ``stop``) and records what the server sends.
The TTS fake serves OpenAI's ``POST /v1/audio/speech`` with 24 kHz PCM whose length follows the
text (``CHARS_PER_SECOND``), so how much of a reply was heard can be checked against frames.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import shutil
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from voicecall_server.voice.audio import FRAME_BYTES, Resampler, pcm16_to_ulaw

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
STREAM_SID = "MZ" + "00112233445566778899aabbccddeeff"
TTS_RATE = 24000
CHARS_PER_SECOND = 20.0


def speech_ulaw(text: str, workdir: Path) -> bytes:
    """``text`` spoken by espeak-ng, as 8 kHz μ-law (the project's own resampler and codec)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed: run `apt-get install espeak-ng` (CI installs it)")
    out = workdir / f"speech-{abs(hash(text))}.wav"
    subprocess.run([exe, "-w", str(out), text], check=True, capture_output=True, timeout=60)
    with wave.open(str(out), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2), "espeak-ng writes mono 16-bit PCM"
        rate = wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    resampler = Resampler(rate, 8000)
    ulaw = pcm16_to_ulaw(resampler.process(pcm) + resampler.flush())
    assert len(ulaw) > 8000 // 2, "espeak-ng produced less than half a second of speech"
    return ulaw


def tts_frames(text: str) -> int:
    """How many 20 ms frames the TTS fake's audio for ``text`` makes."""
    return math.ceil(tts_samples(text) * 8000 / TTS_RATE / FRAME_BYTES)


def tts_samples(text: str) -> int:
    return round(len(text) / CHARS_PER_SECOND * TTS_RATE)


class FakeSpeech:
    """OpenAI's speech endpoint: a 440 Hz tone as raw 24 kHz PCM, streamed in 100 ms chunks."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.inputs: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/audio/speech", self._speech)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response(
                {"error": {"message": "bad key", "type": "invalid_request_error"}}, status=401
            )
        body = await request.json()
        self.bodies.append(body)
        self.inputs.append(body["input"])
        n = tts_samples(body["input"])
        samples = [round(8000 * math.sin(2 * math.pi * 440 * i / TTS_RATE)) for i in range(n)]
        pcm = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        step = TTS_RATE // 10 * 2
        for i in range(0, len(pcm), step):
            await resp.write(pcm[i : i + step])
        await resp.write_eof()
        return resp


class TwilioStreamClient:
    """Plays Twilio's side of a bidirectional Media Stream."""

    def __init__(self, session: aiohttp.ClientSession, url: str, call_sid: str, token: str) -> None:
        self._session = session
        self.url = url
        self.call_sid = call_sid
        self.token = token
        self.received: list[dict[str, Any]] = []
        self.echo_marks = True
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._seq = 0
        self._chunk = 0
        self._changed = asyncio.Event()

    def _next(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def connect(self) -> None:
        self._ws = await self._session.ws_connect(self.url)
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": {
                    "accountSid": ACCOUNT_SID,
                    "streamSid": STREAM_SID,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": {"token": self.token},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
                "streamSid": STREAM_SID,
            }
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps(message))

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            assert data.get("streamSid") == STREAM_SID, data
            self.received.append(data)
            self._changed.set()
            if data["event"] == "mark" and self.echo_marks:
                # Twilio echoes a mark once the audio sent before it has played; it arrives in real
                # time here, so the caller has heard it by now.
                await self._send(
                    {
                        "event": "mark",
                        "sequenceNumber": self._next(),
                        "streamSid": STREAM_SID,
                        "mark": {"name": data["mark"]["name"]},
                    }
                )

    async def send_audio(self, ulaw: bytes) -> None:
        """Caller audio as Twilio sends it: 20 ms μ-law media messages."""
        for i in range(0, len(ulaw), FRAME_BYTES):
            self._chunk += 1
            await self._send(
                {
                    "event": "media",
                    "sequenceNumber": self._next(),
                    "media": {
                        "track": "inbound",
                        "chunk": str(self._chunk),
                        "timestamp": str(self._chunk * 20),
                        "payload": base64.b64encode(ulaw[i : i + FRAME_BYTES]).decode("ascii"),
                    },
                    "streamSid": STREAM_SID,
                }
            )

    async def stop(self) -> None:
        await self._send(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": STREAM_SID,
                "stop": {"accountSid": ACCOUNT_SID, "callSid": self.call_sid},
            }
        )

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    def kinds(self, since: int = 0) -> list[str]:
        return [m["event"] for m in self.received[since:]]

    def frames(self, since: int = 0, until: int | None = None) -> list[bytes]:
        return [
            base64.b64decode(m["media"]["payload"])
            for m in self.received[since:until]
            if m["event"] == "media"
        ]

    def index_of(self, event: str, since: int = 0) -> int | None:
        for i, m in enumerate(self.received[since:], start=since):
            if m["event"] == event:
                return i
        return None

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        """Until ``predicate()`` holds; the timeout only stops a broken test from hanging."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()
