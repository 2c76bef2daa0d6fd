"""Auto-responses: the caller's turn answered by an OpenAI-compatible chat model.

The call manager hands every final caller transcript that no ``Continue`` is waiting for (on an
inbound or conversation call) to ``manager.on_caller_turn``; ``install_responder`` sets it to
``AutoResponder.on_turn``. One ``TurnGate`` per call keeps a superseded turn (the caller spoke
again before the reply was ready) silent and never speaks the same text twice in a turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from providers.base import EndReason

from ..changes import Changes
from ..domain import CallRecord, Speaker, TurnLatency
from ..errors import CallError
from .responder import Reply, Responder, ResponderError, TurnGate, parse_response_model

if TYPE_CHECKING:
    from ..config import Config
    from ..manager import CallManager

log = logging.getLogger("voicecall.voice.autorespond")

# Gates of ended calls are dropped after their last turn; this bounds the rest (calls that end
# without another turn) by pruning ended calls once this many gates exist.
_PRUNE_AT = 256


class ReplySource(Protocol):
    async def reply(
        self, *, transcript: list[tuple[str, str]], caller_number: str, call_id: str
    ) -> Reply: ...
    async def aclose(self) -> None: ...


class FirstAudioProbe(Protocol):
    """Optional on ``manager.media``: when (loop clock) the last utterance's first frame went out."""

    def first_audio_at(self, call_id: str) -> float | None: ...


class SpeechEnd(Protocol):
    text: str
    ended_at: float
    final_at: float


class TurnTimingProbe(FirstAudioProbe, Protocol):
    """Optional on ``manager.media`` or its ``voice``: the rest of a streamed turn's loop times."""

    def tts_first_byte_at(self, call_id: str) -> float | None: ...
    def caller_speech_end(self, call_id: str) -> SpeechEnd | None: ...


def record_turn_latency(
    manager: CallManager, rec: CallRecord, total_ms: float, stages: dict[str, float]
) -> None:
    """Store one turn's latency on the call (durably, like every other change to the record).

    Meant to become ``CallManager.record_latency``; it only uses what the manager's own turns use.
    """
    if rec.terminal:
        return  # an ended call's record is final
    rec.turn_latencies.append(
        TurnLatency(turn=len(rec.turn_latencies) + 1, total_ms=total_ms, listen_wait_ms=0.0, stages=stages)
    )
    Changes(rec).commit(manager.store, manager.bus)


def _history(rec: CallRecord, text: str) -> list[tuple[str, str]]:
    history = [
        ("bot" if e.speaker is Speaker.BOT else "caller", e.text) for e in rec.transcript if e.is_final
    ]
    if not history or history[-1] != ("caller", text):
        history.append(("caller", text))  # the manager records it first; never ask without it
    return history


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 1)


