"""Streaming text-to-speech for phone calls: OpenAI and ElevenLabs, 8 kHz μ-law out.

Each engine yields μ-law bytes as the upstream response streams in, so the first frame can play
while the rest is still being synthesised. The iterator an engine returns is a ``Synthesis``: it
also tells when the utterance's first audio byte arrived from upstream (turn latency's
``tts_first_byte``). Failures raise ``TtsError`` whose message is safe to log
and show: never the API key, never the provider's raw body.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

import aiohttp
import openai

from .audio import PcmToUlaw8k

OPENAI_PCM_RATE = 24000
_PCM_FORMAT = re.compile(r"^pcm_(8000|16000|22050|24000|44100|48000)$")


class TtsError(Exception):
    """A synthesis failure with a safe, short message."""

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class Synthesis:
    """One utterance's μ-law audio as it streams in, and when its first audio byte arrived.

    An ``AsyncIterator[bytes]`` like any engine's output (``aclose`` closes the upstream request);
    ``first_byte_at`` is the loop time the first non-empty upstream chunk arrived, None until then.
    """

    __slots__ = ("_chunks", "first_byte_at")

    def __init__(self, stream: Callable[[Synthesis], AsyncGenerator[bytes, None]]) -> None:
        self.first_byte_at: float | None = None
        self._chunks = stream(self)

    def __repr__(self) -> str:
        return f"<Synthesis first_byte_at={self.first_byte_at}>"

    def __aiter__(self) -> Synthesis:
        return self

    async def __anext__(self) -> bytes:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        await self._chunks.aclose()

    def received(self, chunk: bytes) -> None:
        """Called by the engine for each upstream chunk; remembers the first one's arrival."""
        if chunk and self.first_byte_at is None:
            self.first_byte_at = asyncio.get_running_loop().time()


class TtsEngine(Protocol):
    name: str

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """8 kHz μ-law bytes, yielded as they are synthesised. Raises TtsError."""
        ...

    async def aclose(self) -> None: ...


def _status_message(status: int) -> str:
    if status in (401, 403):
        return "TTS authentication failed"
    if status == 404:
        return "TTS voice or model not found (HTTP 404)"
    if status == 429:
        return "TTS rate limited (HTTP 429)"
    if status >= 500:
        return f"TTS service unavailable (HTTP {status})"
    return f"TTS request rejected (HTTP {status})"


class OpenAiTts:
    """OpenAI ``/v1/audio/speech`` streaming 24 kHz PCM, converted as it arrives.

    ``max_retries`` defaults to 0: on a live call a fast failure (and the provider's own voice)
    beats the SDK's backoff.
    """

    name = "openai"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        model: str = "gpt-4o-mini-tts",
        voice: str = "coral",
        timeout_s: float = 30,
        max_retries: int = 0,
    ) -> None:
        if not api_key:
            raise ValueError("OpenAI TTS needs an API key")
        self.model = model
        self.voice = voice
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    def __repr__(self) -> str:
        return f"OpenAiTts(model={self.model!r}, voice={self.voice!r})"

    def synthesize(self, text: str) -> Synthesis:
        return Synthesis(lambda synthesis: self._stream(text, synthesis))

    async def _stream(self, text: str, synthesis: Synthesis) -> AsyncGenerator[bytes, None]:
        conv = PcmToUlaw8k(OPENAI_PCM_RATE)
        try:
            async with self._client.audio.speech.with_streaming_response.create(
                model=self.model, voice=self.voice, input=text, response_format="pcm"
            ) as response:
                async for chunk in response.iter_bytes():
                    synthesis.received(chunk)
                    ulaw = conv.push(chunk)
                    if ulaw:
                        yield ulaw
        except openai.APIStatusError as exc:
            raise TtsError(
                _status_message(exc.status_code), provider=self.name, status=exc.status_code
            ) from None
        except openai.APITimeoutError:
            raise TtsError("TTS request timed out", provider=self.name) from None
        except (openai.APIConnectionError, openai.APIError):
            raise TtsError("TTS service unreachable", provider=self.name) from None
        except Exception as exc:
            # Mid-stream transport errors surface as the HTTP library's own exceptions.
            if type(exc).__module__.split(".")[0] in {"httpx", "httpx2", "httpcore"}:
                raise TtsError("TTS stream interrupted", provider=self.name) from None
            raise
        tail = conv.flush()
        if tail:
            yield tail

    async def aclose(self) -> None:
        await self._client.close()


