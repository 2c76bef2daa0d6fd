"""TTS: core messages.tts deep-merged with the plugin override, read strictly, errors at their source."""

from __future__ import annotations

from typing import Any

import pytest

from voicecall_server.config import ConfigError, config_from_mapping
from voicecall_server.config_tts import deep_merge

ENV = {"HOME": "/home/tester"}
P = "plugins.entries.voice-call.config"
EDGE_WARNING = "edge TTS cannot produce telephony audio; calls use the provider's own voice"


def whole(core: Any = None, override: Any = None) -> dict[str, Any]:
    plugin: dict[str, Any] = {} if override is None else {"tts": override}
    raw: dict[str, Any] = {"plugins": {"entries": {"voice-call": {"config": plugin}}}}
    if core is not None:
        raw["messages"] = {"tts": core}
    return raw


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(raw, ENV)
    return info.value.errors


@pytest.mark.parametrize(
    ("base", "override", "expected"),
    [
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"o": {"x": 1, "y": 2}}, {"o": {"y": 3}}, {"o": {"x": 1, "y": 3}}),
        ({"o": {"deep": {"x": 1}}}, {"o": {"deep": {"z": 2}}}, {"o": {"deep": {"x": 1, "z": 2}}}),
        ({"l": [1, 2, 3]}, {"l": [9]}, {"l": [9]}),
        ({"o": {"x": 1}}, {"o": "scalar"}, {"o": "scalar"}),
        ({"o": "scalar"}, {"o": {"x": 1}}, {"o": {"x": 1}}),
        ({"a": 1}, {"a": None}, {"a": None}),
        ({"a": 1}, {"__proto__": {"polluted": True}}, {"a": 1}),
        ({"o": {"x": 1}}, {"o": {"constructor": {"p": 1}, "prototype": 2}}, {"o": {"x": 1}}),
        ({"__proto__": {"p": 1}, "o": {"prototype": {"p": 1}, "x": 1}}, {}, {"o": {"x": 1}}),
        ({}, {"o": {"inner": {"__proto__": 1, "k": 2}}}, {"o": {"inner": {"k": 2}}}),
    ],
)
def test_deep_merge_table(base: dict[str, Any], override: dict[str, Any], expected: dict[str, Any]) -> None:
    assert deep_merge(base, override) == expected


def test_deep_merge_does_not_mutate_its_inputs() -> None:
    base = {"o": {"x": 1}}
    override = {"o": {"y": 2}}
    deep_merge(base, override)
    assert (base, override) == ({"o": {"x": 1}}, {"o": {"y": 2}})


def test_core_tts_and_plugin_override_merge_key_by_key() -> None:
    core = {
        "provider": "openai",
        "openai": {"model": "tts-1", "voice": "nova"},
        "elevenlabs": {"voiceSettings": {"stability": 0.2, "speed": 1.5}},
        "timeoutMs": 10000,
    }
    override = {"openai": {"voice": "shimmer"}, "elevenlabs": {"voiceSettings": {"speed": 0.9}}}
    tts = config_from_mapping(whole(core, override), ENV).tts
    assert (tts.provider, tts.openai.model, tts.openai.voice, tts.timeout_ms) == (
        "openai",
        "tts-1",
        "shimmer",
        10000,
    )
    assert (tts.elevenlabs.voice_settings.stability, tts.elevenlabs.voice_settings.speed) == (0.2, 0.9)


def test_prototype_keys_are_skipped_silently_in_file_tts() -> None:
    core = {"__proto__": {"provider": "edge"}, "openai": {"constructor": 1, "voice": "nova"}}
    override = {"prototype": {"x": 1}, "elevenlabs": {"voiceSettings": {"__proto__": {"speed": 9}}}}
    config = config_from_mapping(whole(core, override), ENV)
    assert (config.tts.provider, config.tts.openai.voice) == ("openai", "nova")
    assert config.tts.elevenlabs.voice_settings.speed == 1.0
    assert config.warnings == ()


def test_invalid_core_value_is_named_by_its_core_path() -> None:
    assert errors_of(whole({"elevenlabs": {"voiceSettings": {"speed": 9}}})) == [
        "messages.tts.elevenlabs.voiceSettings.speed: expected a number 0.5..2, got 9"
    ]


def test_invalid_override_value_is_named_by_its_plugin_path() -> None:
    core = {"elevenlabs": {"voiceSettings": {"speed": 1.0}}}
    assert errors_of(whole(core, {"elevenlabs": {"voiceSettings": {"speed": 9}}})) == [
        f"{P}.tts.elevenlabs.voiceSettings.speed: expected a number 0.5..2, got 9"
    ]


