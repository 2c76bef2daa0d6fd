"""Streaming speech-to-text for one call over OpenAI Realtime transcription.

The installed SDK's default (GA) realtime client is used: the socket opens at
``<websocket base>/realtime?intent=transcription`` and the session is configured with a
``session.update`` whose session has ``"type": "transcription"`` (the beta
``transcription_session.update`` belongs to the retained ``client.beta.realtime`` API and is
not used). The SDK's own reconnect support stays off: reconnects, backoff and buffering live
here so a failing upstream costs one call a bounded amount of memory and never stalls the
media handler.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import re
from collections.abc import Callable, Sequence
from typing import cast

from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemInputAudioTranscriptionDeltaEvent,
    ConversationItemInputAudioTranscriptionFailedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RealtimeErrorEvent,
    RealtimeServerEvent,
    SessionUpdatedEvent,
)
from openai.types.realtime.realtime_transcription_session_create_request_param import (
    RealtimeTranscriptionSessionCreateRequestParam,
)
from openai.types.websocket_connection_options import WebSocketConnectionOptions
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus

log = logging.getLogger(__name__)
# websockets dumps handshake headers (the Bearer key) at DEBUG: give it a logger that never
# emits below INFO, whatever the root level is.
_ws_log = logging.getLogger(f"{__name__}.websocket")
_ws_log.setLevel(logging.INFO)
# The SDK forwards these to websockets.connect; its TypedDict does not declare `logger`. No
# permessage-deflate: base64 audio barely compresses, and per connection the zlib state costs
# ~300 KB of memory and CPU on every append.
_WS_OPTIONS = cast(WebSocketConnectionOptions, {"logger": _ws_log, "compression": None})

_SESSION_UPDATE_ID = "voicecall-session-update"
# A send that cannot complete in this time means the socket is stuck: treat it as a drop.
_SEND_TIMEOUT_S = 5.0
_CLOSE_TIMEOUT_S = 2.0
# Cap one append after a reconnect flush so no single frame gets large (2 s of 8 kHz μ-law).
_MAX_APPEND_BYTES = 16000
# Caller audio arrives every 20 ms; appending it in ~60 ms batches sends a third of the messages
# for at most 40 ms more recognition delay (server VAD waits silenceDurationMs anyway).
_BATCH_BYTES = 480
_COALESCE_S = 0.04
_APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'
_APPEND_SUFFIX = '"}'
# Retrying cannot fix these: the key, the account or our session configuration is wrong.
_FATAL_ERROR_TYPES = frozenset({"authentication_error", "permission_error", "invalid_api_key"})
_FATAL_ERROR_CODES = frozenset(
    {"invalid_api_key", "insufficient_quota", "model_not_found", "unsupported_model", "invalid_model"}
)
_FATAL_HTTP_STATUS = frozenset({400, 401, 403, 404})
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-*]{6,}")


class _FatalError(Exception):
    """The upstream refused us in a way reconnecting cannot fix."""


def build_transcription_session(
    *,
    model: str,
    language: str | None,
    vad_threshold: float,
    prefix_padding_ms: int,
    silence_duration_ms: int,
) -> RealtimeTranscriptionSessionCreateRequestParam:
    """The ``session`` object of the ``session.update`` that configures transcription."""
    session: RealtimeTranscriptionSessionCreateRequestParam = {
        "type": "transcription",
        "audio": {
            "input": {
                # Telephony audio is 8 kHz G.711 μ-law: forwarded untouched, no transcoding.
                "format": {"type": "audio/pcmu"},
                "transcription": {"model": model, **({"language": language} if language else {})},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": vad_threshold,
                    "prefix_padding_ms": prefix_padding_ms,
                    "silence_duration_ms": silence_duration_ms,
                },
            }
        },
    }
    # whisper models reject the logprobs include; other transcribe models return them.
    if "whisper" not in model:
        session["include"] = ["item.input_audio_transcription.logprobs"]
    return session


def confidence_from_logprobs(logprobs: Sequence[float] | None) -> float | None:
    """Mean per-token probability (geometric), or None without logprobs."""
    if not logprobs:
        return None
    return min(1.0, max(0.0, math.exp(sum(logprobs) / len(logprobs))))


def realtime_client(api_key: str, base_url: str | None) -> AsyncOpenAI:
    """The SDK client for realtime sessions. ``base_url`` is the HTTP API base
    (https://api.openai.com/v1), from which the SDK derives ws(s); a ws(s):// value is taken as
    the websocket base as is."""
    if base_url is not None and base_url.startswith(("ws://", "wss://")):
        return AsyncOpenAI(api_key=api_key, websocket_base_url=base_url)
    return AsyncOpenAI(api_key=api_key, base_url=base_url)


class RealtimeTranscriber:
    """One Realtime transcription session per call, reconnecting with backoff."""

    # Reconnect attempts so far (public, read by the metrics at scrape time).
    reconnects: int = 0

    def __init__(
        self,
        *,
        api_key: str,
        model: str = "gpt-4o-transcribe",
        base_url: str | None = None,
        vad_threshold: float = 0.5,
        silence_duration_ms: int = 800,
        prefix_padding_ms: int = 300,
        language: str | None = None,
        on_partial: Callable[[str], None],
        on_final: Callable[[str, float | None], None],
        on_speech_started: Callable[[], None],
        on_error: Callable[[str], None],
        backoff: Sequence[float] = (1, 2, 4, 8, 16),
        connect_timeout_s: float = 10,
        max_buffer_bytes: int = 8000 * 10,
        on_ready: Callable[[], None] | None = None,
        on_speech_stopped: Callable[[float], None] | None = None,
        client: AsyncOpenAI | None = None,
    ) -> None:
        # One SDK client costs ~860 KB and ~34 ms to build: a process shares one across calls
        # (``client``, owned and closed by the caller) rather than building one per call.
        self._owns_client = client is None
        self._client = client or realtime_client(api_key, base_url)
        self._secret = api_key
        self._session = build_transcription_session(
            model=model,
            language=language,
            vad_threshold=vad_threshold,
            prefix_padding_ms=prefix_padding_ms,
            silence_duration_ms=silence_duration_ms,
        )
        self._on_partial = on_partial
        self._on_final = on_final
        self._on_speech_started = on_speech_started
        self._on_error = on_error
        self._on_ready = on_ready
        self._on_speech_stopped = on_speech_stopped
        self._backoff = tuple(backoff)
        self._connect_timeout_s = connect_timeout_s
        self._max_buffer_bytes = max_buffer_bytes
        self._buffer = bytearray()
        self._audio_waiting = asyncio.Event()
        self._first_outcome = asyncio.Event()
        self._partials: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = False
        self._configured = False
        self._closing = False
        self._stopped = False
        self._error_reported = False

    def __repr__(self) -> str:
        return f"<RealtimeTranscriber ready={self._ready} stopped={self._stopped}>"

    @property
    def ready(self) -> bool:
        """True while a configured transcription session is connected."""
        return self._ready

    async def start(self) -> None:
        """Start the session task; return once the first connection is ready or has failed.

        Connection problems never raise here: they are retried in the background and, when the
        attempts are exhausted, reported once through ``on_error``.
        """
        if self._task is not None:
            raise RuntimeError("transcriber already started")
        self._task = asyncio.create_task(self._run(), name="realtime-transcriber")
        await self._first_outcome.wait()

    def feed(self, ulaw: bytes) -> None:
        """Queue 8 kHz μ-law audio; never blocks. Beyond the bound the oldest audio is dropped."""
        if self._stopped or not ulaw:
            return
        buf = self._buffer
        buf += ulaw
        excess = len(buf) - self._max_buffer_bytes
        if excess > 0:
            del buf[:excess]
        self._audio_waiting.set()

    async def aclose(self) -> None:
        """Stop reconnecting, close the socket and the SDK client."""
        self._closing = True
        self._stopped = True
        self._first_outcome.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._buffer.clear()
        if self._owns_client:
            await self._client.close()

    async def _run(self) -> None:
        attempt = 0
        reason = "not connected"
        try:
            while not self._closing:
                self._configured = False
                try:
                    await self._session_once()
                    reason = "connection closed by the server"
                except _FatalError as exc:
                    self._give_up(str(exc))
                    return
                except Exception as exc:
                    reason = self._describe(exc)
                    log.warning("speech recognition connection lost: %s", reason)
                finally:
                    self._ready = False
                    self._partials.clear()
                if self._configured:
                    attempt = 0
                if self._closing:
                    return
                self._first_outcome.set()
                if attempt >= len(self._backoff):
                    self._give_up(reason)
                    return
                delay = self._backoff[attempt]
                attempt += 1
                self.reconnects += 1
                log.info(
                    "speech recognition reconnecting in %.2fs (attempt %d/%d)",
                    delay,
                    attempt,
                    len(self._backoff),
                )
                await asyncio.sleep(delay)
        finally:
            self._first_outcome.set()

    async def _session_once(self) -> None:
        manager = self._client.realtime.connect(
            extra_query={"intent": "transcription"}, websocket_connection_options=_WS_OPTIONS
        )
        try:
            conn = await asyncio.wait_for(manager.enter(), self._connect_timeout_s)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in _FATAL_HTTP_STATUS:
                raise _FatalError(f"upstream rejected the connection (HTTP {status})") from None
            raise
        try:
            await asyncio.wait_for(
                conn.session.update(session=self._session, event_id=_SESSION_UPDATE_ID), _SEND_TIMEOUT_S
            )
            receiver = asyncio.create_task(self._receive(conn), name="realtime-transcriber-recv")
            sender = asyncio.create_task(self._pump_audio(conn), name="realtime-transcriber-send")
            try:
                done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (receiver, sender):
                    task.cancel()
                await asyncio.gather(receiver, sender, return_exceptions=True)
            for task in done:
                task.result()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), _CLOSE_TIMEOUT_S)

    async def _receive(self, conn: AsyncRealtimeConnection) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout_s
        while True:
            try:
                if self._configured:
                    event = await conn.recv()
                else:
                    # An unconfigured session is useless: bound the wait for session.updated.
                    event = await asyncio.wait_for(conn.recv(), max(0.0, deadline - loop.time()))
            except ConnectionClosedOK:
                return
            self._handle(event)

    async def _pump_audio(self, conn: AsyncRealtimeConnection) -> None:
        while True:
            if not self._buffer:
                self._audio_waiting.clear()
                await self._audio_waiting.wait()
                continue
            if len(self._buffer) < _BATCH_BYTES:
                await asyncio.sleep(_COALESCE_S)
            chunk = bytes(self._buffer[:_MAX_APPEND_BYTES])
            del self._buffer[: len(chunk)]
            # An input_audio_buffer.append event, built by hand: send_raw skips the SDK's per-event
            # transform and no dict is JSON-encoded on this per-call, many-times-a-second path.
            message = _APPEND_PREFIX + base64.b64encode(chunk).decode("ascii") + _APPEND_SUFFIX
            try:
                async with asyncio.timeout(_SEND_TIMEOUT_S):
                    await conn.send_raw(message)
            except BaseException:
                # Not known to be delivered: keep it for the next connection.
                self._buffer[:0] = chunk
                excess = len(self._buffer) - self._max_buffer_bytes
                if excess > 0:
                    del self._buffer[:excess]
                raise

    def _handle(self, event: RealtimeServerEvent) -> None:
        # Unknown event types still parse into some model, so match on the type string first.
        kind = event.type
        if kind == "session.updated" and isinstance(event, SessionUpdatedEvent):
            if not self._configured:
                self._configured = True
                self._ready = True
                log.info("speech recognition session ready")
                self._first_outcome.set()
                if self._on_ready is not None:
                    self._call(self._on_ready)
        elif kind == "input_audio_buffer.speech_started" and isinstance(
            event, InputAudioBufferSpeechStartedEvent
        ):
            self._partials.pop(event.item_id, None)
            self._call(self._on_speech_started)
        elif kind == "input_audio_buffer.speech_stopped" and isinstance(
            event, InputAudioBufferSpeechStoppedEvent
        ):
            if self._on_speech_stopped is not None:
                # Stamped on arrival (loop clock): server VAD sends it after silence_duration_ms.
                self._call(self._on_speech_stopped, asyncio.get_running_loop().time())
        elif kind == "conversation.item.input_audio_transcription.delta" and isinstance(
            event, ConversationItemInputAudioTranscriptionDeltaEvent
        ):
            if event.delta:
                text = self._partials.get(event.item_id, "") + event.delta
                self._partials[event.item_id] = text
                self._call(self._on_partial, text)
        elif kind == "conversation.item.input_audio_transcription.completed" and isinstance(
            event, ConversationItemInputAudioTranscriptionCompletedEvent
        ):
            self._partials.pop(event.item_id, None)
            transcript = " ".join(event.transcript.split())
            if transcript:
                probs = [p.logprob for p in event.logprobs] if event.logprobs else None
                self._call(self._on_final, transcript, confidence_from_logprobs(probs))
        elif kind == "conversation.item.input_audio_transcription.failed" and isinstance(
            event, ConversationItemInputAudioTranscriptionFailedEvent
        ):
            self._partials.pop(event.item_id, None)
            log.warning("transcription of one utterance failed: %s", self._redact(event.error.message or ""))
        elif kind == "error" and isinstance(event, RealtimeErrorEvent):
            self._handle_error(event)

    def _handle_error(self, event: RealtimeErrorEvent) -> None:
        err = event.error
        message = self._redact(err.message)
        fatal = (
            err.type in _FATAL_ERROR_TYPES
            or (err.code or "") in _FATAL_ERROR_CODES
            or err.event_id == _SESSION_UPDATE_ID
        )
        log.warning(
            "speech recognition error (type=%s code=%s fatal=%s): %s", err.type, err.code, fatal, message
        )
        if fatal:
            raise _FatalError(message or err.type)

    def _give_up(self, reason: str) -> None:
        self._stopped = True
        self._buffer.clear()
        if self._error_reported:
            return
        self._error_reported = True
        log.error("speech recognition unavailable: %s", reason)
        self._call(self._on_error, f"speech recognition unavailable: {reason}")

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return "timed out"
        if isinstance(exc, InvalidStatus):
            return f"HTTP {exc.response.status_code}"
        if isinstance(exc, ConnectionClosed):
            return "connection dropped"
        if isinstance(exc, OSError):
            return f"cannot connect ({exc.strerror or type(exc).__name__})"
        return self._redact(str(exc)) or type(exc).__name__

    def _redact(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return _KEY_PATTERN.sub("***", text)

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        # A failing consumer must not tear down the session for the rest of the call.
        try:
            callback(*args)
        except Exception:
            log.exception("speech recognition callback failed")
