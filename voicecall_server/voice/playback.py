"""The per-call playback queue: utterances in, paced 20 ms μ-law frames and marks out.

Each utterance's audio is read from its async iterator as it is synthesised (one synthesis at a
time per call, in FIFO order, running ahead of playback by at most ``READ_AHEAD_FRAMES``) and its
frames are handed out one per pacer tick. After an utterance's last frame a mark ``u-<n>``
follows; the utterance completes when the provider echoes that mark (``on_mark_echo``), i.e. when
the caller has heard it. If no echo comes, it completes anyway at its expected end: the first
frame's time plus its audio duration, but never sooner than the mark, plus ``mark_grace_s`` (2 s).

Barge-in empties the queue (waiting utterances resolve "skipped"), stops the playing one between
two frames ("cancelled" if none of it was sent, else "partial"), sends ``clear`` and forgets every
outstanding mark, so echoes arriving after the clear are ignored. Utterances whose audio was all
sent and only await their echo resolve "played".

What the caller heard of a partial utterance is approximated: the text is cut in proportion to the
frames sent over the utterance's total frames (when synthesis has not finished, the total is the
larger of the frames synthesised so far and an estimate of ~14 characters per second of speech),
then back to a word boundary. Frames are sent in real time, so the provider holds at most a few
frames more than the caller heard; speech rate is not uniform, so this is an estimate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .audio import FRAME_MS, UlawFramer
from .pacer import Pacer
from .tts import TtsError

log = logging.getLogger("voicecall.voice.playback")

Status = Literal["played", "cancelled", "skipped", "failed", "partial"]
CHARS_PER_SECOND = 14.0


class FrameSink(Protocol):
    """What a media-stream connection offers; every call must return at once."""

    def send_frame(self, frame: bytes) -> None: ...
    def send_mark(self, name: str) -> None: ...
    def send_clear(self) -> None: ...


class QueueFull(asyncio.QueueFull):
    """The call already has ``max_queued`` utterances waiting or playing."""


@dataclass(frozen=True, slots=True)
class PlaybackResult:
    status: Status
    frames_sent: int
    played_text: str
    error: str = ""
    """The synthesis failure (a safe message) for "failed" and failure-cut "partial" results."""
    first_sent_at: float = field(default=0.0, compare=False)
    """Loop time the first frame went to the stream (0.0 when none did)."""
    first_byte_at: float = field(default=0.0, compare=False)
    """Loop time synthesis delivered its first audio (0.0 when it delivered none): the engine's own
    first-byte time when its iterator reports one (``first_byte_at``), else the first chunk's."""


@dataclass(eq=False, slots=True)
class Utterance:
    """One queued text; ``await utterance`` (or ``utterance.result``) gives its PlaybackResult."""

    number: int
    text: str
    audio: AsyncIterator[bytes] = field(repr=False)
    result: asyncio.Future[PlaybackResult] = field(repr=False)
    frames: deque[bytes] = field(default_factory=deque, repr=False)
    sent: int = 0
    synthesised: int = 0
    synth_started: bool = False
    synth_done: bool = False
    error: str = ""
    first_sent_at: float = 0.0
    first_chunk_at: float = 0.0

    def __await__(self) -> Generator[Any, None, PlaybackResult]:
        return asyncio.shield(self.result).__await__()

    @property
    def mark(self) -> str:
        return f"u-{self.number}"

    def resolve(self, status: Status, played_text: str | None = None) -> None:
        if not self.result.done():
            text = self.text if played_text is None else played_text
            self.result.set_result(
                PlaybackResult(status, self.sent, text, self.error, self.first_sent_at, self.first_byte_at)
            )

    @property
    def first_byte_at(self) -> float:
        reported = getattr(self.audio, "first_byte_at", None)
        if isinstance(reported, float) and self.first_chunk_at:
            return min(reported, self.first_chunk_at)
        return self.first_chunk_at