def test_unknown_tts_keys_are_named_where_they_were_written() -> None:
    errors = errors_of(whole({"openai": {"voise": "x"}}, {"openai": {"voice": "y"}, "timeoutMS": 1}))
    assert errors == [
        f"{P}.tts: unknown key 'timeoutMS' (did you mean 'timeoutMs'?)",
        "messages.tts.openai: unknown key 'voise' (did you mean 'voice'?)",
    ]


def test_bare_config_tts_errors_use_the_short_path() -> None:
    assert errors_of({"tts": {"timeoutMs": 500}}) == [
        "tts.timeoutMs: expected an integer 1000..120000, got 500"
    ]


def test_bare_config_has_no_messages_section() -> None:
    assert errors_of({"messages": {"tts": {}}}) == [
        "unknown top-level key 'messages' (core TTS is read from messages.tts only in a whole OpenClaw file; here, use tts)"
    ]


def test_tts_and_core_tts_must_be_objects() -> None:
    assert errors_of(whole("openai", ["x"])) == [
        "messages.tts: expected an object, got 'openai'",
        f"{P}.tts: expected an object, got a list",
    ]


def test_every_tts_key_parses() -> None:
    override = {
        "auto": "tagged",
        "enabled": True,
        "mode": "all",
        "provider": "elevenlabs",
        "summaryModel": "openai/gpt-4.1-mini",
        "modelOverrides": {"enabled": False, "allowSeed": False, "allowProvider": True},
        "elevenlabs": {
            "apiKey": "el-key",
            "baseUrl": "http://127.0.0.1:8111",
            "voiceId": "v1",
            "modelId": "eleven_flash_v2_5",
            "seed": 4294967295,
            "applyTextNormalization": "on",
            "languageCode": "de",
            "voiceSettings": {
                "stability": 1,
                "similarityBoost": 0,
                "style": 0.3,
                "useSpeakerBoost": False,
                "speed": 2,
            },
        },
        "openai": {"apiKey": "sk", "model": "tts-1", "voice": "echo", "baseUrl": "http://127.0.0.1:8222/v1"},
        "edge": {
            "enabled": False,
            "voice": "v",
            "lang": "de-DE",
            "outputFormat": "f",
            "pitch": "-5%",
            "rate": "+10%",
            "volume": "+0%",
            "saveSubtitles": True,
            "proxy": "http://proxy:3128",
            "timeoutMs": 1000,
        },
        "prefsPath": "~/tts.json",
        "maxTextLength": 1,
        "timeoutMs": 120000,
    }
    tts = config_from_mapping({"tts": override}, ENV).tts
    assert (tts.auto, tts.enabled, tts.mode, tts.summary_model) == (
        "tagged",
        True,
        "all",
        "openai/gpt-4.1-mini",
    )
    assert (
        tts.model_overrides.enabled,
        tts.model_overrides.allow_provider,
        tts.model_overrides.allow_text,
    ) == (False, True, True)
    assert (
        tts.elevenlabs.seed,
        tts.elevenlabs.apply_text_normalization,
        tts.elevenlabs.voice_settings.speed,
    ) == (4294967295, "on", 2.0)
    assert (tts.openai.base_url, tts.edge.proxy, tts.edge.timeout_ms, tts.max_text_length) == (
        "http://127.0.0.1:8222/v1",
        "http://proxy:3128",
        1000,
        1,
    )
    assert tts.prefs_path is not None
    assert tts.prefs_path.name == "tts.json"


@pytest.mark.parametrize(
    ("override", "env", "provider"),
    [
        ({}, {}, "openai"),
        ({"elevenlabs": {"apiKey": "el"}}, {}, "elevenlabs"),
        ({"elevenlabs": {"apiKey": "el"}}, {"OPENAI_API_KEY": "sk"}, "openai"),
        ({"provider": "elevenlabs"}, {"OPENAI_API_KEY": "sk"}, "elevenlabs"),
    ],
)
def test_unset_tts_provider_is_resolved_to_a_telephony_capable_one(
    override: dict[str, Any], env: dict[str, str], provider: str
) -> None:
    config = config_from_mapping({"tts": override}, {**ENV, **env})
    assert config.tts.provider == provider
    assert EDGE_WARNING not in config.warnings


def test_edge_provider_adds_a_warning() -> None:
    config = config_from_mapping(whole({"provider": "edge"}), ENV)
    assert config.tts.provider == "edge"
    assert EDGE_WARNING in config.warnings


def test_tts_secrets_are_not_echoed_in_type_errors() -> None:
    errors = errors_of(
        {"tts": {"elevenlabs": {"apiKey": 123456789}}, "openai": {"apiKey": ["sk-secret-in-list"]}}
    )
    assert sorted(errors) == [
        "openai.apiKey: expected a string, got a list",
        "tts.elevenlabs.apiKey: expected a string, got a number",
    ]
    assert "123456789" not in "\n".join(errors)
