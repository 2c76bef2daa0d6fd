"""The streamed voice of a call: TTS into a per-call playback queue on the shared pacer, and the
caller's audio into realtime speech recognition, whose speech-start interrupts playback (barge-in).

It also keeps, per call, the loop times turn latency is measured with: when the caller's last
utterance ended and its final transcript arrived (``caller_speech_end``), and when the last
utterance's first TTS byte arrived and first frame was sent (``tts_first_byte_at``,
``first_audio_at``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from providers.base import EventType, ProviderEvent

from ..manager import CallManager
from ..voice.pacer import Pacer
from ..voice.playback import Playback, QueueFull
from ..voice.stt import RealtimeTranscriber, realtime_client
from ..voice.tts import TtsEngine, build_tts_engine
from .server import StreamSession

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("voicecall.voice")


def tts_engine_from_config(config: Config) -> TtsEngine | None:
    tts = config.tts
    provider = tts.provider or ("openai" if (tts.openai.api_key or config.openai.api_key) else None)
    if provider is None:
        return None
    try:
        return build_tts_engine(
            provider,
            openai_api_key=tts.openai.api_key or config.openai.api_key,
            openai_base_url=tts.openai.base_url or config.openai.base_url,
            openai_model=tts.openai.model,
            openai_voice=tts.openai.voice,
            elevenlabs_api_key=tts.elevenlabs.api_key,
            elevenlabs_voice_id=tts.elevenlabs.voice_id,
            elevenlabs_base_url=tts.elevenlabs.base_url,
            elevenlabs_model_id=tts.elevenlabs.model_id,
            elevenlabs_voice_settings=dataclasses.asdict(tts.elevenlabs.voice_settings),
            elevenlabs_language_code=tts.elevenlabs.language_code,
            elevenlabs_seed=tts.elevenlabs.seed,
            elevenlabs_apply_text_normalization=tts.elevenlabs.apply_text_normalization,
            timeout_s=tts.timeout_ms / 1000,
        )
    except ValueError as err:
        log.warning("telephony TTS disabled: %s; calls use the provider's own voice", err)
        return None


@dataclass(frozen=True, slots=True)
class CallerSpeechEnd:
    """When (loop clock) the caller's last final utterance ended and its transcript arrived."""

    text: str
    ended_at: float
    """Speech recognition's speech-stopped for it, or ``final_at`` when none was reported."""
    final_at: float


