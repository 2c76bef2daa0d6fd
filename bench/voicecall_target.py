"""voicecall as a media-stream target: Twilio provider against loopback fakes, streams via signed webhooks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from providers.twilio.signature import compute_signature

from .fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from .fakes_voice import API_KEY, VoiceFakes
from .media_load import STREAM_RE, TOKEN_RE
from .proc import SidecarProcess

CALLEE = "+15550000000"


def media_config(rest_url: str, voice_url: str, http_port: int, *, max_calls: int = 5000) -> dict[str, Any]:
    return {
        "provider": "twilio",
        "fromNumber": CALLEE,
        "twilio": {"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "baseUrl": rest_url},
        "publicUrl": f"http://127.0.0.1:{http_port}/voice/webhook",
        "inboundPolicy": "open",
        "inboundGreeting": "Hello, thanks for calling. This is a long greeting for the benchmark.",
        "maxConcurrentCalls": max_calls,
        "maxDurationSeconds": 3600,
        "staleCallReaperSeconds": 0,
        "streaming": {
            "enabled": True,
            "openaiApiKey": API_KEY,
            "openaiBaseUrl": voice_url,
            "maxConnections": max_calls,
            "maxPendingConnections": max_calls,
            "maxPendingConnectionsPerIp": max_calls,
        },
        "openai": {"apiKey": API_KEY, "baseUrl": voice_url},
        "tts": {"provider": "openai"},
    }


class VoicecallTarget:
    """Starts fakes + sidecar; ``open_stream`` places a signed inbound webhook and returns the stream."""

    def __init__(self, workdir: Path, cpu: str | None, tts_seconds: float = 40.0) -> None:
        self.workdir = workdir
        self.cpu = cpu
        self.rest = FakeTwilio()
        self.voice = VoiceFakes(seconds=tts_seconds)
        self.sidecar: SidecarProcess | None = None
        self._gate = asyncio.Semaphore(6)

    async def start(self, max_calls: int = 5000) -> None:
        await self.rest.start()
        await self.voice.start()
        sc = SidecarProcess(self.workdir, {}, cpu=self.cpu)
        sc.raw = media_config(self.rest.url, self.voice.url, sc.http_port, max_calls=max_calls)
        sc.start()
        self.sidecar = sc

    @property
    def webhook_url(self) -> str:
        assert self.sidecar is not None
        return f"http://127.0.0.1:{self.sidecar.http_port}/voice/webhook"

    async def open_stream(self, http: aiohttp.ClientSession, i: int) -> tuple[str, dict[str, str], str]:
        call_sid = f"CA{i + 1:032x}"
        params = [
            ("AccountSid", ACCOUNT_SID),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", call_sid),
            ("CallStatus", "ringing"),
            ("Called", CALLEE),
            ("Caller", f"+1555{i:07d}"),
            ("Direction", "inbound"),
            ("From", f"+1555{i:07d}"),
            ("To", CALLEE),
        ]
        url = self.webhook_url
        sig = compute_signature(AUTH_TOKEN, url, params)
        # The listener admits 8 webhooks in flight per peer IP; everything here comes from 127.0.0.1.
        for attempt in range(50):
            async with self._gate, http.post(url, data=params, headers={"X-Twilio-Signature": sig}) as resp:
                body = await resp.text()
                status = resp.status
            if status != 429:
                break
            await asyncio.sleep(0.02 * (attempt + 1))
        if status != 200:
            raise RuntimeError(f"webhook answered {status}: {body[:200]}")
        stream = STREAM_RE.search(body)
        token = TOKEN_RE.search(body)
        if not stream or not token:
            raise RuntimeError(f"no <Stream> in the TwiML: {body[:300]}")
        return stream.group(1).replace("&amp;", "&"), {"token": token.group(1)}, call_sid

    async def aclose(self) -> None:
        if self.sidecar is not None:
            self.sidecar.stop()
        await self.voice.aclose()
        await self.rest.aclose()
