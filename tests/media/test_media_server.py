"""The media-stream endpoint with a simulated Twilio Media Streams client (Twilio's message format)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from websockets.frames import Frame, Opcode
from yarl import URL

from providers.base import CallMode, ProviderEvent
from providers.mock import MockProvider, MockSettings
from voicecall_server.bus import EventBus
from voicecall_server.domain import CallRecord, EventKind
from voicecall_server.logs import current_call_id
from voicecall_server.manager import CallManager, ManagerSettings
from voicecall_server.media import wsframes
from voicecall_server.media.bridge import VoiceBridge
from voicecall_server.media.codecs import ProviderCodec
from voicecall_server.media.server import MediaServer, MediaSettings, StreamSession
from voicecall_server.store import Store


@dataclass
class Env:
    manager: CallManager
    media: MediaServer
    url: str
    session: aiohttp.ClientSession
    store: Store


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = Store(tmp_path / "s")
    provider = MockProvider(MockSettings(answer_after_ms=5))
    settings = ManagerSettings(
        max_concurrent_calls=10, stale_call_reaper_s=0, stream_url="ws://x/voice/stream"
    )
    manager = CallManager(settings, store, EventBus(), provider)
    await provider.start(manager.handle_events, "http://127.0.0.1/voice/webhook")
    await manager.start()
    media = MediaServer(
        MediaSettings(pre_start_timeout_s=0.3, max_pending_per_ip=2, reconnect_grace_s=0.05),
        ProviderCodec("twilio"),
        manager,
    )
    app = web.Application()
    media.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    session = aiohttp.ClientSession()
    yield Env(manager, media, f"http://127.0.0.1:{port}/voice/stream", session, store)
    await session.close()
    await media.aclose()
    await runner.cleanup()
    await manager.aclose()
    await provider.aclose()
    store.close()


async def live_call(env: Env) -> CallRecord:
    rec = await env.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    for _ in range(200):
        if env.manager.get(rec.call_id).answered_at:
            break
        await asyncio.sleep(0.01)
    return env.manager.get(rec.call_id)


def start_frame(call_sid: str, token: str, stream_sid: str = "MZ1") -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": "AC" + "0" * 32,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {"token": token},
            },
            "streamSid": stream_sid,
        }
    )


async def started_session(env: Env, rec: CallRecord, ws: aiohttp.ClientWebSocketResponse) -> StreamSession:
    """Send the call's ``start`` frame on ``ws`` and return the session the server accepted."""
    sessions: list[StreamSession] = []
    env.media.on_session_start = sessions.append
    await ws.send_str(start_frame(rec.provider_call_id or "", rec.stream_token or ""))
    for _ in range(100):
        if sessions:
            return sessions[0]
        await asyncio.sleep(0.01)
    raise AssertionError("the server never accepted the stream")


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    msg = await asyncio.wait_for(ws.receive(), 3)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    return ws.close_code


async def test_valid_token_is_accepted_and_frames_flow(env: Env) -> None:
    rec = await live_call(env)
    got: list[bytes] = []
    marks: list[str] = []

    def attach(session: StreamSession) -> None:
        session.on_media = got.append
        session.on_mark = marks.append
        session.send_frame(b"\xff" * 160)
        session.send_mark("u-1")

    env.media.on_session_start = attach
    async with env.session.ws_connect(env.url) as ws:
        await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send_str(start_frame(rec.provider_call_id or "", rec.stream_token or ""))
        out = json.loads((await asyncio.wait_for(ws.receive(), 3)).data)
        assert out == {
            "event": "media",
            "streamSid": "MZ1",
            "media": {"payload": base64.b64encode(b"\xff" * 160).decode()},
        }
        mark = json.loads((await asyncio.wait_for(ws.receive(), 3)).data)
        assert mark == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "u-1"}}
        payload = base64.b64encode(b"\x01" * 160).decode()
        await ws.send_str(
            json.dumps(
                {
                    "event": "media",
                    "streamSid": "MZ1",
                    "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": payload},
                }
            )
        )
        await ws.send_str(json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": "u-1"}}))
        await ws.send_str(
            json.dumps(
                {"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": "5"}}
            )
        )
        for _ in range(100):
            if got and marks:
                break
            await asyncio.sleep(0.01)
        assert env.media.has_stream(rec.call_id)
        await ws.send_str(
            json.dumps({"event": "stop", "streamSid": "MZ1", "stop": {"callSid": rec.provider_call_id}})
        )
        await closed_with(ws)
    assert got == [b"\x01" * 160]
    assert marks == ["u-1"]
    kinds = [e.kind for e in env.store.events_after(0, call_id=rec.call_id)]
    assert EventKind.DTMF in kinds
    await asyncio.sleep(0.2)  # past the reconnect grace: the provider says the call is live, so it stays
    assert not env.manager.get(rec.call_id).terminal