class ElevenLabsTts:
    """ElevenLabs ``/v1/text-to-speech/{voice_id}/stream``; ``ulaw_8000`` passes through untouched.

    ``voice_settings`` uses the API's own key names (stability, similarity_boost, style,
    use_speaker_boost, speed).
    """

    name = "elevenlabs"

    def __init__(
        self,
        api_key: str,
        voice_id: str,
        *,
        base_url: str = "https://api.elevenlabs.io",
        model_id: str = "eleven_flash_v2_5",
        output_format: str = "ulaw_8000",
        voice_settings: Mapping[str, Any] | None = None,
        language_code: str | None = None,
        seed: int | None = None,
        apply_text_normalization: str | None = None,
        timeout_s: float = 30,
    ) -> None:
        if not api_key:
            raise ValueError("ElevenLabs TTS needs an API key")
        if not voice_id:
            raise ValueError("ElevenLabs TTS needs a voice id")
        match = _PCM_FORMAT.match(output_format)
        if output_format != "ulaw_8000" and match is None:
            raise ValueError(f"unsupported ElevenLabs output format for calls: {output_format!r}")
        self._pcm_rate = int(match.group(1)) if match else None
        self._api_key = api_key
        self.voice_id = voice_id
        self.model_id = model_id
        self.output_format = output_format
        self.voice_settings = MappingProxyType(dict(voice_settings or {}))
        self.language_code = language_code
        self.seed = seed
        self.apply_text_normalization = apply_text_normalization
        self._url = f"{base_url.rstrip('/')}/v1/text-to-speech/{voice_id}/stream"
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"ElevenLabsTts(voice_id={self.voice_id!r}, model_id={self.model_id!r}, output_format={self.output_format!r})"

    def _body(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"text": text, "model_id": self.model_id}
        if self.voice_settings:
            body["voice_settings"] = dict(self.voice_settings)
        if self.language_code:
            body["language_code"] = self.language_code
        if self.seed is not None:
            body["seed"] = self.seed
        if self.apply_text_normalization:
            body["apply_text_normalization"] = self.apply_text_normalization
        return body

    def synthesize(self, text: str) -> Synthesis:
        return Synthesis(lambda synthesis: self._stream(text, synthesis))

    async def _stream(self, text: str, synthesis: Synthesis) -> AsyncGenerator[bytes, None]:
        if self._session is None:
            # Created on first use: an aiohttp session belongs to a running loop.
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        conv = PcmToUlaw8k(self._pcm_rate) if self._pcm_rate else None
        headers = {"xi-api-key": self._api_key, "Accept": "audio/basic" if conv is None else "audio/pcm"}
        try:
            async with self._session.post(
                self._url,
                params={"output_format": self.output_format},
                data=json.dumps(self._body(text)),
                headers={**headers, "Content-Type": "application/json"},
            ) as resp:
                if resp.status != 200:
                    await resp.release()
                    raise TtsError(_status_message(resp.status), provider=self.name, status=resp.status)
                async for chunk in resp.content.iter_any():
                    synthesis.received(chunk)
                    if conv is None:
                        yield chunk
                        continue
                    ulaw = conv.push(chunk)
                    if ulaw:
                        yield ulaw
        except TimeoutError:
            raise TtsError("TTS request timed out", provider=self.name) from None
        except aiohttp.ClientError:
            raise TtsError("TTS service unreachable or stream interrupted", provider=self.name) from None
        if conv is not None:
            tail = conv.flush()
            if tail:
                yield tail

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def build_tts_engine(
    provider: str,
    *,
    openai_api_key: str | None = None,
    openai_base_url: str | None = None,
    openai_model: str = "gpt-4o-mini-tts",
    openai_voice: str = "coral",
    elevenlabs_api_key: str | None = None,
    elevenlabs_voice_id: str | None = None,
    elevenlabs_base_url: str = "https://api.elevenlabs.io",
    elevenlabs_model_id: str = "eleven_flash_v2_5",
    elevenlabs_output_format: str = "ulaw_8000",
    elevenlabs_voice_settings: Mapping[str, Any] | None = None,
    elevenlabs_language_code: str | None = None,
    elevenlabs_seed: int | None = None,
    elevenlabs_apply_text_normalization: str | None = None,
    timeout_s: float = 30,
) -> TtsEngine | None:
    """The engine for ``provider``; None for "edge" (it cannot produce telephony audio).

    Raises ValueError for an unknown provider or a missing API key / voice id.
    """
    if provider == "edge":
        return None
    if provider == "openai":
        return OpenAiTts(
            openai_api_key or "",
            base_url=openai_base_url,
            model=openai_model,
            voice=openai_voice,
            timeout_s=timeout_s,
        )
    if provider == "elevenlabs":
        return ElevenLabsTts(
            elevenlabs_api_key or "",
            elevenlabs_voice_id or "",
            base_url=elevenlabs_base_url,
            model_id=elevenlabs_model_id,
            output_format=elevenlabs_output_format,
            voice_settings=elevenlabs_voice_settings,
            language_code=elevenlabs_language_code,
            seed=elevenlabs_seed,
            apply_text_normalization=elevenlabs_apply_text_normalization,
            timeout_s=timeout_s,
        )
    raise ValueError(f"unknown TTS provider: {provider!r}")
