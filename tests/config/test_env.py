"""Env-var fallbacks (reference 1.3): only when the key is unset, only for the selected provider."""

from __future__ import annotations

from typing import Any

import pytest

from voicecall_server.config import ConfigError, config_from_mapping

HOME = {"HOME": "/home/tester"}

# (provider, env var, attribute path) for every provider credential fallback.
PROVIDER_ENV = [
    ("telnyx", "TELNYX_API_KEY", ("telnyx", "api_key")),
    ("telnyx", "TELNYX_CONNECTION_ID", ("telnyx", "connection_id")),
    ("telnyx", "TELNYX_PUBLIC_KEY", ("telnyx", "public_key")),
    ("twilio", "TWILIO_ACCOUNT_SID", ("twilio", "account_sid")),
    ("twilio", "TWILIO_AUTH_TOKEN", ("twilio", "auth_token")),
    ("plivo", "PLIVO_AUTH_ID", ("plivo", "auth_id")),
    ("plivo", "PLIVO_AUTH_TOKEN", ("plivo", "auth_token")),
]
FULL_ENV = {
    "TELNYX_API_KEY": "telnyx-key",
    "TELNYX_CONNECTION_ID": "conn-1",
    "TELNYX_PUBLIC_KEY": "pubkey",
    "TWILIO_ACCOUNT_SID": "AC123",
    "TWILIO_AUTH_TOKEN": "twilio-token",
    "TWILIO_FROM_NUMBER": "+15550009999",
    "PLIVO_AUTH_ID": "MA123",
    "PLIVO_AUTH_TOKEN": "plivo-token",
}


