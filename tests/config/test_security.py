"""skipSignatureVerification gating, and secrets kept out of redacted(), repr() and error messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from voicecall_server.config import ConfigError, config_from_mapping, redacted

ENV = {"HOME": "/home/tester"}
P = "plugins.entries.voice-call.config"
UNSAFE = "VOICECALL_UNSAFE_ALLOW_SKIP_SIGNATURE_VERIFICATION"
SKIP = {"skipSignatureVerification": True}

SECRETS = {
    "twilio.authToken": "SECRET-twilio-token",
    "telnyx.apiKey": "SECRET-telnyx-key",
    "plivo.authToken": "SECRET-plivo-token",
    "tunnel.ngrokAuthToken": "SECRET-ngrok-token",
    "streaming.openaiApiKey": "SECRET-stt-key",
    "tts.openai.apiKey": "SECRET-tts-openai-key",
    "tts.elevenlabs.apiKey": "SECRET-elevenlabs-key",
    "openai.apiKey": "SECRET-openai-key",
    "grpc.authToken": "SECRET-grpc-token",
    "metrics.authToken": "SECRET-metrics-token",
}


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def errors_of(raw: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(raw, {**ENV, **(env or {})})
    return info.value.errors


@pytest.mark.parametrize("bind", ["127.0.0.1", "::1", "localhost"])
def test_skip_signature_allowed_on_loopback_only_setup_with_security_warning(bind: str) -> None:
    config = config_from_mapping({**SKIP, "serve": {"bind": bind}}, ENV)
    assert config.skip_signature_verification is True
    assert [w for w in config.warnings if w.startswith("SECURITY WARNING: ")] != []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"serve": {"bind": "0.0.0.0"}}, f"{P}.serve.bind is '0.0.0.0', not loopback"),
        ({"publicUrl": "https://voice.example.com/voice/webhook"}, f"{P}.publicUrl is set"),
        ({"tunnel": {"provider": "ngrok"}}, f"{P}.tunnel.provider is 'ngrok'"),
        ({"tailscale": {"mode": "funnel"}}, f"{P}.tailscale.mode is 'funnel'"),
    ],
)
def test_skip_signature_refused_when_exposed(raw: dict[str, Any], reason: str) -> None:
    whole = {"plugins": {"entries": {"voice-call": {"config": {**SKIP, **raw}}}}}
    (error,) = errors_of(whole)
    assert error.startswith(f"{P}.skipSignatureVerification: refused because {reason}.")
    assert UNSAFE in error


def test_skip_signature_refusal_lists_every_reason() -> None:
    (error,) = errors_of({**SKIP, "serve": {"bind": "0.0.0.0"}, "tunnel": {"provider": "tailscale-serve"}})
    assert "serve.bind is '0.0.0.0'" in error
    assert "tunnel.provider is 'tailscale-serve'" in error


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_unsafe_env_override_permits_exposed_skip_with_warning(value: str) -> None:
    config = config_from_mapping({**SKIP, "serve": {"bind": "0.0.0.0"}}, {**ENV, UNSAFE: value})
    assert config.skip_signature_verification is True
    (warning,) = [w for w in config.warnings if w.startswith("SECURITY WARNING: ")]
    assert UNSAFE in warning


@pytest.mark.parametrize("value", ["", "0", "false", "no", "please"])
def test_unsafe_env_override_needs_a_truthy_value(value: str) -> None:
    assert len(errors_of({**SKIP, "publicUrl": "https://x.example/h"}, {UNSAFE: value})) == 1


def test_no_security_warning_without_skip() -> None:
    config = config_from_mapping({"serve": {"bind": "0.0.0.0"}}, ENV)
    assert not any(w.startswith("SECURITY WARNING") for w in config.warnings)


def full_secret_config() -> Any:
    raw = nest(SECRETS) | {"provider": "twilio", "fromNumber": "+15551230000"}
    raw["twilio"]["accountSid"] = "AC123"
    return config_from_mapping(raw, ENV)


def test_redacted_replaces_every_secret_and_keeps_none() -> None:
    config = full_secret_config()
    data = redacted(config)
    for dotted in SECRETS:
        node: Any = data
        for part in dotted.split("."):
            node = node[part]
        assert node == "<redacted>", dotted
    dumped = json.dumps(data)
    assert "SECRET-" not in dumped
    assert redacted(config_from_mapping({}, ENV))["twilio"]["authToken"] is None


def test_redacted_keeps_non_secret_values_in_camel_case() -> None:
    data = redacted(full_secret_config())
    assert data["twilio"]["accountSid"] == "AC123"
    assert data["fromNumber"] == "+15551230000"
    assert "warnings" not in data
    json.dumps(data)  # JSON-ready: paths are strings, tuples are lists


def test_repr_never_shows_a_secret() -> None:
    config = full_secret_config()
    for text in (repr(config), str(config), repr(config.twilio), repr(config.tts.elevenlabs)):
        assert "SECRET-" not in text
    assert config.twilio.auth_token == "SECRET-twilio-token"


def test_secret_from_env_is_redacted_too() -> None:
    config = config_from_mapping(
        {"provider": "twilio", "fromNumber": "+15551230000"},
        {
            **ENV,
            "TWILIO_ACCOUNT_SID": "AC1",
            "TWILIO_AUTH_TOKEN": "SECRET-env-token",
            "OPENAI_API_KEY": "SECRET-sk",
        },
    )
    assert "SECRET-" not in json.dumps(redacted(config)) + repr(config)


def test_error_messages_never_contain_secret_values() -> None:
    raw = {
        "twilio": {"authToken": 424242424242},
        "grpc": {"authToken": {"nested": "SECRET-in-object"}},
        "metrics": {"authToken": ""},
        "tunnel": {"ngrokAuthToken": True},
    }
    errors = errors_of(raw)
    assert len(errors) == 4
    text = "\n".join(errors)
    assert "424242424242" not in text
    assert "SECRET-" not in text


def test_invalid_url_with_credentials_is_not_echoed() -> None:
    (error,) = errors_of({"publicUrl": "ftp://user:SECRET-pw@example.com/hook"})
    assert error == "publicUrl: expected an http(s) URL with a host, got a URL with credentials"


@pytest.mark.parametrize(
    ("raw", "warned"),
    [
        ({"tunnel": {"provider": "ngrok", "allowNgrokFreeTierLoopbackBypass": True}}, False),
        ({"tunnel": {"allowNgrokFreeTierLoopbackBypass": True}}, True),
        (
            {
                "tunnel": {"provider": "ngrok", "allowNgrokFreeTierLoopbackBypass": True},
                "serve": {"bind": "0.0.0.0"},
            },
            True,
        ),
    ],
)
def test_ngrok_bypass_flag_without_effect_is_flagged(raw: dict[str, Any], warned: bool) -> None:
    config = config_from_mapping(raw, ENV)
    assert config.tunnel.allow_ngrok_free_tier_loopback_bypass is True
    assert any("allowNgrokFreeTierLoopbackBypass has no effect" in w for w in config.warnings) is warned
