"""Telephony audio: any-rate 16-bit PCM to 8 kHz G.711 μ-law in exact 20 ms frames.

The resampler is a polyphase windowed-sinc (Kaiser) filter in numpy. Its history carries across
chunks, so a stream fed in any chunk sizes (odd byte counts included) gives the same samples as
the whole signal at once, within 1 LSB: chunk edges never click.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import numpy.typing as npt

with warnings.catch_warnings():
    # Stdlib audioop warns on import on 3.11/3.12; from 3.13 the audioop-lts package provides it.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

TELEPHONY_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = TELEPHONY_RATE * FRAME_MS // 1000  # 160 μ-law bytes = 20 ms
ULAW_SILENCE = 0xFF

# Passband to 95 % of the lower Nyquist frequency (3.8 kHz for telephony), stopband 80 dB down from
# 105 %: nothing above 4.2 kHz folds back into the band a caller hears.
_CUTOFF = 0.95
_TRANSITION = 0.2
_STOPBAND_DB = 80.0
_BLOCK = 256

Floats = npt.NDArray[np.float64]


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """16-bit LE PCM to G.711 μ-law, one byte per sample (a trailing odd byte is ignored)."""
    return audioop.lin2ulaw(pcm[: len(pcm) & ~1], 2)


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    """G.711 μ-law to 16-bit LE PCM."""
    return audioop.ulaw2lin(ulaw, 2)


@lru_cache(maxsize=16)
def _design(rate_in: int, rate_out: int) -> tuple[int, int, int, int, Floats]:
    """(up, down, taps per phase, delay, polyphase bank) for a rate pair; cached and read-only."""
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    fs_up = float(rate_in * up)
    low = min(rate_in, rate_out) / 2.0
    fc = _CUTOFF * low / fs_up  # cycles per upsampled sample
    width = _TRANSITION * low / fs_up
    beta = 0.1102 * (_STOPBAND_DB - 8.7)
    n = math.ceil((_STOPBAND_DB - 7.95) / (2.285 * 2 * math.pi * width)) + 1
    taps = math.ceil(n / up)
    n = taps * up
    centre = (n - 1) / 2.0
    k = np.arange(n, dtype=np.float64)
    proto = 2 * fc * np.sinc(2 * fc * (k - centre)) * np.kaiser(n, beta)
    proto *= up / proto.sum()  # unity DC gain per polyphase branch
    # bank[p, j] multiplies input sample (i_hi - taps + 1 + j) for output phase p: reversed taps.
    bank = proto.reshape(taps, up).T[:, ::-1].copy()
    bank.flags.writeable = False
    return up, down, taps, round(centre), bank


class Resampler:
    """Streaming 16-bit LE mono PCM resampler to ``rate_out`` (8 kHz by default).

    ``process`` returns int16 LE bytes for every output sample whose input is complete; the filter's
    look-ahead (a few ms) stays inside until ``flush``, which emits exactly the samples the whole
    input's duration calls for. Output is time-aligned with the input (the filter delay is removed).
    """

    def __init__(self, rate_in: int, rate_out: int = TELEPHONY_RATE) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError("sample rates must be positive")
        self.rate_in = rate_in
        self.rate_out = rate_out
        self._odd = b""
        self._flushed = False
        self._passthrough = rate_in == rate_out
        if self._passthrough:
            return
        self._up, self._down, self._taps, self._delay, self._bank = _design(rate_in, rate_out)
        # Input history; _base is the absolute index of _buf[0] (negative = leading zeros).
        self._buf: Floats = np.zeros(self._taps - 1, dtype=np.float64)
        self._base = -(self._taps - 1)
        self._n_in = 0
        self._n_out = 0

    def process(self, pcm: bytes) -> bytes:
        if self._flushed:
            raise RuntimeError("Resampler already flushed")
        if self._odd:
            pcm = self._odd + pcm
        usable = len(pcm) & ~1
        self._odd = pcm[usable:]
        if self._passthrough:
            return pcm[:usable]
        if not usable:
            return b""
        samples = np.frombuffer(pcm, dtype="<i2", count=usable // 2)
        self._buf = np.concatenate((self._buf, samples.astype(np.float64)))
        self._n_in += samples.size
        last = (self._n_in * self._up - 1 - self._delay) // self._down
        return self._emit(last)

    def flush(self) -> bytes:
        """Emit the tail (the filter's look-ahead, zero-padded). A trailing odd byte is dropped."""
        if self._flushed:
            return b""
        self._flushed = True
        self._odd = b""
        if self._passthrough:
            return b""
        total = -(-self._n_in * self._up // self._down)
        last = total - 1
        need = (last * self._down + self._delay) // self._up + 1 - self._n_in
        if need > 0:
            self._buf = np.concatenate((self._buf, np.zeros(need, dtype=np.float64)))
        return self._emit(last)

    def _emit(self, last: int) -> bytes:
        first = self._n_out
        if last < first:
            return b""
        taps, up, bank = self._taps, self._up, self._bank
        if up == 1:
            y = self._decimate(first * self._down + self._delay - (taps - 1) - self._base, last + 1 - first)
        else:
            u = np.arange(first, last + 1, dtype=np.int64) * self._down + self._delay
            starts = u // up - (taps - 1) - self._base
            phases = u % up
            windows = np.lib.stride_tricks.sliding_window_view(self._buf, taps)
            y = np.empty(u.size, dtype=np.float64)
            # Blocks keep the gathered windows small (cache-sized, no page faults from huge temporaries).
            for s in range(0, u.size, _BLOCK):
                rows = windows[starts[s : s + _BLOCK]]
                y[s : s + _BLOCK] = np.einsum("ij,ij->i", rows, bank[phases[s : s + _BLOCK]])
        self._n_out = last + 1
        keep_from = ((last + 1) * self._down + self._delay) // up - (taps - 1)
        drop = keep_from - self._base
        if drop > 0:
            # A copy, not a view: a view would keep the whole concatenated chunk alive per call.
            self._buf = self._buf[drop:].copy()
            self._base = keep_from
        return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()

    def _decimate(self, start: int, count: int) -> Floats:
        """Integer decimation (24, 16 or 48 kHz to 8 kHz), the common TTS case: output ``i`` is the
        dot product of the taps with ``buf[start + i * down :]``. Split into ``down`` polyphase
        branches, each a short correlation over a contiguous slice done in one C call: no gathered
        window matrix and no multiply for a sample the decimator would discard."""
        down, kernel = self._down, self._bank[0]
        seg = self._buf[start : start + (count - 1) * down + kernel.size]
        y = np.zeros(count, dtype=np.float64)
        for r in range(down):
            branch = kernel[r::down]
            y += np.correlate(seg[r::down][: count + branch.size - 1], branch, "valid")[:count]
        return y


class UlawFramer:
    """Cuts a μ-law byte stream into exact 160-byte (20 ms) frames."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def push(self, ulaw: bytes) -> list[bytes]:
        buf = self._buf
        buf += ulaw
        whole = len(buf) - len(buf) % FRAME_BYTES
        if not whole:
            return []
        frames = [bytes(buf[i : i + FRAME_BYTES]) for i in range(0, whole, FRAME_BYTES)]
        del buf[:whole]
        return frames

    def flush(self) -> bytes:
        """The tail padded with μ-law silence to a full frame, or b"" when nothing is pending."""
        if not self._buf:
            return b""
        tail = bytes(self._buf) + bytes([ULAW_SILENCE]) * (FRAME_BYTES - len(self._buf))
        self._buf.clear()
        return tail


class PcmToUlaw8k:
    """A stream of 16-bit LE mono PCM chunks at ``rate`` to 8 kHz μ-law bytes (any length: the
    playback queue cuts them into 20 ms frames, so nothing is framed twice)."""

    def __init__(self, rate: int) -> None:
        self._resampler = Resampler(rate, TELEPHONY_RATE)

    def push(self, pcm: bytes) -> bytes:
        pcm8k = self._resampler.process(pcm)
        return pcm16_to_ulaw(pcm8k) if pcm8k else b""

    def flush(self) -> bytes:
        return pcm16_to_ulaw(self._resampler.flush())


def iter_frames(ulaw: bytes) -> Iterator[bytes]:
    """Whole-buffer helper: 160-byte frames, the last one padded with silence."""
    framer = UlawFramer()
    yield from framer.push(ulaw)
    tail = framer.flush()
    if tail:
        yield tail
