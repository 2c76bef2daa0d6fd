"""Simulated provider media-stream clients: Telnyx media streaming and Plivo audio streams.

Each speaks its provider's documented messages (Telnyx: ``connected``, ``start`` with
``call_control_id``, ``media``, ``dtmf``, ``mark`` echoes, ``stop``; Plivo: ``start`` with
``callId`` and the echoed ``extra_headers``, ``media``, ``dtmf``, ``playedStream`` for each
``checkpoint``) and records what the sidecar sends, echoing marks at once (the caller heard it).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import WSMsgType

WAIT_S = 5.0
STREAM_ID = "b6b4ef4a-8f0c-4f0b-9a43-3f1e7f0c1d2e"
CALLER = "+15557654321"
CALLED = "+15005550006"


class StreamClient:
    """The provider's side of a bidirectional stream; records what the sidecar sends."""

    media_event = ""
    mark_event = ""
    clear_event = ""

    def __init__(self, http: aiohttp.ClientSession, url: str, call_id: str) -> None:
        self.http, self.url, self.call_id = http, url, call_id
        self.received: list[dict[str, Any]] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.seq = 0

    def start_message(self) -> dict[str, Any]:
        raise NotImplementedError

    def media_message(self, audio: bytes) -> dict[str, Any]:
        raise NotImplementedError

    def dtmf_message(self, digit: str) -> dict[str, Any]:
        raise NotImplementedError

    def mark_echo(self, sent: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def mark_name(self, sent: dict[str, Any]) -> str:
        raise NotImplementedError

    def payload(self, sent: dict[str, Any]) -> bytes:
        return base64.b64decode(sent["media"]["payload"], validate=True)

    async def open(self) -> None:
        self.ws = await self.http.ws_connect(self.url)

    async def connect(self) -> None:
        await self.open()
        await self.send(self.start_message())
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        self.seq += 1
        await self.ws.send_str(json.dumps(message))

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            self.received.append(data)
            async with self._changed:
                self._changed.notify_all()
            if data.get("event") == self.mark_event:
                await self.send(self.mark_echo(data))  # played at once: the caller heard it

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async def run() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(run(), WAIT_S)

    def index(self, event: str, after: int = 0) -> int | None:
        return next((i for i, m in enumerate(self.received) if i >= after and m["event"] == event), None)

    async def send_audio(self, ulaw: bytes) -> None:
        for i in range(0, len(ulaw), 160):
            await self.send(self.media_message(ulaw[i : i + 160]))

    async def closed_with(self) -> int | None:
        assert self.ws is not None
        if self._reader is not None:  # the reader sees the close
            await asyncio.wait_for(asyncio.shield(self._reader), WAIT_S)
        else:
            msg = await asyncio.wait_for(self.ws.receive(), WAIT_S)
            assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
        return self.ws.close_code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


class TelnyxStream(StreamClient):
    """Telnyx media streaming: ``connected``, ``start`` with ``call_control_id``, ``media``..."""

    media_event, mark_event, clear_event = "media", "mark", "clear"

    async def connect(self) -> None:
        await self.open()
        await self.send({"event": "connected", "version": "1.0.0"})
        await self.send(self.start_message())
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def start_message(self) -> dict[str, Any]:
        return {
            "event": "start",
            "sequence_number": str(self.seq + 1),
            "start": {
                "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
                "call_control_id": self.call_id,
                "call_session_id": "session-1",
                "client_state": "",
                "from": CALLER,
                "to": CALLED,
                "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
            },
            "stream_id": STREAM_ID,
        }

    def media_message(self, audio: bytes) -> dict[str, Any]:
        return {
            "event": "media",
            "sequence_number": str(self.seq + 1),
            "media": {
                "track": "inbound",
                "chunk": str(self.seq),
                "timestamp": str(self.seq * 20),
                "payload": base64.b64encode(audio).decode(),
            },
            "stream_id": STREAM_ID,
        }

    def dtmf_message(self, digit: str) -> dict[str, Any]:
        return {
            "event": "dtmf",
            "stream_id": STREAM_ID,
            "occurred_at": "2026-01-02T03:04:05.000000Z",
            "sequence_number": str(self.seq + 1),
            "dtmf": {"digit": digit},
        }

    def mark_echo(self, sent: dict[str, Any]) -> dict[str, Any]:
        return {
            "event": "mark",
            "sequence_number": str(self.seq + 1),
            "stream_id": STREAM_ID,
            "mark": {"name": sent["mark"]["name"]},
        }

    def mark_name(self, sent: dict[str, Any]) -> str:
        return str(sent["mark"]["name"])

    def stop_message(self) -> dict[str, Any]:
        return {
            "event": "stop",
            "sequence_number": str(self.seq + 1),
            "stop": {"user_id": "3e6f995f-85f7-4705-9741-53b116d28237", "call_control_id": self.call_id},
            "stream_id": STREAM_ID,
        }


class PlivoStream(StreamClient):
    """Plivo audio streams: ``start`` with ``callId`` and the echoed ``extra_headers``, ``media``..."""

    media_event, mark_event, clear_event = "playAudio", "checkpoint", "clearAudio"

    def __init__(self, http: aiohttp.ClientSession, url: str, call_id: str, extra_headers: str) -> None:
        super().__init__(http, url, call_id)
        self.extra_headers = extra_headers

    def start_message(self) -> dict[str, Any]:
        return {
            "event": "start",
            "sequenceNumber": self.seq,
            "start": {
                "callId": self.call_id,
                "streamId": STREAM_ID,
                "accountId": "MA" + "0" * 18,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
            "extra_headers": self.extra_headers,
        }

    def media_message(self, audio: bytes) -> dict[str, Any]:
        return {
            "event": "media",
            "sequenceNumber": self.seq,
            "streamId": STREAM_ID,
            "media": {
                "track": "inbound",
                "timestamp": str(1_767_000_000_000 + self.seq * 20),
                "chunk": self.seq,
                "payload": base64.b64encode(audio).decode(),
            },
            "extra_headers": self.extra_headers,
        }

    def dtmf_message(self, digit: str) -> dict[str, Any]:
        return {
            "event": "dtmf",
            "sequenceNumber": self.seq,
            "streamId": STREAM_ID,
            "dtmf": {"track": "inbound", "digit": digit, "timestamp": "1767000000000"},
            "extra_headers": self.extra_headers,
        }

    def mark_echo(self, sent: dict[str, Any]) -> dict[str, Any]:
        return {
            "event": "playedStream",
            "sequenceNumber": self.seq,
            "streamId": STREAM_ID,
            "name": sent["name"],
        }

    def mark_name(self, sent: dict[str, Any]) -> str:
        return str(sent["name"])
