"""Strictness: unknown keys, wrong types, E.164, required credentials, quirks, all errors at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voicecall_server.config import ConfigError, config_from_mapping

ENV = {"HOME": "/home/tester"}
P = "plugins.entries.voice-call.config"
TWILIO = {
    "provider": "twilio",
    "fromNumber": "+15551230000",
    "twilio": {"accountSid": "AC1", "authToken": "tok"},
}


def errors_of(raw: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(raw, env if env is not None else ENV)
    return info.value.errors


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"prvider": "mock"}, "unknown top-level key 'prvider' (did you mean 'provider'?)"),
        ({"serve": {"prot": 1}}, "serve: unknown key 'prot' (did you mean 'port'?)"),
        (
            {"tts": {"elevenlabs": {"voiceSettings": {"speeed": 1}}}},
            "tts.elevenlabs.voiceSettings: unknown key 'speeed' (did you mean 'speed'?)",
        ),
        (
            {
                "outbound": {
                    "callingHours": {
                        "timeZone": "UTC",
                        "windows": [{"start": "09:00", "end": "17:00", "dayz": ["mon"]}],
                    }
                }
            },
            "outbound.callingHours.windows[0]: unknown key 'dayz' (did you mean 'days'?)",
        ),
        (
            {"webhookSecurity": {"trustedProxyIps": []}},
            "webhookSecurity: unknown key 'trustedProxyIps' (did you mean 'trustedProxyIPs'?)",
        ),
        ({"grpc": {"zzz": 1}}, "grpc: unknown key 'zzz'"),
        ({"realtime": {"enabled": True}}, "unknown top-level key 'realtime' (not supported by voicecall)"),
    ],
)
def test_unknown_keys_at_every_depth(raw: dict[str, Any], expected: str) -> None:
    assert errors_of(raw) == [expected]


def test_unknown_key_in_whole_file_names_the_plugin_path() -> None:
    raw = {"plugins": {"entries": {"voice-call": {"config": {"serve": {"prot": 1}}}}}}
    assert errors_of(raw) == [f"{P}.serve: unknown key 'prot' (did you mean 'port'?)"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"maxDurationSeconds": 0}, "maxDurationSeconds: expected an integer > 0, got 0"),
        ({"maxDurationSeconds": 1.5}, "maxDurationSeconds: expected an integer > 0, got 1.5"),
        ({"maxDurationSeconds": True}, "maxDurationSeconds: expected an integer > 0, got true"),
        ({"staleCallReaperSeconds": -1}, "staleCallReaperSeconds: expected an integer >= 0, got -1"),
        (
            {"inboundPolicy": "closed"},
            "inboundPolicy: expected one of 'disabled', 'allowlist', 'pairing', 'open', got 'closed'",
        ),
        ({"streaming": {"vadThreshold": 1.5}}, "streaming.vadThreshold: expected a number 0..1, got 1.5"),
        ({"streaming": {"enabled": "yes"}}, "streaming.enabled: expected true or false, got 'yes'"),
        ({"serve": 3334}, "serve: expected an object, got 3334"),
        ({"allowFrom": "+15551234567"}, "allowFrom: expected a list, got '+15551234567'"),
        ({"serve": {"path": "voice"}}, "serve.path: expected a URL path starting with '/', got 'voice'"),
        (
            {"publicUrl": "example.com/hook"},
            "publicUrl: expected an http(s) URL with a host, got 'example.com/hook'",
        ),
        (
            {"twilio": {"baseUrl": "ftp://x"}},
            "twilio.baseUrl: expected an http(s) URL with a host, got 'ftp://x'",
        ),
        (
            {"responseModel": "gpt-4o-mini"},
            "responseModel: expected 'provider/model' (e.g. 'openai/gpt-4o-mini'), got 'gpt-4o-mini'",
        ),
        ({"twilio": {"accountSid": ""}}, "twilio.accountSid: must not be empty"),
        (
            {"mock": {"outcome": "busy-ish"}},
            "mock.outcome: expected one of 'answered', 'no-answer', 'busy', 'failed', 'voicemail', got 'busy-ish'",
        ),
        (
            {"outbound": {"denyTo": ["+1555", "1555*"]}},
            "outbound.denyTo[1]: expected an E.164 number or prefix ending in '*' (e.g. +1555*), got '1555*'",
        ),
        (
            {"serve": {"port": None}},
            "serve.port: expected a port number 0..65535 (0 = any free port), got null",
        ),
    ],
)
def test_wrong_types_and_ranges(raw: dict[str, Any], expected: str) -> None:
    assert errors_of(raw) == [expected]


def test_integral_float_is_an_integer_and_port_zero_is_allowed() -> None:
    config = config_from_mapping({"maxDurationSeconds": 60.0, "serve": {"port": 0}, "grpc": {"port": 0}}, ENV)
    assert (config.max_duration_seconds, config.serve.port, config.grpc.port) == (60, 0, 0)


def test_null_means_unset_for_optional_keys() -> None:
    config = config_from_mapping(
        {"toNumber": None, "publicUrl": None, "outbound": {"callingHours": None}}, ENV
    )
    assert (config.to_number, config.public_url, config.outbound.calling_hours) == (None, None, None)


def test_trailing_slash_on_paths_is_normalised() -> None:
    config = config_from_mapping({"serve": {"path": "/hook/"}, "streaming": {"streamPath": "/media//"}}, ENV)
    assert (config.serve.path, config.streaming.stream_path) == ("/hook", "/media")


def test_stream_path_must_differ_from_webhook_path() -> None:
    assert errors_of({"serve": {"path": "/x"}, "streaming": {"streamPath": "/x/"}}) == [
        "streaming.streamPath: must differ from serve.path ('/x')"
    ]


def test_all_errors_are_reported_at_once() -> None:
    errors = errors_of(
        {
            "provider": "twilio",
            "serve": {"port": "abc", "prot": 1},
            "toNumber": "555",
            "tts": {"mode": "some"},
            "mock": {"answerAfterMs": -5},
        }
    )
    assert len(errors) == 8, errors
    joined = "\n".join(errors)
    for fragment in (
        "serve.port:",
        "serve: unknown key 'prot'",
        "toNumber:",
        "tts.mode:",
        "mock.answerAfterMs:",
        "fromNumber is required (or set TWILIO_FROM_NUMBER)",
        "twilio.accountSid is required (or set TWILIO_ACCOUNT_SID)",
        "twilio.authToken is required (or set TWILIO_AUTH_TOKEN)",
    ):
        assert fragment in joined


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("+15551234567", True),
        ("+12", True),
        ("+123456789012345", True),
        ("+1234567890123456", False),
        ("+1", False),
        ("+05551234567", False),
        ("15551234567", False),
        ("+1 555 123 4567", False),
        ("+1555123456a", False),
        ("", False),
    ],
)
def test_e164_rule_on_from_to_and_allow_from(number: str, ok: bool) -> None:
    raw = {"fromNumber": number, "toNumber": number, "allowFrom": ["+15550001111", number]}
    if ok:
        config = config_from_mapping(raw, ENV)
        assert (config.from_number, config.to_number, config.allow_from[1]) == (number, number, number)
    else:
        assert [e.split(":")[0] for e in errors_of(raw)] == ["fromNumber", "toNumber", "allowFrom[1]"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"provider": "telnyx", "fromNumber": "+15551230000"},
            [
                f"{P}.telnyx.apiKey is required (or set TELNYX_API_KEY)",
                f"{P}.telnyx.connectionId is required (or set TELNYX_CONNECTION_ID)",
                f"{P}.telnyx.publicKey is required (or set TELNYX_PUBLIC_KEY)",
            ],
        ),
        (
            {"provider": "plivo"},
            [
                f"{P}.fromNumber is required",
                f"{P}.plivo.authId is required (or set PLIVO_AUTH_ID)",
                f"{P}.plivo.authToken is required (or set PLIVO_AUTH_TOKEN)",
            ],
        ),
        (
            {**TWILIO, "twilio": {"accountSid": "AC1"}},
            [f"{P}.twilio.authToken is required (or set TWILIO_AUTH_TOKEN)"],
        ),
    ],
)
def test_provider_credentials_are_required_when_enabled(raw: dict[str, Any], expected: list[str]) -> None:
    assert errors_of({"plugins": {"entries": {"voice-call": {"config": raw}}}}) == expected


def test_nothing_is_required_when_disabled() -> None:
    config = config_from_mapping({"enabled": False, "provider": "twilio"}, ENV)
    assert (config.enabled, config.provider, config.from_number) == (False, "twilio", None)


def test_telnyx_public_key_not_required_with_skip_signature_verification() -> None:
    raw = {
        "provider": "telnyx",
        "fromNumber": "+15551230000",
        "skipSignatureVerification": True,
        "telnyx": {"apiKey": "k", "connectionId": "c"},
    }
    assert config_from_mapping(raw, ENV).telnyx.public_key is None


@pytest.mark.parametrize(
    ("value", "enabled", "warned"),
    [(True, True, False), (False, False, False), ("no", True, True), (0, True, True), (None, True, False)],
)
def test_enabled_quirk_non_boolean_means_true(value: Any, enabled: bool, warned: bool) -> None:
    config = config_from_mapping({"enabled": value}, ENV)
    assert config.enabled is enabled
    assert any("enabled: expected true or false" in w for w in config.warnings) is warned


def test_provider_log_becomes_mock_with_a_warning() -> None:
    config = config_from_mapping({"provider": "log"}, ENV)
    assert config.provider == "mock"
    assert config.warnings == ("provider: 'log' is deprecated; use 'mock'",)


def test_legacy_twilio_from_fills_from_number_with_a_warning() -> None:
    raw = {
        **TWILIO,
        "fromNumber": None,
        "twilio": {"accountSid": "AC1", "authToken": "t", "from": "+15557654321"},
    }
    config = config_from_mapping(raw, ENV)
    assert config.from_number == "+15557654321"
    assert "twilio.from is deprecated; use fromNumber" in config.warnings


def test_legacy_twilio_from_loses_to_from_number_and_is_checked() -> None:
    raw = {**TWILIO, "twilio": {"accountSid": "AC1", "authToken": "t", "from": "+15557654321"}}
    assert config_from_mapping(raw, ENV).from_number == "+15551230000"
    bad = {**TWILIO, "fromNumber": None, "twilio": {"accountSid": "AC1", "authToken": "t", "from": "555"}}
    assert errors_of(bad) == ["twilio.from: expected an E.164 phone number like +15551234567, got '555'"]


def test_calling_hours_and_outbound_guard_settings() -> None:
    raw = {
        "outbound": {
            "machineDetection": "detect",
            "allowTo": ["+1555*", "+4420"],
            "denyTo": ["*"],
            "maxCallsPerMinute": 5,
            "callingHours": {
                "timeZone": "Europe/Berlin",
                "windows": [
                    {"days": ["Mon", "tue"], "start": "09:00", "end": "24:00"},
                    {"start": "22:00", "end": "02:00"},
                ],
            },
        }
    }
    out = config_from_mapping(raw, ENV).outbound
    assert out.allow_to == ("+1555*", "+4420")
    assert out.deny_to == ("*",)
    assert (out.machine_detection, out.max_calls_per_minute) == ("detect", 5)
    assert out.calling_hours is not None
    assert out.calling_hours.time_zone == "Europe/Berlin"
    first, second = out.calling_hours.windows
    assert (first.days, first.start, first.end) == (("mon", "tue"), "09:00", "24:00")
    assert second.days == ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def test_calling_hours_errors() -> None:
    raw = {
        "outbound": {
            "callingHours": {"timeZone": "Mars/Base", "windows": [{"days": ["mo"], "start": "9:00"}]}
        }
    }
    assert errors_of(raw) == [
        "outbound.callingHours.timeZone: expected an IANA time zone name like 'America/New_York', got 'Mars/Base'",
        "outbound.callingHours.windows[0].start: expected a time of day HH:MM (00:00..23:59), got '9:00'",
        "outbound.callingHours.windows[0].end is required",
        "outbound.callingHours.windows[0].days[0]: expected one of mon, tue, wed, thu, fri, sat, sun, got 'mo'",
    ]
    assert errors_of({"outbound": {"callingHours": {"timeZone": "UTC", "windows": []}}}) == [
        "outbound.callingHours.windows: must list at least one entry"
    ]


def test_grpc_tls_requires_existing_cert_and_key(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("cert")
    key.write_text("key")
    config = config_from_mapping({"grpc": {"tls": {"certFile": str(cert), "keyFile": str(key)}}}, ENV)
    assert config.grpc.tls is not None
    assert config.grpc.tls.key_file == key
    assert errors_of({"grpc": {"tls": {"certFile": str(cert)}}}) == ["grpc.tls.keyFile is required"]
    assert errors_of({"grpc": {"tls": {"certFile": str(cert), "keyFile": str(tmp_path / "x.pem")}}}) == [
        f"grpc.tls.keyFile: file {str(tmp_path / 'x.pem')!r} does not exist"
    ]


def test_sidecar_sections_parse() -> None:
    raw = {
        "grpc": {"bind": "0.0.0.0", "port": 6000, "unixSocket": "/run/vc.sock"},
        "mock": {
            "answerAfterMs": 0,
            "outcome": "voicemail",
            "callerReplies": ["hi", "bye"],
            "hangupAfterMs": 900,
        },
        "retention": {"endedCallDays": 0},
        "logging": {"level": "debug", "format": "json"},
        "metrics": {"enabled": False},
        "twilio": {"region": "ie1", "edge": "dublin"},
        "telnyx": {"voice": "male", "language": "de-DE"},
    }
    c = config_from_mapping(raw, ENV)
    assert (c.grpc.bind, c.grpc.port, c.grpc.unix_socket) == ("0.0.0.0", 6000, "/run/vc.sock")
    assert (c.mock.outcome, c.mock.caller_replies, c.mock.hangup_after_ms) == (
        "voicemail",
        ("hi", "bye"),
        900,
    )
    assert (c.retention.ended_call_days, c.logging.level, c.logging.format) == (0, "debug", "json")
    assert (c.metrics.enabled, c.twilio.region, c.twilio.edge, c.telnyx.voice) == (
        False,
        "ie1",
        "dublin",
        "male",
    )
