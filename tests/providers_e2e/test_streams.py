"""Media streams on Telnyx and Plivo through the real sidecar, each client in its provider's format.

The stream URL and token come from what the sidecar told the provider: the Telnyx ``answer``
command's ``stream_url`` (token in its query) and the Plivo ``<Stream>`` element (token in
``extraHeaders``, echoed as ``extra_headers``). TTS is an OpenAI speech fake and STT an OpenAI
Realtime fake, so the greeting and ``Speak`` arrive as paced frames and a caller's speech start
interrupts playback (``clear`` / ``clearAudio``).
"""

from __future__ import annotations

import asyncio
import math
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest

from voicecall_client.v1 import voicecall_service_pb2 as pb

from ..e2e.harness import Running, start
from ..voice.fakes_openai_realtime import FakeRealtimeConnection, FakeRealtimeServer
from ..voice.fakes_tts import OPENAI_KEY, FakeTtsServer
from .conftest import self_public_config
from .fakes_drivers import FROM
from .fakes_plivo import plivo_carrier
from .fakes_streams import STREAM_ID, WAIT_S, PlivoStream, StreamClient, TelnyxStream
from .fakes_telnyx import telnyx_carrier
from .test_plivo import plivo_overrides
from .test_telnyx import telnyx_overrides

FRIEND = "+15557654321"
GREETING = "Hello from the sidecar"
# 24 kHz PCM16 from the TTS fake: 100 ms chunks of a 440 Hz tone (5 frames of 20 ms each).
_TONE = b"".join(
    round(8000 * math.sin(2 * math.pi * 440 * i / 24000)).to_bytes(2, "little", signed=True)
    for i in range(2400)
)
CHUNKS = [_TONE] * 4


# -- the sidecar with streaming on, and a call whose stream is due ---------------------------------
@dataclass
class Voice:
    tts: FakeTtsServer
    stt: FakeRealtimeServer


@dataclass
class Line:
    running: Running
    call_id: str
    """Our call id."""
    client: Callable[[str | None], StreamClient]
    """A stream client for the call; with a token given, that token instead of the genuine one."""


def streaming(voice: Voice) -> dict[str, Any]:
    return {
        "streaming": {"enabled": True, "openaiApiKey": "sk-test", "openaiBaseUrl": voice.stt.base_url},
        "tts": {"provider": "openai", "openai": {"apiKey": OPENAI_KEY, "baseUrl": voice.tts.url + "/v1"}},
    }


def with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["token"] = token
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


async def telnyx_line(stack: AsyncExitStack, tmp: Path, voice: Voice, http: aiohttp.ClientSession) -> Line:
    carrier = await stack.enter_async_context(telnyx_carrier())
    cfg, public = self_public_config(tmp / "s", **telnyx_overrides(carrier, **streaming(voice)))
    running = await start(cfg)
    stack.push_async_callback(running.close)
    carrier.voice_url = public
    ccid, posted = await carrier.inbound(FRIEND, FROM)
    assert posted.status == 200
    answer = await carrier.wait_commands(ccid, "answer", 1)
    assert (answer["stream_track"], answer["stream_bidirectional_mode"]) == ("inbound_track", "rtp")
    assert answer["stream_bidirectional_codec"] == "PCMU"
    url = answer["stream_url"]
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("ws", urlsplit(public).netloc, "/voice/stream")
    rec = running.sidecar.manager.find(ccid)
    assert rec is not None and dict(parse_qsl(parts.query)) == {"token": rec.stream_token}
    # Telnyx opens the stream once the call is answered (its call.answered webhook is on the way).
    await carrier.wait_for(lambda: any(b"call.answered" in p.body for p in carrier.posted))

    def client(token: str | None) -> StreamClient:
        return TelnyxStream(http, url if token is None else with_token(url, token), ccid)

    return Line(running, rec.call_id, client)


async def plivo_line(stack: AsyncExitStack, tmp: Path, voice: Voice, http: aiohttp.ClientSession) -> Line:
    carrier = await stack.enter_async_context(plivo_carrier())
    cfg, public = self_public_config(tmp / "s", **plivo_overrides(carrier.base_url, **streaming(voice)))
    running = await start(cfg)
    stack.push_async_callback(running.close)
    carrier.voice_url = public
    cuuid, posted = await carrier.inbound(FRIEND, FROM)
    assert posted.status == 200
    stream = ET.fromstring(posted.body).find("Stream")  # noqa: S314 - our own sidecar's XML
    assert stream is not None and stream.text is not None
    assert (stream.get("bidirectional"), stream.get("contentType")) == ("true", "audio/x-mulaw;rate=8000")
    url, headers = stream.text.strip(), stream.get("extraHeaders", "")
    assert urlsplit(url).path == "/voice/stream" and not urlsplit(url).query  # the token is not in the URL
    rec = running.sidecar.manager.find(cuuid)
    assert rec is not None and rec.stream_token and rec.stream_token not in url

    def client(token: str | None) -> StreamClient:
        carried = headers if token is None else "vctoken=" + token.encode().hex()
        return PlivoStream(http, url, cuuid, carried)

    return Line(running, rec.call_id, client)


LINES: dict[str, Callable[..., Awaitable[Line]]] = {"telnyx": telnyx_line, "plivo": plivo_line}


@pytest.fixture
async def voice() -> AsyncIterator[Voice]:
    stt = FakeRealtimeServer()
    await stt.start()
    try:
        async with FakeTtsServer(chunks=list(CHUNKS)) as tts:
            yield Voice(tts, stt)
    finally:
        await stt.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(params=sorted(LINES))
