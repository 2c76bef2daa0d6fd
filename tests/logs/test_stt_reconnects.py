"""voicecall_stt_reconnects_total: the transcribers' reconnect attempts, summed at scrape time."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Running, make_config, start
from tests.metrics.test_metrics import sample, scrape
from tests.voice.fakes_openai_realtime import FakeRealtimeServer, eventually
from voicecall_server.media.voice import StreamVoice
from voicecall_server.voice.stt import RealtimeTranscriber

METRIC = "voicecall_stt_reconnects_total"


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtimeServer]:
    server = FakeRealtimeServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    running = await start(make_config(tmp_path / "store"))
    yield running
    running.sidecar.bridge = None  # the stand-in voice stack below has nothing to close
    await running.close()


@pytest.fixture
async def transcribers(fake: FakeRealtimeServer) -> AsyncIterator[list[RealtimeTranscriber]]:
    made: list[RealtimeTranscriber] = []
    yield made
    for stt in made:
        await stt.aclose()


def transcriber(fake: FakeRealtimeServer, made: list[RealtimeTranscriber]) -> RealtimeTranscriber:
    errors: list[str] = []

    def ignore(*_: Any) -> None:
        pass

    stt = RealtimeTranscriber(
        api_key="sk-test-0123456789abcdef",
        base_url=fake.base_url,
        on_partial=ignore,
        on_final=ignore,
        on_speech_started=ignore,
        on_error=errors.append,
        backoff=(0.01, 0.01, 0.01),
    )
    made.append(stt)
    return stt


async def reconnects(server: Running) -> float | None:
    status, text = await scrape(server)
    assert status == 200
    return sample(text, METRIC, provider="mock")


async def test_transcriber_counts_each_reconnect_attempt(
    fake: FakeRealtimeServer, transcribers: list[RealtimeTranscriber]
) -> None:
    stt = transcriber(fake, transcribers)
    assert stt.reconnects == 0
    fake.refuse(2, status=500)
    await stt.start()
    await eventually(lambda: stt.ready)
    assert fake.attempts == 3
    assert stt.reconnects == 2
    fake.connections[0].drop()
    await eventually(lambda: len(fake.connections) == 2 and stt.ready)
    assert stt.reconnects == 3


async def test_metric_sums_live_transcribers_and_never_falls(
    server: Running, fake: FakeRealtimeServer, transcribers: list[RealtimeTranscriber]
) -> None:
    assert await reconnects(server) == 0  # no voice stack (mock provider): the series is still there
    voice = StreamVoice(None, None, None, None)  # type: ignore[arg-type]
    stt_map = voice._stt
    server.sidecar.bridge = types.SimpleNamespace(voice=voice)
    first = transcriber(fake, transcribers)
    fake.refuse(2, status=503)
    await first.start()
    await eventually(lambda: first.ready)
    stt_map["call-1"] = first
    assert await reconnects(server) == 2
    second = transcriber(fake, transcribers)
    second.reconnects = 1  # counts kept by a transcriber the metric has not seen yet
    stt_map["call-2"] = second
    assert await reconnects(server) == 3
    await voice.detach(types.SimpleNamespace(call_id="call-1"))  # type: ignore[arg-type]
    assert await reconnects(server) == 3  # the call ended: its transcriber left the voice stack
    await voice.detach(types.SimpleNamespace(call_id="call-2"))  # type: ignore[arg-type]
    assert await reconnects(server) == 3


async def test_metric_uses_the_voice_stacks_retired_total_when_it_keeps_one(server: Running) -> None:
    live = types.SimpleNamespace(reconnects=2)
    unknown = types.SimpleNamespace()  # no reconnects attribute: counts as 0
    voice = types.SimpleNamespace(_stt={"a": live, "b": unknown}, stt_reconnects_retired=5)
    server.sidecar.bridge = types.SimpleNamespace(voice=voice)
    assert await reconnects(server) == 7


async def test_the_voice_stack_keeps_the_reconnects_of_ended_calls() -> None:
    class Ended:
        reconnects = 3

        async def aclose(self) -> None:
            pass

    voice = StreamVoice(None, None, None, None)  # type: ignore[arg-type]
    voice._stt["call-1"] = Ended()  # type: ignore[assignment]
    voice._stt["call-2"] = Ended()  # type: ignore[assignment]
    await voice.detach(types.SimpleNamespace(call_id="call-1"))  # type: ignore[arg-type]
    assert voice.stt_reconnects_retired == 3  # call-1's count outlives its transcriber
    await voice.aclose()
    assert voice.stt_reconnects_retired == 6