class StreamVoice:
    """Per-session playback and transcription, created when a stream starts."""

    def __init__(self, manager: CallManager, config: Config, tts: TtsEngine | None, pacer: Pacer) -> None:
        self.manager = manager
        self.config = config
        self.tts = tts
        self.pacer = pacer
        self._playbacks: dict[str, Playback] = {}
        self._stt: dict[str, RealtimeTranscriber] = {}
        self._stt_client: Any = None
        """One realtime SDK client for every call's transcriber (built on first use)."""
        self.first_audio: dict[str, float] = {}
        """Per call: loop time of the first frame of the last utterance that reached the caller."""
        self.tts_first_byte: dict[str, float] = {}
        """Per call: loop time the last streamed utterance's first synthesised audio arrived."""
        self.caller_speech: dict[str, CallerSpeechEnd] = {}
        self._speech_stopped: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stt_reconnects_retired = 0
        """Reconnect attempts of transcribers whose calls have ended (the metric adds live ones)."""

    def first_audio_at(self, call_id: str) -> float | None:
        return self.first_audio.get(call_id)

    def tts_first_byte_at(self, call_id: str) -> float | None:
        return self.tts_first_byte.get(call_id)

    def caller_speech_end(self, call_id: str) -> CallerSpeechEnd | None:
        return self.caller_speech.get(call_id)

    def _final_heard(self, call_id: str, text: str) -> None:
        now = asyncio.get_running_loop().time()
        # The latest speech-stopped belongs to this final (or, when the caller spoke again quickly,
        # to a later utterance, which only shortens stt_final); it is used up either way.
        stopped = self._speech_stopped.pop(call_id, None)
        ended = stopped if stopped is not None and stopped <= now else now
        self.caller_speech[call_id] = CallerSpeechEnd(text, ended, now)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def attach(self, session: StreamSession) -> None:
        playback = Playback(session, self.pacer)
        self._playbacks[session.call_id] = playback
        session.on_mark = playback.on_mark_echo
        st = self.config.streaming
        if st.openai_api_key:
            stt = self._transcriber(session, playback, st.openai_api_key)
            self._stt[session.call_id] = stt
            session.on_media = stt.feed
            self._spawn(stt.start())

    def _transcriber(self, session: StreamSession, playback: Playback, key: str) -> RealtimeTranscriber:
        st = self.config.streaming
        call_id, pid = session.call_id, session.provider_call_id

        def speech(text: str, final: bool, confidence: float | None = None) -> None:
            event = ProviderEvent(
                EventType.SPEECH, pid, call_id, text=text, is_final=final, confidence=confidence
            )
            self._spawn(self.manager.handle_events([event]))

        def final(text: str, confidence: float | None) -> None:
            self._final_heard(call_id, text)
            speech(text, True, confidence)

        def error(message: str) -> None:
            self._spawn(
                self.manager.handle_events(
                    [ProviderEvent(EventType.ERROR, pid, call_id, error=message, retryable=True)]
                )
            )

        if self._stt_client is None:
            self._stt_client = realtime_client(key, st.openai_base_url or self.config.openai.base_url)
        return RealtimeTranscriber(
            client=self._stt_client,
            api_key=key,
            model=st.stt_model,
            base_url=st.openai_base_url or self.config.openai.base_url,
            vad_threshold=st.vad_threshold,
            silence_duration_ms=st.silence_duration_ms,
            on_partial=lambda text: speech(text, False),
            on_final=final,
            on_speech_started=playback.barge_in,
            on_speech_stopped=lambda at: self._speech_stopped.__setitem__(call_id, at),
            on_error=error,
        )

    async def detach(self, session: StreamSession) -> None:
        playback = self._playbacks.pop(session.call_id, None)
        stt = self._stt.pop(session.call_id, None)
        for timings in (self.first_audio, self.tts_first_byte, self.caller_speech, self._speech_stopped):
            timings.pop(session.call_id, None)
        if playback is not None:
            await playback.close()
        if stt is not None:
            await self._retire(stt)

    async def _retire(self, stt: RealtimeTranscriber) -> None:
        await stt.aclose()
        self.stt_reconnects_retired += stt.reconnects

    async def say(self, session: StreamSession, text: str) -> str | None:
        """What the caller heard; None when the stream cannot play it (use the provider's voice)."""
        playback = self._playbacks.get(session.call_id)
        if self.tts is None or playback is None:
            return None
        call_id = session.call_id
        # A reply the stream cannot play must not be timed by an earlier utterance's audio.
        self.first_audio.pop(call_id, None)
        self.tts_first_byte.pop(call_id, None)
        try:
            result = await playback.enqueue(text, self.tts.synthesize(text))
        except QueueFull:
            return None
        if result.frames_sent:
            self.first_audio[call_id] = result.first_sent_at
            if result.first_byte_at:
                self.tts_first_byte[call_id] = result.first_byte_at
        if result.status == "failed":
            return None
        if result.status in ("cancelled", "skipped"):
            return ""
        return result.played_text if result.status == "partial" else text

    async def aclose(self) -> None:
        for call_id in list(self._playbacks):
            playback = self._playbacks.pop(call_id)
            await playback.close()
        for call_id in list(self._stt):
            await self._retire(self._stt.pop(call_id))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.tts is not None:
            await self.tts.aclose()
        if self._stt_client is not None:
            await self._stt_client.close()