async def line(
    request: pytest.FixtureRequest, tmp_path: Path, voice: Voice, http: aiohttp.ClientSession
) -> AsyncIterator[Line]:
    async with AsyncExitStack() as stack:
        yield await LINES[request.param](stack, tmp_path, voice, http)


async def eventually(predicate: Callable[[], bool]) -> None:
    async def poll() -> None:
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), WAIT_S)


async def bot_lines(line: Line) -> list[str]:
    call = (await line.running.stub.Status(pb.StatusRequest(call_id=line.call_id))).call
    return [t.text for t in call.transcript if t.speaker == pb.SPEAKER_BOT]


async def tail_until_dtmf(line: Line, digits: str) -> list[str]:
    seen: list[str] = []

    async def run() -> None:
        async for item in line.running.stub.Tail(pb.TailRequest(call_id=line.call_id)):
            if item.event.HasField("dtmf"):
                seen.append(item.event.dtmf.digits)
                if item.event.dtmf.digits == digits:
                    return

    await asyncio.wait_for(run(), WAIT_S)
    return seen


def check_envelope(client: StreamClient, sent: dict[str, Any]) -> None:
    """An outbound message exactly as the provider documents it."""
    event = sent["event"]
    if isinstance(client, TelnyxStream):
        if event == "media":
            assert sent.keys() == {"event", "media"} and sent["media"].keys() == {"payload"}, sent
        elif event == "mark":
            assert sent.keys() == {"event", "mark"} and sent["mark"].keys() == {"name"}, sent
        else:
            assert sent == {"event": "clear"}
        return
    if event == "playAudio":
        assert sent.keys() == {"event", "media"}
        assert {k: v for k, v in sent["media"].items() if k != "payload"} == {
            "contentType": "audio/x-mulaw",
            "sampleRate": 8000,
        }
    elif event == "checkpoint":
        assert sent.keys() == {"event", "streamId", "name"} and sent["streamId"] == STREAM_ID
    else:
        assert sent == {"event": "clearAudio", "streamId": STREAM_ID}


# 4 chunks of 100 ms at 24 kHz -> 400 ms at 8 kHz -> 20 frames of 20 ms.
GREETING_FRAMES = 20


@pytest.mark.parametrize("token", ["wrong", "missing"])
async def test_wrong_or_missing_token_is_closed_1008(line: Line, token: str) -> None:
    bad = line.client("x" * 22 if token == "wrong" else "")
    await bad.open()
    await bad.send(bad.start_message())
    assert await bad.closed_with() == 1008
    await bad.close()
    media = line.running.sidecar.media
    assert media is not None and not media.has_stream(line.call_id)
    assert media.rejected == {"bad_token": 1}
    assert await bot_lines(line) == []  # the greeting waits for a genuine stream


async def test_stream_greets_hears_dtmf_and_is_interrupted(line: Line, voice: Voice) -> None:
    client = line.client(None)
    await client.connect()
    try:
        await run_stream(line, voice, client)
    finally:
        await client.close()


async def run_stream(line: Line, voice: Voice, client: StreamClient) -> None:
    media = line.running.sidecar.media
    assert media is not None
    # 1. Accepted: the greeting is spoken on the stream (frames, then a mark), and heard.
    await client.wait_for(lambda: client.index(client.mark_event) is not None)
    mark_at = client.index(client.mark_event)
    assert mark_at == GREETING_FRAMES and media.has_stream(line.call_id)
    for sent in client.received[: mark_at + 1]:
        check_envelope(client, sent)
    assert all(len(client.payload(m)) == 160 for m in client.received[:mark_at])
    assert [r.body["input"] for r in voice.tts.requests] == [GREETING]
    await eventually(lambda: line.running.sidecar.manager.get(line.call_id).transcript != [])
    assert await bot_lines(line) == [GREETING]

    # 2. The caller's audio reaches speech recognition unchanged.
    await eventually(lambda: bool(voice.stt.connections))
    stt: FakeRealtimeConnection = voice.stt.connections[0]
    caller = bytes(range(256)) * 5
    await client.send_audio(caller)
    await eventually(lambda: caller in bytes(stt.audio))

    # 3. A key press on the stream is a DTMF event on the call.
    await client.send(client.dtmf_message("5"))
    assert await tail_until_dtmf(line, "5") == ["5"]

    # 4. Speak plays on the stream; the caller talks over it: the provider is told to clear.
    voice.tts.hold_last = True  # the utterance cannot finish before the barge-in
    before = len(client.received)

    async def say() -> pb.SpeakResponse:
        return await line.running.stub.Speak(
            pb.SpeakRequest(call_id=line.call_id, message="The full release notes")
        )

    speak = asyncio.create_task(say())
    await client.wait_for(lambda: len(client.received) - before >= 3)
    await stt.speech_started("item_1")
    await client.wait_for(lambda: client.index(client.clear_event, before) is not None)
    clear_at = client.index(client.clear_event, before)
    assert clear_at is not None
    for sent in client.received[before : clear_at + 1]:
        check_envelope(client, sent)
    kinds = [m["event"] for m in client.received[before:clear_at]]
    assert set(kinds) == {client.media_event}, "interrupted before its mark"
    await asyncio.wait_for(speak, WAIT_S)
    voice.tts.release.set()
    assert [r.body["input"] for r in voice.tts.requests] == [GREETING, "The full release notes"]

    # 5. The stream ends; the call does not (only the provider says when it is over).
    if isinstance(client, TelnyxStream):
        await client.send(client.stop_message())
        assert await client.closed_with() == 1000
    else:
        await client.close()  # Plivo ends a stream by closing the socket
    await eventually(lambda: not media.has_stream(line.call_id))
    assert not line.running.sidecar.manager.get(line.call_id).terminal
