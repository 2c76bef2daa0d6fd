"""Connects media streams to the call manager: greeting on stream start, speech through the stream.

Without a telephony TTS engine the bridge declines to play (``say`` returns None) and the manager
falls back to the provider's own voice, re-connecting the stream afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..manager import CallManager
from .server import MediaServer, StreamSession
from .voice import StreamVoice

log = logging.getLogger("voicecall.media")

Speaker = Callable[[StreamSession, str], Awaitable[str | None]]


class VoiceBridge:
    def __init__(
        self,
        manager: CallManager,
        media: MediaServer,
        *,
        speaker: Speaker | None = None,
        voice: StreamVoice | None = None,
    ) -> None:
        self.manager = manager
        self.media = media
        self.voice = voice
        self.speaker = speaker or (voice.say if voice is not None else None)
        self._tasks: set[asyncio.Task[Any]] = set()
        media.on_session_start = self._session_started
        media.on_session_end = self._session_ended
        manager.media = self

    def has_stream(self, call_id: str) -> bool:
        return self.media.has_stream(call_id)

    def first_audio_at(self, call_id: str) -> float | None:
        """Loop time the last utterance's first frame was sent (turn latency), if one was."""
        return self.voice.first_audio.get(call_id) if self.voice is not None else None

    async def say(self, call_id: str, text: str) -> str | None:
        session = self.media.sessions.get(call_id)
        if self.speaker is None or session is None or session.closed:
            return None
        return await self.speaker(session, text)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _session_started(self, session: StreamSession) -> None:
        if self.voice is not None:
            self.voice.attach(session)
        self._spawn(self.manager.deliver_initial_message(session.call_id))

    def _session_ended(self, session: StreamSession) -> None:
        if self.voice is not None:
            self._spawn(self.voice.detach(session))

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.voice is not None:
            await self.voice.aclose()