# Synthesis runs at most this far ahead of playback (in 20 ms frames: 10 s), then waits until half
# of it has played: a long monologue from a TTS faster than real time would otherwise sit in memory
# whole (about 10 KB per second of audio per call), and TCP holds the rest upstream meanwhile.
# Generous on purpose: a reply that fits is synthesised whole, so a barge-in cuts its transcript
# by its real length rather than by the characters-per-second estimate.
READ_AHEAD_FRAMES = 500


class Playback:
    def __init__(
        self,
        sink: FrameSink,
        pacer: Pacer,
        *,
        max_queued: int = 8,
        mark_grace_s: float = 2.0,
        read_ahead_frames: int = READ_AHEAD_FRAMES,
    ) -> None:
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        self._handle = pacer.register(self)
        self._pacer = pacer
        self.max_queued = max_queued
        self.mark_grace_s = mark_grace_s
        self._items: deque[Utterance] = deque()  # audio not all sent yet; [0] is playing
        self._awaiting: dict[str, tuple[Utterance, asyncio.TimerHandle]] = {}
        self._feeder: asyncio.Task[None] | None = None
        self._cleanup: set[asyncio.Task[None]] = set()
        self._counter = 0
        self._closed = False
        self.mark_timeouts = 0
        self.read_ahead_frames = max(2, read_ahead_frames)
        # While synthesis waits for room, pace() sets _room once this many frames are left.
        self._resume_below = 0
        self._room = asyncio.Event()

    @property
    def busy(self) -> bool:
        """Audio is queued, playing, or not yet confirmed heard."""
        return bool(self._items or self._awaiting)

    def enqueue(self, text: str, audio: AsyncIterator[bytes]) -> Utterance:
        if self._closed:
            raise RuntimeError("playback is closed")
        if len(self._items) >= self.max_queued:
            raise QueueFull(f"playback queue is full ({self.max_queued} utterances)")
        self._counter += 1
        utt = Utterance(self._counter, text, audio, self._loop.create_future())
        self._items.append(utt)
        if self._feeder is None:
            self._feeder = self._loop.create_task(self._feed(), name="voicecall-playback-feed")
        return utt

    # --- pacer side (synchronous, once per 20 ms tick while active) ---

    def pace(self) -> bool:
        items = self._items
        while items:
            utt = items[0]
            frames = utt.frames
            if frames:
                if not utt.sent:
                    utt.first_sent_at = self._loop.time()
                frame = frames.popleft()
                utt.sent += 1
                if len(frames) < self._resume_below:
                    self._resume_below = 0
                    self._room.set()
                self._sink.send_frame(frame)
                # Re-checked after the send: a sink may have triggered barge-in meanwhile.
                if not frames and utt.synth_done and items and items[0] is utt:
                    self._audio_done(utt)
                return True
            if not utt.synth_done:
                return False  # synthesis is behind real time; the feeder wakes us
            self._audio_done(utt)
        return False

    def _audio_done(self, utt: Utterance) -> None:
        self._items.popleft()
        if not utt.sent:
            utt.resolve("failed", "")
            return
        self._sink.send_mark(utt.mark)
        now = self._loop.time()
        expected_end = max(utt.first_sent_at + utt.sent * FRAME_MS / 1000, now)
        timer = self._loop.call_at(expected_end + self.mark_grace_s, self._mark_timeout, utt.mark)
        self._awaiting[utt.mark] = (utt, timer)

    def on_mark_echo(self, name: str) -> None:
        entry = self._awaiting.pop(name, None)
        if entry is None:
            return  # ours before a clear, or not ours at all
        utt, timer = entry
        timer.cancel()
        self._complete(utt)

    def _mark_timeout(self, name: str) -> None:
        entry = self._awaiting.pop(name, None)
        if entry is not None:
            self.mark_timeouts += 1
            log.debug("no echo for mark %s; assuming it was played", name)
            self._complete(entry[0])

    def _complete(self, utt: Utterance) -> None:
        if utt.error:
            utt.resolve("partial", _heard_text(utt))
        else:
            utt.resolve("played")

    # --- synthesis side ---

    async def _feed(self) -> None:
        try:
            while True:
                utt = next((u for u in self._items if not u.synth_started), None)
                if utt is None:
                    return
                await self._synthesise(utt)
        finally:
            if self._feeder is asyncio.current_task():
                self._feeder = None

    async def _synthesise(self, utt: Utterance) -> None:
        utt.synth_started = True
        framer = UlawFramer()
        wake = self._handle.wake
        try:
            async for chunk in utt.audio:
                if chunk and not utt.first_chunk_at:
                    utt.first_chunk_at = self._loop.time()
                frames = framer.push(chunk)
                if frames:
                    utt.frames.extend(frames)
                    utt.synthesised += len(frames)
                    wake()
                    if len(utt.frames) >= self.read_ahead_frames:
                        await self._wait_for_room()
            tail = framer.flush()
            if tail:
                utt.frames.append(tail)
                utt.synthesised += 1
        except Exception as exc:
            utt.error = (
                str(exc) if isinstance(exc, TtsError) else f"speech synthesis failed ({type(exc).__name__})"
            )
            log.warning("speech synthesis failed for utterance %s: %s", utt.mark, utt.error)
            if not utt.sent:
                # Nothing was heard: drop what was buffered so the caller can fall back cleanly.
                utt.frames.clear()
        finally:
            utt.synth_done = True
            await _aclose(utt.audio)
        wake()

    async def _wait_for_room(self) -> None:
        self._room.clear()
        self._resume_below = self.read_ahead_frames // 2
        try:
            await self._room.wait()
        finally:
            self._resume_below = 0

    # --- barge-in and shutdown ---

    def barge_in(self) -> None:
        """The caller started talking: stop, drop the queue, clear the provider's buffer."""
        if self._closed:
            return
        if self._stop_all():
            self._sink.send_clear()

    def _stop_all(self) -> bool:
        had_audio = bool(self._items or self._awaiting)
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            # Cancelling closes the iterator being read; keep the task until that is done.
            feeder.cancel()
            self._cleanup.add(feeder)
            feeder.add_done_callback(self._cleanup.discard)
        for utt, timer in self._awaiting.values():
            timer.cancel()
            self._complete(utt)
        self._awaiting.clear()
        items = list(self._items)
        self._items.clear()  # the same deque: a pace() in progress must see it empty
        for i, utt in enumerate(items):
            if i == 0 and utt.sent:
                utt.resolve("partial", _heard_text(utt))
            elif i == 0:
                utt.resolve("cancelled", "")
            else:
                utt.resolve("skipped", "")
            utt.frames.clear()
            if not utt.synth_done:
                utt.synth_done = True
                # Started iterators are closed by the cancelled feeder; others are closed here.
                if not utt.synth_started:
                    self._close_later(utt.audio)
        return had_audio

    def _close_later(self, audio: AsyncIterator[bytes]) -> None:
        task = self._loop.create_task(_aclose(audio))
        self._cleanup.add(task)
        task.add_done_callback(self._cleanup.discard)

    async def close(self) -> None:
        """Resolve everything (as barge-in would, without a clear) and leave the pacer."""
        if self._closed:
            return
        self._stop_all()
        self._closed = True
        self._pacer.unregister(self._handle)
        if self._cleanup:
            await asyncio.gather(*list(self._cleanup), return_exceptions=True)


def _heard_text(utt: Utterance) -> str:
    if utt.synth_done and not utt.error:
        total = utt.synthesised
    else:
        estimate = len(utt.text) / CHARS_PER_SECOND * 1000 / FRAME_MS
        total = max(utt.synthesised, round(estimate))
    if total <= 0 or utt.sent >= total:
        return utt.text if utt.sent else ""
    return _cut_at_word(utt.text, round(len(utt.text) * utt.sent / total))


def _cut_at_word(text: str, cut: int) -> str:
    if cut >= len(text):
        return text
    if cut > 0 and not text[cut].isspace() and not text[cut - 1].isspace():
        space = text.rfind(" ", 0, cut)
        cut = space if space > 0 else 0
    return text[:cut].rstrip()


async def _aclose(audio: AsyncIterator[bytes]) -> None:
    aclose = getattr(audio, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
