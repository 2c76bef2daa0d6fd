"""The auto-responder's turn rules against a recording call manager, and its construction."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from providers.base import CallMode, Direction, EndReason
from tests.voice.fakes_chat import FakeChatServer, Scripted
from voicecall_server.config import config_from_mapping
from voicecall_server.domain import CallRecord, CallState, Speaker, TranscriptEntry
from voicecall_server.errors import CallError, Reason
from voicecall_server.manager import CallManager
from voicecall_server.voice.autorespond import AutoResponder, install_responder
from voicecall_server.voice.responder import Reply


def record(call_id: str = "call-1") -> CallRecord:
    return CallRecord(
        call_id=call_id,
        provider="mock",
        direction=Direction.INBOUND,
        state=CallState.LISTENING,
        from_number="+15557654321",
        to_number="+15550001111",
        mode=CallMode.CONVERSATION,
        created_at=datetime.now(UTC),
    )


def caller(rec: CallRecord, text: str) -> None:
    rec.transcript.append(TranscriptEntry(datetime.now(UTC), Speaker.CALLER, text))


class Store:
    def __init__(self) -> None:
        self.commits = 0

    def commit(self, rec: CallRecord, **changes: Any) -> list[object]:
        self.commits += 1
        return []


class Bus:
    def publish(self, events: object) -> None:
        return None


class Media:
    def __init__(self) -> None:
        self.first: float | None = None

    def first_audio_at(self, call_id: str) -> float | None:
        return self.first


class Manager:
    """What the auto-responder uses of the call manager, recorded."""

    def __init__(self, rec: CallRecord) -> None:
        self.rec = rec
        self.spoken: list[str] = []
        self.ended: list[EndReason] = []
        self.speak_error: CallError | None = None
        self.media: Media | None = None
        self.store = Store()
        self.bus = Bus()
        self.on_caller_turn: object = None

    def find(self, call_id: str) -> CallRecord | None:
        return self.rec if call_id == self.rec.call_id else None

    async def speak(self, call_id: str, text: str) -> CallRecord:
        if self.speak_error is not None:
            raise self.speak_error
        if self.media is not None:
            self.media.first = asyncio.get_running_loop().time()
        self.spoken.append(text)
        self.rec.transcript.append(TranscriptEntry(datetime.now(UTC), Speaker.BOT, text))
        return self.rec

    async def end(self, call_id: str, reason: EndReason = EndReason.HANGUP_BOT) -> CallRecord:
        self.ended.append(reason)
        self.rec.state = CallState.HANGUP_BOT
        return self.rec


class Replies:
    """Answers scripted per caller text; an answer waits for its event when one is given."""

    def __init__(self) -> None:
        self.answers: dict[str, Reply] = {}
        self.holds: dict[str, asyncio.Event] = {}
        self.asked: list[list[tuple[str, str]]] = []
        self.closed = False
        self.asking = asyncio.Event()

    async def reply(
        self, *, transcript: Sequence[tuple[str, str]], caller_number: str, call_id: str
    ) -> Reply:
        self.asked.append(list(transcript))
        self.asking.set()
        last = transcript[-1][1]
        if (hold := self.holds.get(last)) is not None:
            await hold.wait()
        return self.answers[last]

    async def aclose(self) -> None:
        self.closed = True


def make(rec: CallRecord | None = None) -> tuple[AutoResponder, Manager, Replies]:
    manager = Manager(rec or record())
    replies = Replies()
    return AutoResponder(cast(CallManager, manager), replies), manager, replies


async def test_answer_is_spoken_with_the_conversation_so_far() -> None:
    auto, manager, replies = make()
    manager.rec.transcript.append(TranscriptEntry(datetime.now(UTC), Speaker.BOT, "Hello"))
    caller(manager.rec, "Opening hours?")
    replies.answers["Opening hours?"] = Reply("Nine to five.", False)
    await auto.on_turn(manager.rec, "Opening hours?")
    assert replies.asked == [[("bot", "Hello"), ("caller", "Opening hours?")]]
    assert manager.spoken == ["Nine to five."]
    assert manager.ended == []
    (latency,) = manager.rec.turn_latencies
    assert latency.turn == 1 and set(latency.stages) == {"model", "spoken"}
    assert manager.store.commits == 1


async def test_a_superseded_turn_is_never_spoken() -> None:
    auto, manager, replies = make()
    replies.answers["first"] = Reply("Answer to first.", True)
    replies.answers["second"] = Reply("Answer to second.", False)
    replies.holds["first"] = asyncio.Event()
    caller(manager.rec, "first")
    first = asyncio.create_task(auto.on_turn(manager.rec, "first"))
    await replies.asking.wait()
    caller(manager.rec, "second")
    await auto.on_turn(manager.rec, "second")
    replies.holds["first"].set()
    await first
    assert manager.spoken == ["Answer to second."]
    assert manager.ended == [], "a stale reply's end-of-call mark is ignored too"


async def test_blank_reply_says_nothing_and_the_same_text_is_spoken_again_next_turn() -> None:
    auto, manager, replies = make()
    replies.answers["hm"] = Reply("", False)
    replies.answers["again"] = Reply("Sorry?", False)
    replies.answers["what"] = Reply("Sorry?", False)
    await auto.on_turn(manager.rec, "hm")
    await auto.on_turn(manager.rec, "again")
    await auto.on_turn(manager.rec, "what")
    assert manager.spoken == ["Sorry?", "Sorry?"]
    assert [t.turn for t in manager.rec.turn_latencies] == [1, 2]


async def test_the_model_ends_the_call_after_speaking() -> None:
    auto, manager, replies = make()
    replies.answers["bye"] = Reply("Goodbye!", True)
    await auto.on_turn(manager.rec, "bye")
    assert manager.spoken == ["Goodbye!"]
    assert manager.ended == [EndReason.HANGUP_BOT]
    assert auto._gates == {}, "an ended call's gate is dropped"


async def test_a_call_that_ended_meanwhile_is_neither_spoken_to_nor_ended() -> None:
    auto, manager, replies = make()
    manager.speak_error = CallError(Reason.CALL_NOT_ACTIVE, "the call ended (completed)")
    replies.answers["bye"] = Reply("Goodbye!", True)
    await auto.on_turn(manager.rec, "bye")
    assert manager.ended == []
    assert manager.rec.turn_latencies == []


async def test_first_audio_from_the_media_bridge_is_the_turn_latency() -> None:
    auto, manager, replies = make()
    manager.media = Media()
    replies.answers["hi"] = Reply("Hello there.", False)
    await auto.on_turn(manager.rec, "hi")
    (latency,) = manager.rec.turn_latencies
    assert set(latency.stages) == {"model", "first_audio", "spoken"}
    assert latency.total_ms == latency.stages["first_audio"]
    assert latency.stages["model"] <= latency.stages["first_audio"] <= latency.stages["spoken"]


@dataclass(frozen=True)
class SpeechEnd:
    text: str
    ended_at: float
    final_at: float


class Voice:
    """The stream voice's timings, as ``StreamVoice`` offers them behind the media bridge."""

    def __init__(self) -> None:
        self.speech: SpeechEnd | None = None
        self.first_byte: float | None = None

    def caller_speech_end(self, call_id: str) -> SpeechEnd | None:
        return self.speech

    def tts_first_byte_at(self, call_id: str) -> float | None:
        return self.first_byte


