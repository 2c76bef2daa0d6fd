"""The TTS section: core ``messages.tts`` deep-merged with the plugin's ``tts`` override.

Defaults follow OpenClaw's core TTS where it has one (``mode`` final, ``timeoutMs`` 30000, the
ElevenLabs voice settings, OpenAI ``gpt-4o-mini-tts``/``alloy``). ``provider`` has no file default:
the loader resolves it (see config.py) because core's "edge when no key" default cannot speak on a
phone line.
"""

# ruff: noqa: RUF009  # val()/sub()/required() are dataclasses.field() wrappers carrying the key rules

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .config_check import (
    PathPart,
    Render,
    boolean,
    enum,
    file_path,
    integer,
    number,
    string,
    sub,
    url,
    val,
)

TtsProvider = Literal["openai", "elevenlabs", "edge"]
_BLOCKED_KEYS = frozenset({"__proto__", "prototype", "constructor"})


@dataclass(frozen=True, slots=True)
class TtsModelOverridesConfig:
    enabled: bool = val(True, boolean())
    allow_text: bool = val(True, boolean())
    allow_provider: bool = val(False, boolean())
    allow_voice: bool = val(True, boolean())
    allow_model_id: bool = val(True, boolean())
    allow_voice_settings: bool = val(True, boolean())
    allow_normalization: bool = val(True, boolean())
    allow_seed: bool = val(True, boolean())


@dataclass(frozen=True, slots=True)
class ElevenLabsVoiceSettingsConfig:
    stability: float = val(0.5, number(minimum=0, maximum=1))
    similarity_boost: float = val(0.75, number(minimum=0, maximum=1))
    style: float = val(0.0, number(minimum=0, maximum=1))
    use_speaker_boost: bool = val(True, boolean())
    speed: float = val(1.0, number(minimum=0.5, maximum=2))


@dataclass(frozen=True, slots=True)
class ElevenLabsTtsConfig:
    api_key: str | None = val(None, string(min_len=1, secret=True), secret=True)
    base_url: str = val("https://api.elevenlabs.io", url())
    voice_id: str = val("pMsXgVXv3BLzUgSXRplE", string(min_len=1))
    model_id: str = val("eleven_multilingual_v2", string(min_len=1))
    seed: int | None = val(None, integer(minimum=0, maximum=2**32 - 1))
    apply_text_normalization: Literal["auto", "on", "off"] | None = val(None, enum("auto", "on", "off"))
    language_code: str | None = val(None, string(min_len=1))
    voice_settings: ElevenLabsVoiceSettingsConfig = sub(ElevenLabsVoiceSettingsConfig)


@dataclass(frozen=True, slots=True)
class OpenAITtsConfig:
    # api_key and base_url fall back to the top-level ``openai`` section (then OPENAI_API_KEY /
    # OPENAI_BASE_URL); base_url None means the SDK default.
    api_key: str | None = val(None, string(min_len=1, secret=True), secret=True)
    model: str = val("gpt-4o-mini-tts", string(min_len=1))
    voice: str = val("alloy", string(min_len=1))
    base_url: str | None = val(None, url())


@dataclass(frozen=True, slots=True)
class EdgeTtsConfig:
    enabled: bool = val(True, boolean())
    voice: str = val("en-US-MichelleNeural", string(min_len=1))
    lang: str = val("en-US", string(min_len=1))
    output_format: str = val("audio-24khz-48kbitrate-mono-mp3", string(min_len=1))
    pitch: str | None = val(None, string())
    rate: str | None = val(None, string())
    volume: str | None = val(None, string())
    save_subtitles: bool = val(False, boolean())
    proxy: str | None = val(None, url())
    timeout_ms: int | None = val(None, integer(minimum=1000, maximum=120000))


@dataclass(frozen=True, slots=True)
class TtsConfig:
    auto: Literal["off", "always", "inbound", "tagged"] = val(
        "off", enum("off", "always", "inbound", "tagged")
    )
    enabled: bool = val(False, boolean())
    mode: Literal["final", "all"] = val("final", enum("final", "all"))
    provider: TtsProvider | None = val(None, enum("openai", "elevenlabs", "edge"))
    summary_model: str | None = val(None, string(min_len=1))
    model_overrides: TtsModelOverridesConfig = sub(TtsModelOverridesConfig)
    elevenlabs: ElevenLabsTtsConfig = sub(ElevenLabsTtsConfig)
    openai: OpenAITtsConfig = sub(OpenAITtsConfig)
    edge: EdgeTtsConfig = sub(EdgeTtsConfig)
    prefs_path: Path | None = val(None, file_path())
    max_text_length: int = val(4096, integer(minimum=1))
    timeout_ms: int = val(30000, integer(minimum=1000, maximum=120000))


def deep_merge(base: Any, override: Any) -> Any:
    """``override`` over ``base``: objects merge key by key, anything else replaces.

    Prototype-pollution keys are dropped at every level of both sides, silently, as the
    reference does.
    """
    if not isinstance(override, Mapping):
        return _clean(override)
    if not isinstance(base, Mapping):
        return _clean(override)
    merged: dict[str, Any] = {k: _clean(v) for k, v in base.items() if k not in _BLOCKED_KEYS}
    for key, value in override.items():
        if key in _BLOCKED_KEYS:
            continue
        merged[key] = deep_merge(merged[key], value) if key in merged else _clean(value)
    return merged


def _clean(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items() if k not in _BLOCKED_KEYS}
    return value


def merged_path_renderer(
    override: Any, core_prefix: tuple[PathPart, ...], override_prefix: tuple[PathPart, ...], join: Render
) -> Render:
    """Names a merged TTS value by the file location it came from (the override wins)."""

    def render(path: tuple[PathPart, ...]) -> str:
        node = override
        for part in path:
            if not isinstance(node, Mapping) or part not in node:
                return join((*core_prefix, *path))
            node = node[part]
        return join((*override_prefix, *path))

    return render
