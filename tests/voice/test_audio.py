"""Resampling, μ-law and framing: the audio a caller hears."""

from __future__ import annotations

import random

import numpy as np
import numpy.typing as npt
import pytest

from voicecall_server.voice.audio import (
    FRAME_BYTES,
    PcmToUlaw8k,
    Resampler,
    UlawFramer,
    _design,
    iter_frames,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)

AMP = 10000.0


def tone(freq: float, rate: int, seconds: float = 1.0, amp: float = AMP) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def samples(pcm: bytes) -> npt.NDArray[np.float64]:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def resample_whole(pcm: bytes, rate: int) -> bytes:
    r = Resampler(rate)
    return r.process(pcm) + r.flush()


def band_db(signal: npt.NDArray[np.float64], rate: int, lo: float, hi: float) -> float:
    """Energy in [lo, hi) Hz relative to a full-scale-AMP sine, measured with a Hann-windowed FFT."""
    win = np.hanning(signal.size)
    spec = np.abs(np.fft.rfft(signal * win)) ** 2
    freqs = np.fft.rfftfreq(signal.size, 1 / rate)
    ref = np.abs(np.fft.rfft(AMP * np.sin(2 * np.pi * 1000 * np.arange(signal.size) / rate) * win)) ** 2
    band = spec[(freqs >= lo) & (freqs < hi)].sum()
    return float(10 * np.log10(max(band, 1e-12) / ref.sum()))


@pytest.mark.parametrize("rate", [24000, 22050, 16000, 44100, 48000])
def test_out_of_band_tone_is_filtered_not_aliased(rate: int) -> None:
    # Fed to a naive decimator, 6 kHz folds to 2 kHz (24 kHz input): right in the voice band.
    out = samples(resample_whole(tone(6000, rate), rate))[400:-400]
    assert band_db(out, 8000, 0, 4000) < -40


@pytest.mark.parametrize("rate", [24000, 22050, 16000])
def test_passband_tone_keeps_its_level_and_frequency(rate: int) -> None:
    out = samples(resample_whole(tone(1000, rate), rate))[400:-400]
    rms_db = 20 * np.log10(np.sqrt(np.mean(out**2)) / (AMP / np.sqrt(2)))
    assert abs(rms_db) < 1.0
    peak = np.fft.rfftfreq(out.size, 1 / 8000)[np.argmax(np.abs(np.fft.rfft(out)))]
    assert abs(peak - 1000) < 5


@pytest.mark.parametrize("rate", [24000, 22050, 8000])
def test_output_length_matches_duration(rate: int) -> None:
    assert len(resample_whole(tone(440, rate, 0.5), rate)) == 2 * 4000


@pytest.mark.parametrize(("rate", "seed"), [(24000, 1), (22050, 2), (44100, 3), (16000, 4), (8000, 5)])
def test_arbitrary_chunks_equal_one_shot(rate: int, seed: int) -> None:
    rng = random.Random(seed)
    noise = np.random.default_rng(seed).integers(-20000, 20000, rate).astype("<i2").tobytes()
    whole = samples(resample_whole(noise, rate))
    r = Resampler(rate)
    parts, i = [], 0
    while i < len(noise):
        n = rng.choice([0, 1, 3, rng.randint(1, 2001)])  # odd sizes split samples across chunks
        parts.append(r.process(noise[i : i + n]))
        i += n
    parts.append(r.flush())
    chunked = samples(b"".join(parts))
    assert chunked.size == whole.size
    assert np.max(np.abs(chunked - whole)) <= 1


def test_resampler_refuses_input_after_flush() -> None:
    r = Resampler(24000)
    r.flush()
    with pytest.raises(RuntimeError):
        r.process(b"\x00\x00")


def test_ulaw_round_trip_error_is_bounded() -> None:
    pcm = np.arange(-32768, 32768, 7, dtype="<i2")
    back = np.frombuffer(ulaw_to_pcm16(pcm16_to_ulaw(pcm.tobytes())), dtype="<i2").astype(np.int64)
    err = np.abs(back - pcm.astype(np.int64))
    # G.711 μ-law: 8 segments, each step twice the last; the error stays below ~3 % of the value.
    assert np.all(err <= np.maximum(np.abs(pcm.astype(np.int64)) // 32, 16) + 8)
    assert len(pcm16_to_ulaw(b"\x00\x00\x00")) == 1


def test_ulaw_silence_decodes_to_zero() -> None:
    assert ulaw_to_pcm16(b"\xff") == b"\x00\x00"
    assert pcm16_to_ulaw(b"\x00\x00") == b"\xff"


def test_framer_yields_exact_frames_and_pads_the_tail() -> None:
    framer = UlawFramer()
    data = bytes(range(256)) * 3  # 768 bytes
    frames: list[bytes] = []
    for i in range(0, len(data), 100):
        frames += framer.push(data[i : i + 100])
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert len(frames) == 768 // FRAME_BYTES
    tail = framer.flush()
    assert len(tail) == FRAME_BYTES
    assert b"".join(frames) + tail[: 768 % FRAME_BYTES] == data
    assert tail[768 % FRAME_BYTES :] == b"\xff" * (FRAME_BYTES - 768 % FRAME_BYTES)
    assert framer.flush() == b""


def test_framer_flush_with_nothing_pending_is_empty() -> None:
    framer = UlawFramer()
    assert framer.push(b"\x01" * FRAME_BYTES) == [b"\x01" * FRAME_BYTES]
    assert framer.flush() == b""


def test_pcm_to_ulaw_8k_converts_a_24k_stream_in_any_chunks() -> None:
    pcm = tone(1000, 24000, 0.5)
    conv = PcmToUlaw8k(24000)
    ulaw = b"".join(conv.push(pcm[i : i + 777]) for i in range(0, len(pcm), 777)) + conv.flush()
    assert len(ulaw) == 4000  # 0.5 s at 8 kHz, one byte per sample
    frames = list(iter_frames(ulaw))
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert len(frames) == 25  # 0.5 s of 20 ms frames
    decoded = samples(ulaw_to_pcm16(b"".join(frames)))[200:-200]
    rms_db = 20 * np.log10(np.sqrt(np.mean(decoded**2)) / (AMP / np.sqrt(2)))
    assert abs(rms_db) < 1.0


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_integer_decimation_is_the_filter_applied_at_every_kept_sample(rate: int) -> None:
    # The definition, computed the slow way: output m is the taps dotted with the (zero-padded)
    # input window that ends at m * down + delay.
    up, down, taps, delay, bank = _design(rate, 8000)
    assert up == 1
    noise = np.random.default_rng(rate).integers(-20000, 20000, rate // 2).astype("<i2")
    padded = np.concatenate((np.zeros(taps - 1), noise.astype(np.float64), np.zeros(taps)))
    n_out = -(-noise.size // down)
    expected = np.array([padded[m * down + delay : m * down + delay + taps] @ bank[0] for m in range(n_out)])
    expected = np.clip(np.rint(expected), -32768, 32767)
    got = samples(resample_whole(noise.tobytes(), rate))
    assert got.size == n_out
    assert np.max(np.abs(got - expected)) <= 1