class StreamMedia(Media):
    """A media bridge whose speak plays on a stream: the first byte comes, then the first frame."""

    def __init__(self) -> None:
        super().__init__()
        self.voice = Voice()


class StreamedManager(Manager):
    stream_plays = True
    """False: the reply fell back to the provider's own voice and the stream played nothing."""

    async def speak(self, call_id: str, text: str) -> CallRecord:
        assert isinstance(self.media, StreamMedia)
        loop = asyncio.get_running_loop()
        if self.stream_plays:
            self.media.voice.first_byte = loop.time()
            await asyncio.sleep(0)
            self.media.first = loop.time()
        await asyncio.sleep(0)
        self.spoken.append(text)
        return self.rec


def streamed(text: str, answer: str) -> tuple[AutoResponder, StreamedManager, Replies]:
    manager = StreamedManager(record())
    manager.media = media = StreamMedia()
    replies = Replies()
    replies.answers[text] = Reply(answer, False)
    caller(manager.rec, text)
    now = asyncio.get_running_loop().time()
    media.voice.speech = SpeechEnd(text, ended_at=now - 0.5, final_at=now - 0.2)
    return AutoResponder(cast(CallManager, manager), replies), manager, replies


STAGES = ["stt_final", "model", "tts_first_byte", "first_audio", "spoken"]


