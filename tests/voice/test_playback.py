"""The per-call playback queue: FIFO, marks, barge-in, synthesis failures, shutdown.

Most tests drive ``Playback.pace()`` by hand (each call is one 20 ms tick of the pacer), so every
step is deterministic; the last ones run the real Pacer on a fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from voicecall_server.voice.audio import FRAME_BYTES
from voicecall_server.voice.pacer import Pacer
from voicecall_server.voice.playback import Playback, PlaybackResult, QueueFull, Utterance, _cut_at_word
from voicecall_server.voice.tts import TtsError

from .fakes_tts import FakeClock, FakeSink, ScriptedAudio, settle

GUARD_S = 10


def frames(n: int, fill: int = 1) -> bytes:
    return bytes([fill]) * (FRAME_BYTES * n)


def ticks(pb: Playback, n: int) -> int:
    return sum(pb.pace() for _ in range(n))


@pytest.fixture
async def setup() -> AsyncIterator[tuple[Playback, FakeSink, Pacer]]:
    pacer = Pacer()  # not started: the tests tick by hand
    sink = FakeSink()
    pb = Playback(sink, pacer)
    yield pb, sink, pacer
    await pb.close()
    await pacer.aclose()


async def result(utt: Utterance) -> PlaybackResult:
    return await asyncio.wait_for(utt, GUARD_S)  # awaiting the Utterance itself


async def test_synthesis_reads_ahead_a_bounded_amount_and_playback_never_starves() -> None:
    pacer = Pacer()
    sink = FakeSink()
    pb = Playback(sink, pacer, read_ahead_frames=8)
    chunks = [frames(5, i + 1) for i in range(10)]  # 50 frames, all available at once
    audio = ScriptedAudio(*chunks, end=True)
    utt = pb.enqueue("long", audio)
    await settle(lambda: utt.synthesised >= 8)
    await settle(rounds=50)
    # It stopped at the bound: 10 frames read (two chunks), 40 left upstream.
    assert utt.synthesised == 10 and not audio.drained
    played = 0
    for _ in range(60):
        played += pb.pace()
        await settle(rounds=5)
        assert len(utt.frames) <= 8 + 5  # the bound plus at most one chunk past it
    assert played == 50  # every tick had a frame until the end: reading resumed in time
    assert [f[0] for f in sink.frames] == [i // 5 + 1 for i in range(50)]
    assert sink.marks == [utt.mark]
    await pb.close()
    await pacer.aclose()


async def test_barge_in_while_synthesis_waits_for_room_stops_it() -> None:
    pacer = Pacer()
    sink = FakeSink()
    pb = Playback(sink, pacer, read_ahead_frames=4)
    audio = ScriptedAudio(*[frames(2) for _ in range(10)])
    utt = pb.enqueue("long", audio)
    await settle(lambda: utt.synthesised >= 4)
    ticks(pb, 1)
    pb.barge_in()
    assert (await result(utt)).status == "partial"
    await settle(lambda: audio.closed)
    await pb.close()
    await pacer.aclose()


async def test_fifo_frames_then_mark_and_completion_on_echo(setup: tuple[Playback, FakeSink, Pacer]) -> None:
    pb, sink, _ = setup
    a1 = ScriptedAudio(frames(1, 1), frames(1, 2), end=True)
    a2 = ScriptedAudio(frames(1, 3), end=True)
    u1 = pb.enqueue("first", a1)
    u2 = pb.enqueue("second", a2)
    await settle(lambda: a1.drained and a2.drained)
    assert ticks(pb, 5) == 3
    assert sink.kinds == ["frame", "frame", "mark", "frame", "mark"]
    assert [f[0] for f in sink.frames] == [1, 2, 3]
    assert sink.marks == [u1.mark, u2.mark] == ["u-1", "u-2"]
    assert not u1.result.done()  # sent is not heard: wait for the echo
    pb.on_mark_echo("u-1")
    assert await result(u1) == PlaybackResult("played", 2, "first")
    assert not u2.result.done()
    pb.on_mark_echo("u-2")
    assert await result(u2) == PlaybackResult("played", 1, "second")
    assert not pb.busy
    assert a1.closed
    assert a2.closed


async def test_frames_flow_while_synthesis_is_still_running(setup: tuple[Playback, FakeSink, Pacer]) -> None:
    pb, sink, _ = setup
    audio = ScriptedAudio(frames(1))
    utt = pb.enqueue("streaming", audio)
    await settle(lambda: audio.drained)
    assert ticks(pb, 3) == 1  # one frame so far, then an underrun (no mark yet)
    assert sink.kinds == ["frame"]
    audio.feed(frames(1)[:100])  # a partial frame waits for more bytes
    await settle(lambda: audio.drained)
    assert ticks(pb, 1) == 0
    audio.feed(frames(1)[:100])
    audio.end()
    await settle(lambda: audio.drained)
    assert ticks(pb, 3) == 2
    assert sink.kinds == ["frame", "frame", "frame", "mark"]
    assert sink.frames[2] == b"\x01" * 40 + b"\xff" * (FRAME_BYTES - 40)
    assert all(len(f) == FRAME_BYTES for f in sink.frames)
    assert not utt.result.done()


async def test_tail_is_padded_with_ulaw_silence(setup: tuple[Playback, FakeSink, Pacer]) -> None:
    pb, sink, _ = setup
    audio = ScriptedAudio(b"\x05" * (FRAME_BYTES + 10), end=True)
    pb.enqueue("x", audio)
    await settle(lambda: audio.drained)
    ticks(pb, 3)
    assert sink.frames == [b"\x05" * FRAME_BYTES, b"\x05" * 10 + b"\xff" * (FRAME_BYTES - 10)]


async def test_queue_is_bounded(setup: tuple[Playback, FakeSink, Pacer]) -> None:
    pb, _, _ = setup
    utts = [pb.enqueue(f"u{i}", ScriptedAudio()) for i in range(8)]
    with pytest.raises(QueueFull):
        pb.enqueue("one too many", ScriptedAudio())
    with pytest.raises(asyncio.QueueFull):
        pb.enqueue("one too many", ScriptedAudio())
    pb.barge_in()
    assert [(await result(u)).status for u in utts] == ["cancelled"] + ["skipped"] * 7


async def test_barge_in_cuts_the_playing_utterance_and_skips_the_rest(
    setup: tuple[Playback, FakeSink, Pacer],
) -> None:
    pb, sink, _ = setup
    a1 = ScriptedAudio(frames(10), end=True)
    a2 = ScriptedAudio(frames(3), end=True)
    a3 = ScriptedAudio()
    u1 = pb.enqueue("alpha beta gamma delta", a1)
    u2 = pb.enqueue("second", a2)
    u3 = pb.enqueue("third", a3)
    await settle(lambda: a1.drained and a2.drained and a3.started)
    assert ticks(pb, 5) == 5
    pb.barge_in()
    assert sink.kinds == ["frame"] * 5 + ["clear"]
    # 5 of 10 frames heard: half the text, cut back to a word boundary.
    assert await result(u1) == PlaybackResult("partial", 5, "alpha beta")
    assert await result(u2) == PlaybackResult("skipped", 0, "")
    assert await result(u3) == PlaybackResult("skipped", 0, "")
    assert ticks(pb, 3) == 0
    assert sink.kinds[-1] == "clear"
    await settle(lambda: a3.closed)


async def test_barge_in_before_any_frame_is_cancelled(setup: tuple[Playback, FakeSink, Pacer]) -> None:
    pb, sink, _ = setup
    audio = ScriptedAudio()
    utt = pb.enqueue("not yet", audio)
    await settle(lambda: audio.started)
    pb.barge_in()
    assert await result(utt) == PlaybackResult("cancelled", 0, "")
    assert sink.kinds == ["clear"]
    await settle(lambda: audio.closed)


async def test_barge_in_with_nothing_playing_sends_nothing(setup: tuple[Playback, FakeSink, Pacer]) -> None:
    pb, sink, _ = setup
    pb.barge_in()
    assert sink.events == []


async def test_marks_echoed_after_a_clear_are_ignored(setup: tuple[Playback, FakeSink, Pacer]) -> None:
    pb, sink, _ = setup
    a1 = ScriptedAudio(frames(2), end=True)
    u1 = pb.enqueue("done speaking", a1)
    await settle(lambda: a1.drained)
    ticks(pb, 2)
    assert sink.marks == ["u-1"]
    pb.barge_in()  # all of u1 was sent; only its echo was outstanding
    assert await result(u1) == PlaybackResult("played", 2, "done speaking")
    a2 = ScriptedAudio(frames(1), end=True)
    u2 = pb.enqueue("next", a2)
    await settle(lambda: a2.drained)
    ticks(pb, 1)
    pb.on_mark_echo("u-1")  # the stale echo, after the clear
    pb.on_mark_echo("bogus")
    await settle(rounds=20)
    assert not u2.result.done()
    pb.on_mark_echo("u-2")
    assert (await result(u2)).status == "played"


async def test_synthesis_failure_before_first_frame_is_failed(
    setup: tuple[Playback, FakeSink, Pacer],
) -> None:
    pb, sink, _ = setup
    a1 = ScriptedAudio(b"\x01" * 100)  # buffered but never sent: dropped on failure
    a1.fail(TtsError("TTS authentication failed", provider="openai", status=401))
    a2 = ScriptedAudio(frames(1), end=True)
    u1 = pb.enqueue("fallback please", a1)
    u2 = pb.enqueue("after", a2)
    await settle(lambda: a2.drained)
    ticks(pb, 3)
    assert await result(u1) == PlaybackResult("failed", 0, "", "TTS authentication failed")
    assert sink.kinds == ["frame", "mark"]
    assert sink.marks == [u2.mark]


async def test_synthesis_failure_after_frames_is_partial(setup: tuple[Playback, FakeSink, Pacer]) -> None:
    pb, sink, _ = setup
    audio = ScriptedAudio(frames(2))
    utt = pb.enqueue("one two three four five six seven eight nine ten eleven twelve", audio)
    await settle(lambda: audio.drained)
    ticks(pb, 2)
    audio.fail(ConnectionResetError("peer reset, token=secret"))
    await settle(lambda: audio.drained)
    ticks(pb, 2)
    assert sink.kinds == ["frame", "frame", "mark"]
    pb.on_mark_echo(utt.mark)
    res = await result(utt)
    assert res.status == "partial"
    assert res.frames_sent == 2
    assert "secret" not in res.error
    assert "ConnectionResetError" in res.error
    assert utt.text.startswith(res.played_text)
    assert len(res.played_text) < len(utt.text)


async def test_mark_timeout_completes_the_utterance() -> None:
    pacer = Pacer()
    sink = FakeSink()
    pb = Playback(sink, pacer, mark_grace_s=0.01)
    try:
        audio = ScriptedAudio(frames(1), end=True)
        utt = pb.enqueue("no echo", audio)
        await settle(lambda: audio.drained)
        ticks(pb, 1)
        assert await result(utt) == PlaybackResult("played", 1, "no echo")
        assert pb.mark_timeouts == 1
    finally:
        await pb.close()


async def test_close_resolves_everything_and_closes_iterators() -> None:
    pacer = Pacer()
    sink = FakeSink()
    pb = Playback(sink, pacer)
    a1 = ScriptedAudio(frames(4))
    a2 = ScriptedAudio(frames(1), end=True)
    u1 = pb.enqueue("one two three four", a1)
    u2 = pb.enqueue("two", a2)
    await settle(lambda: a1.drained)
    ticks(pb, 2)
    await pb.close()
    assert (await result(u1)).status == "partial"
    assert await result(u2) == PlaybackResult("skipped", 0, "")
    assert a1.closed
    assert a2.closed
    assert "clear" not in sink.kinds
    assert pacer.channels == 0
    with pytest.raises(RuntimeError):
        pb.enqueue("late", ScriptedAudio())


async def test_barge_in_from_inside_send_frame_is_safe(setup: tuple[Playback, FakeSink, Pacer]) -> None:
    pb, sink, _ = setup
    audio = ScriptedAudio(frames(3), end=True)
    utt = pb.enqueue("one two three", audio)
    await settle(lambda: audio.drained)
    sink.on_frame = lambda n: pb.barge_in() if n == 3 else None
    assert ticks(pb, 4) == 1 + 1 + 1
    assert (await result(utt)).status in {"partial", "played"}
    assert sink.kinds == ["frame", "frame", "frame", "clear"]


def test_cut_at_word() -> None:
    assert _cut_at_word("alpha beta gamma", 8) == "alpha"
    assert _cut_at_word("alpha beta gamma", 11) == "alpha beta"
    assert _cut_at_word("alpha beta gamma", 2) == ""
    assert _cut_at_word("alpha beta gamma", 99) == "alpha beta gamma"


async def test_two_calls_on_one_running_pacer() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.start()
    sinks = [FakeSink(), FakeSink()]
    pbs = [Playback(s, pacer) for s in sinks]
    try:
        utts = []
        for i, pb in enumerate(pbs):
            utts.append(pb.enqueue("hello", ScriptedAudio(frames(5, i + 1), end=True)))
            utts.append(pb.enqueue("again", ScriptedAudio(frames(3, i + 3), end=True)))
        await settle(lambda: all(len(s.marks) == 2 for s in sinks), rounds=500)
        for i, s in enumerate(sinks):
            assert s.kinds == ["frame"] * 5 + ["mark"] + ["frame"] * 3 + ["mark"]
            assert [f[0] for f in s.frames] == [i + 1] * 5 + [i + 3] * 3
        assert pacer.frames_sent == 16
        assert pacer.ticks <= 9  # both calls share each tick
        for pb, s in zip(pbs, sinks, strict=True):
            for name in s.marks:
                pb.on_mark_echo(name)
        assert [(await result(u)).status for u in utts] == ["played"] * 4
    finally:
        for pb in pbs:
            await pb.close()
        await pacer.aclose()


class ReportingAudio(ScriptedAudio):
    """An engine's iterator that knows when its upstream's first byte came (like ``Synthesis``)."""

    first_byte_at: float | None = None


async def test_result_times_first_byte_then_first_frame(setup: tuple[Playback, FakeSink, Pacer]) -> None:
    pb, _, _ = setup
    loop = asyncio.get_running_loop()
    audio = ScriptedAudio()
    queued = loop.time()
    utt = pb.enqueue("hello", audio)
    audio.feed(frames(1, 1)[:100])  # less than a frame: audio arrived, nothing to send yet
    await settle(lambda: audio.drained and audio.started)
    assert ticks(pb, 1) == 0
    audio.feed(frames(1, 1))
    audio.end()
    await settle(lambda: audio.drained)
    assert ticks(pb, 3) == 2
    pb.on_mark_echo(utt.mark)
    res = await result(utt)
    assert res.status == "played"
    assert queued <= res.first_byte_at <= res.first_sent_at <= loop.time()


async def test_result_prefers_the_engines_own_first_byte_time(
    setup: tuple[Playback, FakeSink, Pacer],
) -> None:
    pb, _, _ = setup
    audio = ReportingAudio(frames(2), end=True)
    # The HTTP response's first byte, well before the engine yielded any audio.
    reported = audio.first_byte_at = asyncio.get_running_loop().time() - 1.0
    utt = pb.enqueue("hello", audio)
    await settle(lambda: audio.drained)
    assert ticks(pb, 3) == 2
    pb.on_mark_echo(utt.mark)
    assert (await result(utt)).first_byte_at == reported


async def test_audio_that_never_came_has_no_first_byte(setup: tuple[Playback, FakeSink, Pacer]) -> None:
    pb, _, _ = setup
    audio = ScriptedAudio()
    audio.fail(TtsError("TTS service unreachable", provider="openai"))
    utt = pb.enqueue("hello", audio)
    await settle(lambda: audio.drained)
    ticks(pb, 1)
    res = await result(utt)
    assert res.status == "failed" and res.first_byte_at == 0.0 and res.first_sent_at == 0.0