@pytest.mark.parametrize("case", ["wrong_token", "missing_token", "unknown_call"])
async def test_bad_start_is_closed_with_1008(env: Env, case: str) -> None:
    rec = await live_call(env)
    sid = rec.provider_call_id or ""
    token = {"wrong_token": "x" * 22, "missing_token": "", "unknown_call": rec.stream_token}[case] or ""
    if case == "unknown_call":
        sid = "CA-not-a-call"
    async with env.session.ws_connect(env.url) as ws:
        await ws.send_str(start_frame(sid, token))
        assert await closed_with(ws) == 1008
    assert not env.media.has_stream(rec.call_id)


async def test_no_start_frame_times_out(env: Env) -> None:
    async with env.session.ws_connect(env.url) as ws:
        await ws.send_str(json.dumps({"event": "connected"}))
        assert await closed_with(ws) == 1008
    assert env.media.rejected["start_timeout"] == 1


async def test_pending_cap_per_ip(env: Env) -> None:
    a = await env.session.ws_connect(env.url)
    b = await env.session.ws_connect(env.url)
    await asyncio.sleep(0.05)
    async with env.session.ws_connect(env.url) as c:
        assert await closed_with(c) == 1013
    await a.close()
    await b.close()


async def test_greeting_waits_for_the_stream(env: Env) -> None:
    rec = await live_call(env)
    spoken: list[str] = []

    async def speaker(session: StreamSession, text: str) -> str:
        spoken.append(text)
        return text

    VoiceBridge(env.manager, env.media, speaker=speaker)
    assert env.manager.get(rec.call_id).initial_message == "Hi"  # not spoken before the stream is up
    async with env.session.ws_connect(env.url) as ws:
        await ws.send_str(start_frame(rec.provider_call_id or "", rec.stream_token or ""))
        for _ in range(100):
            if spoken:
                break
            await asyncio.sleep(0.01)
        await ws.close()
    assert spoken == ["Hi"]
    assert env.manager.get(rec.call_id).initial_message == ""


async def test_a_replayed_token_cannot_take_over_a_live_stream_but_a_reconnect_can(env: Env) -> None:
    rec = await live_call(env)
    start = start_frame(rec.provider_call_id or "", rec.stream_token or "")
    async with env.session.ws_connect(env.url) as first:
        await first.send_str(start)
        for _ in range(100):
            if env.media.has_stream(rec.call_id):
                break
            await asyncio.sleep(0.01)
        async with env.session.ws_connect(env.url) as second:
            await second.send_str(start_frame(rec.provider_call_id or "", rec.stream_token or "", "MZ2"))
            assert await closed_with(second) == 1008
        assert env.media.rejected["already_streaming"] == 1
        assert env.media.sessions[rec.call_id].stream_id == "MZ1"  # the live stream kept the call
    for _ in range(100):  # the first stream dropped: reconnecting with the call's token works
        if not env.media.has_stream(rec.call_id):
            break
        await asyncio.sleep(0.01)
    async with env.session.ws_connect(env.url) as again:
        await again.send_str(start_frame(rec.provider_call_id or "", rec.stream_token or "", "MZ3"))
        for _ in range(100):
            if env.media.has_stream(rec.call_id):
                break
            await asyncio.sleep(0.01)
        assert env.media.sessions[rec.call_id].stream_id == "MZ3"
        await again.close()


async def test_a_stream_that_stops_draining_is_closed_not_buffered(env: Env) -> None:
    env.media.settings = dataclasses.replace(env.media.settings, max_buffered_bytes=8192)
    rec = await live_call(env)
    async with env.session.ws_connect(env.url) as ws:
        session = await started_session(env, rec, ws)
        # The client reads nothing: once the kernel's socket buffers are full the transport's own
        # buffer grows, and the session gives up instead of holding the audio in memory.
        sent = 0
        while not session.closed and sent < 200_000:
            session.send_frame(b"\xff" * 160)
            sent += 1
            if sent % 500 == 0:
                await asyncio.sleep(0)
        assert session.closed, "a stream that never drains must be closed"
        close_code = None
        while close_code is None:  # drain what was sent; the close frame follows it
            msg = await asyncio.wait_for(ws.receive(), 5)
            if msg.type is WSMsgType.TEXT:
                assert json.loads(msg.data)["event"] == "media"
            else:
                assert msg.type is WSMsgType.CLOSE
                close_code = msg.data  # the server's close frame (it may drop the socket right after)
        assert close_code == 1013


def test_text_frames_use_the_length_forms_of_rfc_6455() -> None:
    short, medium, long = b"a" * 125, b"b" * 126, b"c" * 65536
    assert wsframes.frame(wsframes.OP_TEXT, short) == b"\x81\x7d" + short
    assert wsframes.frame(wsframes.OP_TEXT, medium) == b"\x81\x7e\x00\x7e" + medium
    assert wsframes.frame(wsframes.OP_TEXT, long) == b"\x81\x7f" + (65536).to_bytes(8, "big") + long