async def test_a_streamed_turn_is_split_into_ordered_stages_from_the_end_of_speech() -> None:
    auto, manager, _ = streamed("Opening hours?", "Nine to five.")
    await auto.on_turn(manager.rec, "Opening hours?")
    assert manager.spoken == ["Nine to five."]
    (latency,) = manager.rec.turn_latencies
    assert list(latency.stages) == STAGES
    values = [latency.stages[s] for s in STAGES]
    assert values == sorted(values)
    assert latency.stages["stt_final"] == 300.0, "speech ended 0.5 s before, its final came 0.2 s before"
    assert latency.stages["model"] >= 500.0, "measured from the end of speech, not from the turn's start"
    assert latency.total_ms == latency.stages["first_audio"]


async def test_without_a_speech_stop_the_turn_counts_from_its_final_transcript() -> None:
    auto, manager, _ = streamed("hi", "Hello.")
    media = manager.media
    assert isinstance(media, StreamMedia) and media.voice.speech is not None
    final = media.voice.speech.final_at
    media.voice.speech = SpeechEnd("hi", ended_at=final, final_at=final)  # what StreamVoice records then
    await auto.on_turn(manager.rec, "hi")
    (latency,) = manager.rec.turn_latencies
    assert latency.stages["stt_final"] == 0.0
    assert list(latency.stages) == STAGES


async def test_speech_timing_of_another_utterance_is_not_used() -> None:
    auto, manager, _ = streamed("first", "Answer.")
    media = manager.media
    assert isinstance(media, StreamMedia) and media.voice.speech is not None
    media.voice.speech = dataclasses.replace(media.voice.speech, text="something a Continue took")
    await auto.on_turn(manager.rec, "first")
    (latency,) = manager.rec.turn_latencies
    assert list(latency.stages) == ["model", "tts_first_byte", "first_audio", "spoken"]


async def test_audio_timings_from_before_the_reply_are_ignored() -> None:
    auto, manager, _ = streamed("hi", "Hello.")
    media = manager.media
    assert isinstance(media, StreamMedia)
    # The stream's timings are an earlier utterance's; this reply is spoken by the provider.
    media.voice.first_byte = media.first = asyncio.get_running_loop().time() - 1.0
    manager.stream_plays = False
    await auto.on_turn(manager.rec, "hi")
    (latency,) = manager.rec.turn_latencies
    assert list(latency.stages) == ["stt_final", "model", "spoken"]
    assert latency.total_ms == latency.stages["spoken"]


async def test_close_cancels_a_running_turn_and_closes_the_client() -> None:
    auto, manager, replies = make()
    replies.answers["slow"] = Reply("Late.", False)
    replies.holds["slow"] = asyncio.Event()
    task = asyncio.create_task(auto.on_turn(manager.rec, "slow"))
    await replies.asking.wait()
    await auto.aclose()
    assert task.cancelled()
    assert replies.closed
    await auto.on_turn(manager.rec, "slow")
    assert manager.spoken == []


def config(**raw: Any) -> Any:
    return config_from_mapping({"provider": "mock", "store": "/tmp/unused-store", **raw}, {})


async def test_install_needs_a_key_or_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    manager = Manager(record())
    assert install_responder(cast(CallManager, manager), config()) is None
    assert manager.on_caller_turn is None
    other = config(responseModel="anthropic/claude-x", openai={"apiKey": "sk-test"})
    assert install_responder(cast(CallManager, manager), other) is None
    assert manager.on_caller_turn is None


async def test_install_from_config_answers_through_the_chat_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    chat = FakeChatServer()
    await chat.start()
    try:
        chat.then(Scripted("Of course. [END_CALL]"))
        manager = Manager(record())
        cfg = config(
            responseModel="local/llama-3",
            responseSystemPrompt="Be brief.",
            responseTimeoutMs=5000,
            openai={"baseUrl": chat.base_url},
        )
        close = install_responder(cast(CallManager, manager), cfg)
        assert close is not None and manager.on_caller_turn is not None
        try:
            await manager.on_caller_turn(manager.rec, "Can you help?")  # type: ignore[operator]
        finally:
            await close()
        (request,) = chat.requests
        assert request["model"] == "llama-3"
        assert request["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Can you help?"},
        ]
        assert manager.spoken == ["Of course."]
        assert manager.ended == [EndReason.HANGUP_BOT]
    finally:
        await chat.close()
