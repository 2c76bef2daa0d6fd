"""The real TTS engines against loopback fakes of the OpenAI and ElevenLabs wire formats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from voicecall_server.voice.audio import ulaw_to_pcm16
from voicecall_server.voice.tts import ElevenLabsTts, OpenAiTts, Synthesis, TtsError, build_tts_engine

from .fakes_tts import ELEVEN_KEY, OPENAI_KEY, FakeTtsServer

# Safety net against a hang only; nothing here asserts on time.
GUARD_S = 10


def pcm_tone(rate: int, seconds: float, freq: float = 500.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def split(data: bytes, n: int) -> list[bytes]:
    return [data[i : i + n] for i in range(0, len(data), n)]


async def collect(gen: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in gen])


async def test_openai_streams_pcm_and_sends_the_expected_request() -> None:
    pcm = pcm_tone(24000, 0.5)
    async with FakeTtsServer(chunks=split(pcm, 4801), hold_last=True) as fake:
        engine = OpenAiTts(OPENAI_KEY, base_url=fake.url + "/v1", voice="coral")
        try:
            gen = engine.synthesize("Hello there")
            first = await asyncio.wait_for(anext(gen), GUARD_S)
            # The fake is still holding its last chunk: these bytes were produced while streaming.
            assert not fake.last_sent
            assert first
            fake.release.set()
            rest = await asyncio.wait_for(collect(gen), GUARD_S)
        finally:
            await engine.aclose()
    audio = first + rest
    assert len(audio) == 0.5 * 8000  # 24 kHz in, 8 kHz μ-law out (the playback queue frames it)
    req = fake.requests[0]
    assert req.path == "/v1/audio/speech"
    assert req.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert req.body == {
        "model": "gpt-4o-mini-tts",
        "voice": "coral",
        "input": "Hello there",
        "response_format": "pcm",
    }
    level = np.sqrt(np.mean(np.frombuffer(ulaw_to_pcm16(audio), "<i2").astype(float)[400:-400] ** 2))
    assert 8000 / np.sqrt(2) * 0.89 < level < 8000 / np.sqrt(2) * 1.12


@pytest.mark.parametrize(("status", "message"), [(401, "TTS authentication failed"), (500, "HTTP 500")])
async def test_openai_errors_are_safe(status: int, message: str) -> None:
    async with FakeTtsServer(status=status) as fake:
        engine = OpenAiTts(OPENAI_KEY, base_url=fake.url + "/v1")
        try:
            with pytest.raises(TtsError) as info:
                await asyncio.wait_for(collect(engine.synthesize("hi")), GUARD_S)
        finally:
            await engine.aclose()
    assert message in str(info.value)
    assert info.value.status == status
    assert OPENAI_KEY not in str(info.value)
    assert OPENAI_KEY not in repr(info.value)
    assert "Incorrect API key" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert len(fake.requests) == 1  # no SDK retries on a live call


async def test_openai_wrong_key_is_an_auth_failure() -> None:
    async with FakeTtsServer(chunks=[b"\x00\x00"]) as fake:
        engine = OpenAiTts("sk-wrong", base_url=fake.url + "/v1")
        try:
            with pytest.raises(TtsError, match="TTS authentication failed"):
                await asyncio.wait_for(collect(engine.synthesize("hi")), GUARD_S)
        finally:
            await engine.aclose()
    assert "sk-wrong" not in repr(engine)


async def test_openai_stream_cut_midway_raises_after_first_bytes() -> None:
    async with FakeTtsServer(chunks=split(pcm_tone(24000, 0.5), 4800), break_after=2) as fake:
        engine = OpenAiTts(OPENAI_KEY, base_url=fake.url + "/v1")
        got: list[bytes] = []

        async def consume() -> None:
            async for chunk in engine.synthesize("hi"):
                got.append(chunk)

        try:
            with pytest.raises(TtsError, match="interrupted"):
                await asyncio.wait_for(consume(), GUARD_S)
        finally:
            await engine.aclose()
    assert got


async def test_elevenlabs_ulaw_passes_through_while_streaming() -> None:
    ulaw = bytes(range(256)) * 10
    async with FakeTtsServer(chunks=split(ulaw, 700), hold_last=True) as fake:
        engine = ElevenLabsTts(
            ELEVEN_KEY,
            "voice123",
            base_url=fake.url,
            voice_settings={"stability": 0.5, "similarity_boost": 0.75, "speed": 1.1},
            language_code="en",
            seed=42,
            apply_text_normalization="auto",
        )
        try:
            gen = engine.synthesize("Hola")
            first = await asyncio.wait_for(anext(gen), GUARD_S)
            assert not fake.last_sent
            fake.release.set()
            rest = await asyncio.wait_for(collect(gen), GUARD_S)
        finally:
            await engine.aclose()
    assert first + rest == ulaw  # no transcoding, no padding
    req = fake.requests[0]
    assert req.path == "/v1/text-to-speech/voice123/stream"
    assert req.query == {"output_format": "ulaw_8000"}
    assert req.headers["xi-api-key"] == ELEVEN_KEY
    assert req.body == {
        "text": "Hola",
        "model_id": "eleven_flash_v2_5",
        "voice_settings": {"stability": 0.5, "similarity_boost": 0.75, "speed": 1.1},
        "language_code": "en",
        "seed": 42,
        "apply_text_normalization": "auto",
    }


@pytest.mark.parametrize("rate", [16000, 22050, 24000])
async def test_elevenlabs_pcm_formats_are_converted(rate: int) -> None:
    async with FakeTtsServer(chunks=split(pcm_tone(rate, 0.4), 1001)) as fake:
        engine = ElevenLabsTts(ELEVEN_KEY, "v", base_url=fake.url, output_format=f"pcm_{rate}")
        try:
            audio = await asyncio.wait_for(collect(engine.synthesize("x")), GUARD_S)
        finally:
            await engine.aclose()
    assert fake.requests[0].query == {"output_format": f"pcm_{rate}"}
    assert "voice_settings" not in fake.requests[0].body
    assert len(audio) == 0.4 * 8000


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "TTS authentication failed"), (429, "rate limited"), (500, "TTS service unavailable")],
)
async def test_elevenlabs_errors_are_safe(status: int, message: str) -> None:
    async with FakeTtsServer(status=status) as fake:
        engine = ElevenLabsTts(ELEVEN_KEY, "v", base_url=fake.url)
        try:
            with pytest.raises(TtsError) as info:
                await asyncio.wait_for(collect(engine.synthesize("hi")), GUARD_S)
        finally:
            await engine.aclose()
    assert message in str(info.value)
    assert ELEVEN_KEY not in str(info.value)
    assert "invalid_api_key" not in str(info.value)
    assert ELEVEN_KEY not in repr(engine)


async def test_elevenlabs_unreachable_is_a_tts_error() -> None:
    async with FakeTtsServer() as fake:
        url = fake.url
    engine = ElevenLabsTts(ELEVEN_KEY, "v", base_url=url)
    try:
        with pytest.raises(TtsError, match="unreachable"):
            await asyncio.wait_for(collect(engine.synthesize("hi")), GUARD_S)
    finally:
        await engine.aclose()


def test_elevenlabs_rejects_formats_a_phone_cannot_play() -> None:
    with pytest.raises(ValueError, match="output format"):
        ElevenLabsTts(ELEVEN_KEY, "v", output_format="mp3_44100_128")


async def test_build_tts_engine() -> None:
    assert build_tts_engine("edge") is None
    openai_engine = build_tts_engine("openai", openai_api_key=OPENAI_KEY, openai_voice="alloy")
    assert isinstance(openai_engine, OpenAiTts)
    assert openai_engine.voice == "alloy"
    await openai_engine.aclose()
    eleven = build_tts_engine("elevenlabs", elevenlabs_api_key=ELEVEN_KEY, elevenlabs_voice_id="v1")
    assert isinstance(eleven, ElevenLabsTts)
    assert eleven.name == "elevenlabs"
    await eleven.aclose()
    with pytest.raises(ValueError, match="API key"):
        build_tts_engine("openai")
    with pytest.raises(ValueError, match="unknown TTS provider"):
        build_tts_engine("typecast")


def _engine(name: str, url: str) -> OpenAiTts | ElevenLabsTts:
    if name == "openai":
        return OpenAiTts(OPENAI_KEY, base_url=url + "/v1")
    return ElevenLabsTts(ELEVEN_KEY, "voice123", base_url=url)


@pytest.mark.parametrize("name", ["openai", "elevenlabs"])
async def test_synthesis_reports_when_its_first_audio_byte_arrived(name: str) -> None:
    # OpenAI's chunks are smaller than a frame: the first byte arrives before any audio is yielded.
    chunks = split(pcm_tone(24000, 0.2), 100) if name == "openai" else split(bytes(range(256)) * 4, 100)
    loop = asyncio.get_running_loop()
    async with FakeTtsServer(chunks=chunks, hold_last=True) as fake:
        engine = _engine(name, fake.url)
        try:
            synthesis = engine.synthesize("Hello there")
            assert isinstance(synthesis, Synthesis)
            assert synthesis.first_byte_at is None, "nothing is requested before the first read"
            asked = loop.time()
            first = await asyncio.wait_for(anext(synthesis), GUARD_S)
            yielded = loop.time()
            assert first and not fake.last_sent
            first_byte = synthesis.first_byte_at
            assert first_byte is not None and asked <= first_byte <= yielded
            fake.release.set()
            await asyncio.wait_for(collect(synthesis), GUARD_S)
            assert synthesis.first_byte_at == first_byte, "only the first chunk counts"
        finally:
            await engine.aclose()


@pytest.mark.parametrize("name", ["openai", "elevenlabs"])
async def test_a_refused_synthesis_has_no_first_byte(name: str) -> None:
    async with FakeTtsServer(status=500) as fake:
        engine = _engine(name, fake.url)
        try:
            synthesis = engine.synthesize("hi")
            with pytest.raises(TtsError):
                await asyncio.wait_for(collect(synthesis), GUARD_S)
            assert isinstance(synthesis, Synthesis) and synthesis.first_byte_at is None
        finally:
            await engine.aclose()


async def test_closing_a_synthesis_early_closes_its_request() -> None:
    async with FakeTtsServer(chunks=split(pcm_tone(24000, 0.5), 4800), hold_last=True) as fake:
        engine = OpenAiTts(OPENAI_KEY, base_url=fake.url + "/v1")
        try:
            synthesis = engine.synthesize("hi")
            assert await asyncio.wait_for(anext(synthesis), GUARD_S)
            await synthesis.aclose()
            with pytest.raises(StopAsyncIteration):
                await anext(synthesis)
            assert not fake.last_sent
        finally:
            await engine.aclose()