class AutoResponder:
    def __init__(self, manager: CallManager, responder: ReplySource) -> None:
        self.manager = manager
        self.responder = responder
        self._gates: dict[str, TurnGate] = {}
        self._running: set[asyncio.Task[Any]] = set()
        self._closed = False

    def gate(self, call_id: str) -> TurnGate:
        gate = self._gates.get(call_id)
        if gate is None:
            if len(self._gates) >= _PRUNE_AT:
                self._prune()
            gate = self._gates[call_id] = TurnGate()
        return gate

    def _prune(self) -> None:
        for call_id in list(self._gates):
            rec = self.manager.find(call_id)
            if rec is None or rec.terminal:
                del self._gates[call_id]

    async def on_turn(self, rec: CallRecord, text: str) -> None:
        """Answer one final caller transcript (the manager runs this as a task per turn)."""
        if self._closed or rec.terminal:
            return
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self._turn(rec, text)
        finally:
            if task is not None:
                self._running.discard(task)
            if rec.terminal:
                self._gates.pop(rec.call_id, None)

    async def _turn(self, rec: CallRecord, text: str) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        call_id = rec.call_id
        said = self._speech_end(call_id, text, heard)
        gate = self.gate(call_id)
        gen = gate.begin()
        try:
            reply = await self.responder.reply(
                transcript=_history(rec, text), caller_number=rec.from_number, call_id=call_id
            )
        except ResponderError as err:
            log.warning("call %s: no auto-response: %s", call_id, err)
            return
        replied = loop.time()
        if not gate.is_current(gen) or rec.terminal:
            log.info("call %s: reply to a superseded turn dropped", call_id)
            return
        spoke = False
        if gate.should_speak(gen, reply.text):
            try:
                await self.manager.speak(call_id, reply.text)
            except CallError as err:
                # Usually the call ended while the model was thinking; nothing to answer any more.
                log.info("call %s: reply not spoken: %s", call_id, err.message)
                return
            spoke = True
        if spoke:
            self._record_latency(rec, said, heard, replied, loop.time())
        if reply.end_call and gate.is_current(gen) and not rec.terminal:
            try:
                await self.manager.end(call_id, EndReason.HANGUP_BOT)
            except CallError as err:
                log.info("call %s: ending after the reply failed: %s", call_id, err.message)

    def _probe(self, name: str) -> Callable[[str], object] | None:
        # Duck-typed: the media bridge, or the stream voice behind it, may offer each timing.
        media = self.manager.media
        for owner in (media, getattr(media, "voice", None)):
            probe = getattr(owner, name, None)
            if callable(probe):
                return cast("Callable[[str], object]", probe)
        return None

    def _speech_end(self, call_id: str, text: str, heard: float) -> tuple[float, float] | None:
        """(speech ended, final transcript arrived) for this turn's utterance, when the stream knows."""
        probe = self._probe("caller_speech_end")
        end = probe(call_id) if probe is not None else None
        if end is None:
            return None
        ended, final = getattr(end, "ended_at", None), getattr(end, "final_at", None)
        if getattr(end, "text", None) != text or not isinstance(ended, float) or not isinstance(final, float):
            return None  # another utterance's timing (say, one a Continue took)
        return (ended, final) if ended <= final <= heard else None

    def _at(self, name: str, call_id: str, earliest: float, latest: float) -> float | None:
        probe = self._probe(name)
        at = probe(call_id) if probe is not None else None
        # Outside the turn means it timed another utterance (the reply fell back to the provider).
        return at if isinstance(at, float) and earliest <= at <= latest else None

    def _record_latency(
        self, rec: CallRecord, said: tuple[float, float] | None, heard: float, replied: float, spoken: float
    ) -> None:
        # Every stage counts from the end of the caller's speech; without a stream it is unknown and
        # the turn's start stands in for it.
        origin = said[0] if said is not None else heard
        stages: dict[str, float] = {}
        if said is not None:
            stages["stt_final"] = _ms(origin, said[1])
        stages["model"] = _ms(origin, replied)
        first_byte = self._at("tts_first_byte_at", rec.call_id, replied, spoken)
        first = self._at("first_audio_at", rec.call_id, replied, spoken)
        if first_byte is not None and first is not None and first_byte <= first:
            stages["tts_first_byte"] = _ms(origin, first_byte)
        if first is not None:
            stages["first_audio"] = _ms(origin, first)
        stages["spoken"] = _ms(origin, spoken)
        total = stages.get("first_audio", stages["spoken"])
        record_turn_latency(self.manager, rec, total, stages)

    async def aclose(self) -> None:
        self._closed = True
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await self.responder.aclose()


def build_responder(config: Config) -> Responder | None:
    """The chat-model client from config, or None (logged once) when none is usable."""
    try:
        provider, model = parse_response_model(config.response_model)
    except ValueError as err:
        log.warning("auto-responses disabled: %s", err)
        return None
    base_url = config.openai.base_url
    if provider != "openai" and base_url is None:
        log.warning(
            "auto-responses disabled: responseModel provider %r needs openai.baseUrl pointing at an "
            "OpenAI-compatible endpoint that serves it",
            provider,
        )
        return None
    try:
        return Responder(
            api_key=config.openai.api_key,
            base_url=base_url,
            model=model,
            system_prompt=config.response_system_prompt,
            timeout_s=config.response_timeout_ms / 1000,
        )
    except ResponderError as err:
        log.info("auto-responses disabled: %s", err)
        return None


def install_responder(manager: CallManager, config: Config) -> Callable[[], Awaitable[None]] | None:
    """Set ``manager.on_caller_turn`` when a response model is usable; return its closer."""
    responder = build_responder(config)
    if responder is None:
        return None
    auto = AutoResponder(manager, responder)
    manager.on_caller_turn = auto.on_turn
    return auto.aclose
