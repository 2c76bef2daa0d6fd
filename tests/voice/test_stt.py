"""RealtimeTranscriber through the real openai SDK against a loopback Realtime fake."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.voice.fakes_openai_realtime import FakeRealtimeServer, eventually
from voicecall_server.voice.stt import RealtimeTranscriber, build_transcription_session

API_KEY = "sk-test-SECRETKEY0123456789"
FRAME = bytes(range(160))


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtimeServer]:
    server = FakeRealtimeServer()
    await server.start()
    yield server
    await server.close()


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.errors: list[str] = []

    def partial(self, text: str) -> None:
        self.events.append(("partial", text))

    def final(self, text: str, confidence: float | None) -> None:
        self.events.append(("final", text, confidence))

    def speech_started(self) -> None:
        self.events.append(("speech_started",))

    def error(self, message: str) -> None:
        self.errors.append(message)


Factory = Callable[..., RealtimeTranscriber]


@pytest.fixture
async def make(fake: FakeRealtimeServer) -> AsyncIterator[tuple[Factory, Recorder]]:
    rec = Recorder()
    made: list[RealtimeTranscriber] = []

    def factory(**overrides: Any) -> RealtimeTranscriber:
        kwargs: dict[str, Any] = {
            "api_key": API_KEY,
            "base_url": fake.base_url,
            "on_partial": rec.partial,
            "on_final": rec.final,
            "on_speech_started": rec.speech_started,
            "on_error": rec.error,
            "backoff": (0.01, 0.02, 0.03),
        }
        kwargs.update(overrides)
        stt = RealtimeTranscriber(**kwargs)
        made.append(stt)
        return stt

    yield factory, rec
    for stt in made:
        await stt.aclose()


async def test_session_update_configures_ulaw_model_and_vad(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    stt = factory(model="gpt-4o-mini-transcribe", vad_threshold=0.7, silence_duration_ms=650, language="de")
    assert not stt.ready
    await stt.start()
    assert stt.ready
    (conn,) = fake.connections
    assert conn.query == {"intent": "transcription"}
    assert conn.authorization == f"Bearer {API_KEY}"
    # No permessage-deflate: base64 audio barely compresses, and each connection's zlib state
    # would cost ~300 KB and CPU on every append.
    assert "Sec-WebSocket-Extensions" not in conn.request.headers
    (update,) = conn.session_updates
    assert update["type"] == "session.update"
    assert update["session"] == {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "transcription": {"model": "gpt-4o-mini-transcribe", "language": "de"},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.7,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 650,
                },
            }
        },
        "include": ["item.input_audio_transcription.logprobs"],
    }
    assert rec.errors == []


def test_session_defaults_and_whisper_without_logprobs() -> None:
    session = build_transcription_session(
        model="whisper-1", language=None, vad_threshold=0.5, prefix_padding_ms=300, silence_duration_ms=800
    )
    assert "include" not in session
    audio_input = session["audio"]["input"]
    assert audio_input["transcription"] == {"model": "whisper-1"}
    assert audio_input["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 800,
    }


async def test_partial_final_and_speech_started_in_order(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    stt = factory()
    await stt.start()
    conn = fake.connections[0]
    await conn.speech_started("item_1")
    await conn.delta("item_1", "Hel")
    await conn.delta("item_1", "lo there")
    await conn.completed("item_1", "  Hello   there ", logprobs=[-0.1, -0.3])
    await conn.speech_started("item_2")
    await conn.delta("item_2", "Bye")
    await conn.completed("item_2", "Bye.")
    await eventually(lambda: len(rec.events) == 7)
    assert rec.events[:6] == [
        ("speech_started",),
        ("partial", "Hel"),
        ("partial", "Hello there"),
        ("final", "Hello there", pytest.approx(math.exp(-0.2))),
        ("speech_started",),
        ("partial", "Bye"),
    ]
    assert rec.events[6] == ("final", "Bye.", None)


async def test_empty_final_is_not_reported_and_partials_restart(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    stt = factory()
    await stt.start()
    conn = fake.connections[0]
    await conn.delta("item_1", "uh")
    await conn.completed("item_1", "   ")
    await conn.delta("item_2", "yes")
    await eventually(lambda: len(rec.events) == 2)
    assert rec.events == [("partial", "uh"), ("partial", "yes")]


async def test_audio_arrives_intact_as_base64_appends(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, _ = make
    stt = factory()
    sent = b"".join(bytes([(i * 7 + j) % 256 for j in range(160)]) for i in range(100))
    await stt.start()
    for offset in range(0, len(sent), 160):
        stt.feed(sent[offset : offset + 160])
    conn = fake.connections[0]
    await eventually(lambda: len(conn.audio) >= len(sent))
    assert bytes(conn.audio) == sent
    assert all(event["type"] in {"session.update", "input_audio_buffer.append"} for event in conn.received)


async def test_audio_fed_before_connecting_is_flushed(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, _ = make
    stt = factory()
    stt.feed(FRAME)
    stt.feed(FRAME[::-1])
    await stt.start()
    conn = fake.connections[0]
    await eventually(lambda: len(conn.audio) == 320)
    assert bytes(conn.audio) == FRAME + FRAME[::-1]


async def _drop_and_hold(fake: FakeRealtimeServer, stt: RealtimeTranscriber) -> asyncio.Event:
    hold = asyncio.Event()
    fake.hold = hold
    fake.connections[-1].drop()
    attempts = fake.attempts
    await eventually(lambda: not stt.ready and fake.attempts == attempts + 1)
    return hold


async def test_reconnects_after_drop_and_flushes_buffered_audio(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    stt = factory()
    await stt.start()
    stt.feed(FRAME)
    await eventually(lambda: len(fake.connections[0].audio) == 160)
    hold = await _drop_and_hold(fake, stt)
    buffered = bytes(range(200, 256)) * 10
    stt.feed(buffered)
    hold.set()
    await eventually(lambda: len(fake.connections) == 2 and len(fake.connections[1].audio) == len(buffered))
    await eventually(lambda: stt.ready)
    assert bytes(fake.connections[0].audio) == FRAME
    assert bytes(fake.connections[1].audio) == buffered
    assert len(fake.connections[1].session_updates) == 1
    assert rec.errors == []


async def test_buffer_while_disconnected_is_bounded_keeping_newest(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, _ = make
    stt = factory(max_buffer_bytes=1600)
    await stt.start()
    hold = await _drop_and_hold(fake, stt)
    fed = b"".join(bytes([i]) * 160 for i in range(25))  # 4000 bytes, 2.5x the bound
    for offset in range(0, len(fed), 160):
        stt.feed(fed[offset : offset + 160])
    hold.set()
    await eventually(lambda: len(fake.connections) == 2 and len(fake.connections[1].audio) == 1600)
    stt.feed(b"\x7f" * 160)
    await eventually(lambda: len(fake.connections[1].audio) == 1760)
    assert bytes(fake.connections[1].audio) == fed[-1600:] + b"\x7f" * 160


async def test_each_successful_session_resets_the_attempt_budget(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    fake.drops_after_update = 5
    stt = factory(backoff=(0.01, 0.01))
    await stt.start()
    await eventually(lambda: len(fake.connections) == 6 and stt.ready)
    assert rec.errors == []
    await fake.connections[-1].completed("item_9", "still here")
    await eventually(lambda: rec.events == [("final", "still here", None)])


async def test_refused_connections_give_up_after_backoff_with_one_error(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    fake.refuse(None, status=503)
    stt = factory(backoff=(0.01, 0.02, 0.03))
    await stt.start()
    assert not stt.ready
    await eventually(lambda: rec.errors != [])
    assert fake.attempts == 4
    assert rec.errors == ["speech recognition unavailable: HTTP 503"]
    stt.feed(FRAME)
    await stt.aclose()
    assert fake.attempts == 4
    assert rec.errors == ["speech recognition unavailable: HTTP 503"]


async def test_recovers_when_refusals_stop_within_the_budget(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    fake.refuse(2, status=500)
    stt = factory(backoff=(0.01, 0.01, 0.01))
    stt.feed(FRAME)
    await stt.start()
    await eventually(lambda: stt.ready)
    assert fake.attempts == 3
    await eventually(lambda: len(fake.connections[0].audio) == 160)
    assert rec.errors == []


async def test_auth_rejection_is_fatal_without_retries(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    fake.refuse(None, status=401)
    stt = factory()
    await stt.start()
    await eventually(lambda: rec.errors != [])
    assert rec.errors == ["speech recognition unavailable: upstream rejected the connection (HTTP 401)"]
    assert fake.attempts == 1
    assert not stt.ready


async def test_rejected_session_update_is_fatal_and_never_leaks_the_key(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    factory, rec = make
    fake.reject_session_update = (
        "invalid_request_error",
        "invalid_value",
        f"Incorrect API key provided: {API_KEY}",
    )
    stt = factory()
    await stt.start()
    await eventually(lambda: rec.errors != [])
    assert fake.attempts == 1
    assert len(rec.errors) == 1
    assert rec.errors[0].startswith("speech recognition unavailable: Incorrect API key provided")
    assert API_KEY not in rec.errors[0]
    assert "SECRETKEY" not in caplog.text
    assert API_KEY not in repr(stt)
    assert not stt.ready


async def test_non_fatal_error_event_keeps_the_session(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    factory, rec = make
    stt = factory()
    await stt.start()
    conn = fake.connections[0]
    await conn.error(type="server_error", message="The server had an error")
    await conn.completed("item_1", "after the error")
    await eventually(lambda: rec.events != [])
    assert rec.events == [("final", "after the error", None)]
    assert rec.errors == []
    assert stt.ready
    assert "The server had an error" in caplog.text


async def test_expired_session_reconnects(fake: FakeRealtimeServer, make: tuple[Factory, Recorder]) -> None:
    factory, rec = make
    stt = factory()
    await stt.start()
    conn = fake.connections[0]
    await conn.error(type="invalid_request_error", code="session_expired", message="Session expired")
    await conn.close()
    await eventually(lambda: len(fake.connections) == 2 and stt.ready)
    assert rec.errors == []


async def test_unconfigured_session_times_out_and_gives_up(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    fake.reply_to_update = False
    stt = factory(backoff=(0.01,), connect_timeout_s=0.05)
    await stt.start()
    await eventually(lambda: rec.errors != [])
    assert rec.errors == ["speech recognition unavailable: timed out"]
    assert len(fake.connections) == 2
    await eventually(lambda: all(c.closed.is_set() for c in fake.connections))


async def test_hung_handshake_times_out(fake: FakeRealtimeServer, make: tuple[Factory, Recorder]) -> None:
    factory, rec = make
    fake.hold = asyncio.Event()
    stt = factory(backoff=(), connect_timeout_s=0.05)
    await stt.start()
    assert rec.errors == ["speech recognition unavailable: timed out"]
    assert not stt.ready


async def test_aclose_closes_the_socket_and_stops_reconnecting(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    stt = factory()
    tasks_before = asyncio.all_tasks()
    await stt.start()
    conn = fake.connections[0]
    await stt.aclose()
    await asyncio.wait_for(conn.closed.wait(), 5)
    assert not stt.ready
    stt.feed(FRAME)
    assert asyncio.all_tasks() - tasks_before == set()
    assert fake.attempts == 1
    assert rec.errors == []


async def test_aclose_during_backoff_reports_nothing(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    fake.refuse(None)
    stt = factory(backoff=(30, 30))
    tasks_before = asyncio.all_tasks()
    await stt.start()
    await stt.aclose()
    assert asyncio.all_tasks() - tasks_before == set()
    assert fake.attempts == 1
    assert rec.errors == []


async def test_failing_callback_does_not_break_the_session(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make

    def broken(text: str) -> None:
        raise RuntimeError("consumer bug")

    stt = factory(on_partial=broken)
    await stt.start()
    conn = fake.connections[0]
    await conn.delta("item_1", "hi")
    await conn.completed("item_1", "hi")
    await eventually(lambda: rec.events != [])
    assert rec.events == [("final", "hi", None)]
    assert stt.ready


async def test_speech_stopped_is_reported_with_its_loop_time_before_the_final(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    stopped: list[float] = []

    def on_stopped(at: float) -> None:
        stopped.append(at)
        rec.events.append(("speech_stopped",))

    stt = factory(on_speech_stopped=on_stopped)
    await stt.start()
    conn = fake.connections[0]
    loop = asyncio.get_running_loop()
    before = loop.time()
    await conn.speech_started("item_1")
    await conn.speech_stopped("item_1", audio_end_ms=1200)
    await conn.completed("item_1", "Hello.")
    await eventually(lambda: len(rec.events) == 3)
    assert rec.events == [("speech_started",), ("speech_stopped",), ("final", "Hello.", None)]
    (at,) = stopped
    assert before <= at <= loop.time(), "the stop is stamped on the event loop's clock"


async def test_speech_stopped_without_a_callback_changes_nothing(
    fake: FakeRealtimeServer, make: tuple[Factory, Recorder]
) -> None:
    factory, rec = make
    stt = factory()  # the callback is optional: existing callers pass none
    await stt.start()
    conn = fake.connections[0]
    await conn.speech_started("item_1")
    await conn.speech_stopped("item_1")
    await conn.completed("item_1", "Still here.")
    await eventually(lambda: len(rec.events) == 2)
    assert rec.events == [("speech_started",), ("final", "Still here.", None)]
    assert stt.ready and rec.errors == []