async def test_nothing_is_written_after_the_close_frame(env: Env) -> None:
    rec = await live_call(env)
    async with env.session.ws_connect(env.url) as ws:
        session = await started_session(env, rec, ws)
        session.send_frame(b"\xff" * 160)
        closing = asyncio.create_task(env.media.aclose())  # shutdown: a close frame to every socket
        await asyncio.sleep(0)
        session.send_frame(b"\xff" * 160)  # the pacer's next tick, after the close frame went out
        assert session.closed
        kinds = []
        while True:
            msg = await asyncio.wait_for(ws.receive(), 3)
            kinds.append(msg.type)
            if msg.type is not WSMsgType.TEXT:
                break
        assert kinds == [WSMsgType.TEXT, WSMsgType.CLOSE]  # one frame, then the close: nothing after
        await closing


async def test_pings_are_answered_and_frames_split_across_reads_arrive_whole(env: Env) -> None:
    rec = await live_call(env)
    got: list[bytes] = []
    sessions: list[StreamSession] = []

    def attach(session: StreamSession) -> None:
        session.on_media = got.append
        sessions.append(session)

    env.media.on_session_start = attach
    url = URL(env.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(
            f"GET {url.path_qs} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 101") and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        start = start_frame(rec.provider_call_id or "", rec.stream_token or "").encode()
        media = json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": "/w=="}}).encode()
        ping = Frame(Opcode.PING, b"are you there").serialize(mask=True, extensions=[])
        wire = client_frame(start) + client_frame(media) + ping
        for i in range(0, len(wire), 37):  # TCP segments that cut frames anywhere
            writer.write(wire[i : i + 37])
            await writer.drain()
            await asyncio.sleep(0.001)
        pong = await asyncio.wait_for(reader.readexactly(2 + 13), 3)
        assert pong == bytes((0x8A, 13)) + b"are you there"
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got == [b"\xff"] and sessions[0].stream_id == "MZ1"
    finally:
        writer.close()


def client_frame(payload: bytes) -> bytes:
    return Frame(Opcode.TEXT, payload).serialize(mask=True, extensions=[])


async def test_text_that_is_not_utf8_closes_the_stream_with_1007(env: Env) -> None:
    rec = await live_call(env)
    async with env.session.ws_connect(env.url) as ws:
        session = await started_session(env, rec, ws)
        await ws.send_bytes(b"ignored: media streams carry no binary messages")
        await ws.send_frame(b"\xff\xfe not utf-8", WSMsgType.TEXT)  # type: ignore[arg-type]
        assert await closed_with(ws) == 1007
    for _ in range(100):
        if session.closed and not env.media.has_stream(rec.call_id):
            break
        await asyncio.sleep(0.01)
    assert session.closed and not env.media.has_stream(rec.call_id)


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "expected 'Upgrade: websocket'"),
        (
            {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8"},
            "unsupported Sec-WebSocket-Version",
        ),
    ],
)
async def test_a_request_that_is_not_a_websocket_upgrade_gets_400(
    env: Env, headers: dict[str, str], why: str
) -> None:
    async with env.session.get(env.url.replace("ws://", "http://", 1), headers=headers) as resp:
        assert resp.status == 400
        assert why in await resp.text()
    assert env.media._open == 0


async def test_dtmf_from_the_stream_is_handled_in_order_under_the_calls_log_id(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = await live_call(env)
    seen: list[tuple[str, str | None]] = []
    handle = env.manager.handle_events

    async def recording(events: list[ProviderEvent]) -> None:
        seen.extend((e.digits or "", current_call_id.get()) for e in events)
        await asyncio.sleep(0.01 if events[0].digits == "1" else 0)  # the first is the slowest
        await handle(events)

    monkeypatch.setattr(env.manager, "handle_events", recording)
    async with env.session.ws_connect(env.url) as ws:
        await started_session(env, rec, ws)
        for digit in "123":
            dtmf = {"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": digit}}
            await ws.send_str(json.dumps(dtmf))
        for _ in range(100):
            if len(seen) == 3:
                break
            await asyncio.sleep(0.01)
    assert seen == [("1", rec.call_id), ("2", rec.call_id), ("3", rec.call_id)]
    digits = [
        e.data["digits"] for e in env.store.events_after(0, call_id=rec.call_id) if e.kind is EventKind.DTMF
    ]
    assert digits == ["1", "2", "3"]


async def test_a_failing_frame_handler_ends_the_stream_and_logs_under_the_call_id(env: Env) -> None:
    rec = await live_call(env)
    logged: list[tuple[str, str | None]] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append((record.getMessage(), current_call_id.get()))

    handler = Recorder(logging.ERROR)
    logging.getLogger("voicecall.media").addHandler(handler)
    try:
        async with env.session.ws_connect(env.url) as ws:
            session = await started_session(env, rec, ws)

            def broken(audio: bytes) -> None:
                raise RuntimeError("bug in a frame handler")

            session.on_media = broken
            payload = base64.b64encode(b"\x01" * 160).decode()
            await ws.send_str(
                json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": payload}})
            )
            assert await closed_with(ws) == 1000
    finally:
        logging.getLogger("voicecall.media").removeHandler(handler)
    assert logged == [
        (f"media stream of call {rec.call_id} failed on an inbound frame; closing it", rec.call_id)
    ]
    assert not env.media.has_stream(rec.call_id)