def attr(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        obj = getattr(obj, part)
    return obj


def load(raw: dict[str, Any], env: dict[str, str]) -> Any:
    return config_from_mapping(raw, {**HOME, **env})


@pytest.mark.parametrize(("provider", "var", "path"), PROVIDER_ENV)
def test_provider_credential_comes_from_env_when_unset(
    provider: str, var: str, path: tuple[str, ...]
) -> None:
    config = load({"provider": provider, "fromNumber": "+15551230000"}, FULL_ENV)
    assert attr(config, path) == FULL_ENV[var]


@pytest.mark.parametrize(("provider", "var", "path"), PROVIDER_ENV)
def test_config_value_beats_env(provider: str, var: str, path: tuple[str, ...]) -> None:
    section, name = path
    key = "".join(p if i == 0 else p.capitalize() for i, p in enumerate(name.split("_")))
    raw = {"provider": provider, "fromNumber": "+15551230000", section: {key: "from-file"}}
    assert attr(load(raw, FULL_ENV), path) == "from-file"


@pytest.mark.parametrize(("provider", "var", "path"), PROVIDER_ENV)
def test_provider_env_applies_only_to_the_selected_provider(
    provider: str, var: str, path: tuple[str, ...]
) -> None:
    others = [p for p in ("telnyx", "twilio", "plivo", "mock") if p != provider]
    for other in others:
        config = load({"provider": other, "fromNumber": "+15551230000"}, FULL_ENV)
        assert attr(config, path) is None, other


def test_twilio_env_is_not_applied_for_telnyx() -> None:
    config = load({"provider": "telnyx", "fromNumber": "+15551230000"}, FULL_ENV)
    assert (config.twilio.account_sid, config.twilio.auth_token) == (None, None)
    # TWILIO_FROM_NUMBER is Twilio's too: Telnyx still needs its own fromNumber.
    with pytest.raises(ConfigError) as info:
        load(
            {"provider": "telnyx"}, {k: v for k, v in FULL_ENV.items() if k.startswith(("TWILIO", "TELNYX"))}
        )
    assert info.value.errors == ["fromNumber is required"]


def test_twilio_from_number_env_fills_from_number_for_twilio() -> None:
    assert load({"provider": "twilio"}, FULL_ENV).from_number == "+15550009999"
    assert load({"provider": "twilio", "fromNumber": "+15551230000"}, FULL_ENV).from_number == "+15551230000"
    assert load({"provider": "mock"}, FULL_ENV).from_number == "+15550000000"


def test_empty_env_var_counts_as_unset() -> None:
    with pytest.raises(ConfigError) as info:
        load(
            {"provider": "twilio", "fromNumber": "+15551230000"},
            {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": ""},
        )
    assert info.value.errors == ["twilio.authToken is required (or set TWILIO_AUTH_TOKEN)"]
    assert load({}, {"NGROK_DOMAIN": "", "OPENAI_API_KEY": ""}).tunnel.ngrok_domain is None


def test_invalid_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load(
            {"provider": "twilio", "twilio": {"accountSid": "AC1", "authToken": "t"}},
            {"TWILIO_FROM_NUMBER": "555"},
        )
    assert info.value.errors == [
        "fromNumber (from TWILIO_FROM_NUMBER): expected an E.164 phone number like +15551234567, got '555'"
    ]
    with pytest.raises(ConfigError) as info:
        load({}, {"OPENAI_BASE_URL": "localhost:8000"})
    assert info.value.errors == [
        "openai.baseUrl (from OPENAI_BASE_URL): expected an http(s) URL with a host, got 'localhost:8000'"
    ]


def test_ngrok_env_always_applies_when_unset() -> None:
    env = {"NGROK_AUTHTOKEN": "ngrok-token", "NGROK_DOMAIN": "me.ngrok.app"}
    tunnel = load({"provider": "mock"}, env).tunnel
    assert (tunnel.ngrok_auth_token, tunnel.ngrok_domain) == ("ngrok-token", "me.ngrok.app")
    tunnel = load({"tunnel": {"ngrokDomain": "file.ngrok.app"}}, env).tunnel
    assert tunnel.ngrok_domain == "file.ngrok.app"


def test_openai_api_key_env_feeds_openai_streaming_and_tts() -> None:
    config = load({}, {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "http://127.0.0.1:9999/v1"})
    assert config.openai.api_key == config.streaming.openai_api_key == config.tts.openai.api_key == "sk-env"
    assert config.openai.base_url == config.streaming.openai_base_url == "http://127.0.0.1:9999/v1"
    assert config.tts.openai.base_url == "http://127.0.0.1:9999/v1"


def test_openai_section_is_the_default_for_stt_and_tts_and_each_can_override() -> None:
    raw = {
        "openai": {"apiKey": "sk-top", "baseUrl": "https://proxy.example/v1"},
        "streaming": {"openaiApiKey": "sk-stt"},
        "tts": {"openai": {"baseUrl": "https://tts.example/v1"}},
    }
    config = load(raw, {"OPENAI_API_KEY": "sk-env"})
    assert (config.openai.api_key, config.streaming.openai_api_key, config.tts.openai.api_key) == (
        "sk-top",
        "sk-stt",
        "sk-top",
    )
    assert (config.streaming.openai_base_url, config.tts.openai.base_url) == (
        "https://proxy.example/v1",
        "https://tts.example/v1",
    )


def test_streaming_without_any_openai_key_is_disabled_with_a_warning() -> None:
    config = load({"streaming": {"enabled": True}}, {})
    assert config.streaming.enabled is False
    assert any("no OpenAI API key" in w for w in config.warnings)
    assert load({"streaming": {"enabled": True}}, {"OPENAI_API_KEY": "sk"}).streaming.enabled is True


@pytest.mark.parametrize("provider", ["twilio", "telnyx", "plivo", "mock"])
def test_streaming_is_allowed_for_every_provider(provider: str) -> None:
    config = load(
        {"provider": provider, "fromNumber": "+15551230000", "streaming": {"enabled": True}},
        {**FULL_ENV, "OPENAI_API_KEY": "sk"},
    )
    assert config.streaming.enabled is True
