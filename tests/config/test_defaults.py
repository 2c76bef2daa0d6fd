"""The default config: every key, its value, and the ways to end up with no file at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voicecall_server.config import Config, config_from_mapping, load_config, redacted

HOME = "/home/tester"
ENV = {"HOME": HOME}

# Every leaf of the effective default config (camelCase path -> value), as redacted() shows it.
DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "provider": "mock",
    "telnyx.apiKey": None,
    "telnyx.connectionId": None,
    "telnyx.publicKey": None,
    "telnyx.baseUrl": None,
    "telnyx.voice": "female",
    "telnyx.language": "en-US",
    "twilio.accountSid": None,
    "twilio.authToken": None,
    "twilio.region": "us1",
    "twilio.edge": None,
    "twilio.baseUrl": None,
    "plivo.authId": None,
    "plivo.authToken": None,
    "plivo.baseUrl": None,
    "fromNumber": "+15550000000",
    "toNumber": None,
    "inboundPolicy": "disabled",
    "allowFrom": [],
    "inboundGreeting": None,
    "outbound.defaultMode": "notify",
    "outbound.notifyHangupDelaySec": 3,
    "outbound.machineDetection": "off",
    "outbound.allowTo": [],
    "outbound.denyTo": [],
    "outbound.callingHours": None,
    "outbound.maxCallsPerMinute": 0,
    "maxDurationSeconds": 300,
    "staleCallReaperSeconds": 120,
    "silenceTimeoutMs": 800,
    "transcriptTimeoutMs": 180000,
    "ringTimeoutMs": 30000,
    "maxConcurrentCalls": 1,
    "serve.port": 3334,
    "serve.bind": "127.0.0.1",
    "serve.path": "/voice/webhook",
    "tailscale.mode": "off",
    "tailscale.path": "/voice/webhook",
    "tunnel.provider": "none",
    "tunnel.ngrokAuthToken": None,
    "tunnel.ngrokDomain": None,
    "tunnel.allowNgrokFreeTierLoopbackBypass": False,
    "webhookSecurity.allowedHosts": [],
    "webhookSecurity.trustForwardingHeaders": False,
    "webhookSecurity.trustedProxyIPs": [],
    "streaming.enabled": False,
    "streaming.sttProvider": "openai-realtime",
    "streaming.openaiApiKey": None,
    "streaming.openaiBaseUrl": None,
    "streaming.sttModel": "gpt-4o-transcribe",
    "streaming.silenceDurationMs": 800,
    "streaming.vadThreshold": 0.5,
    "streaming.streamPath": "/voice/stream",
    "streaming.preStartTimeoutMs": 5000,
    "streaming.maxPendingConnections": 32,
    "streaming.maxPendingConnectionsPerIp": 4,
    "streaming.maxConnections": 128,
    "streaming.maxFrameBytes": 65536,
    "streaming.maxBufferedBytes": 1048576,
    "publicUrl": None,
    "skipSignatureVerification": False,
    "stt.provider": "openai",
    "stt.model": "whisper-1",
    "tts.auto": "off",
    "tts.enabled": False,
    "tts.mode": "final",
    "tts.provider": "openai",
    "tts.summaryModel": None,
    "tts.modelOverrides.enabled": True,
    "tts.modelOverrides.allowText": True,
    "tts.modelOverrides.allowProvider": False,
    "tts.modelOverrides.allowVoice": True,
    "tts.modelOverrides.allowModelId": True,
    "tts.modelOverrides.allowVoiceSettings": True,
    "tts.modelOverrides.allowNormalization": True,
    "tts.modelOverrides.allowSeed": True,
    "tts.elevenlabs.apiKey": None,
    "tts.elevenlabs.baseUrl": "https://api.elevenlabs.io",
    "tts.elevenlabs.voiceId": "pMsXgVXv3BLzUgSXRplE",
    "tts.elevenlabs.modelId": "eleven_multilingual_v2",
    "tts.elevenlabs.seed": None,
    "tts.elevenlabs.applyTextNormalization": None,
    "tts.elevenlabs.languageCode": None,
    "tts.elevenlabs.voiceSettings.stability": 0.5,
    "tts.elevenlabs.voiceSettings.similarityBoost": 0.75,
    "tts.elevenlabs.voiceSettings.style": 0.0,
    "tts.elevenlabs.voiceSettings.useSpeakerBoost": True,
    "tts.elevenlabs.voiceSettings.speed": 1.0,
    "tts.openai.apiKey": None,
    "tts.openai.model": "gpt-4o-mini-tts",
    "tts.openai.voice": "alloy",
    "tts.openai.baseUrl": None,
    "tts.edge.enabled": True,
    "tts.edge.voice": "en-US-MichelleNeural",
    "tts.edge.lang": "en-US",
    "tts.edge.outputFormat": "audio-24khz-48kbitrate-mono-mp3",
    "tts.edge.pitch": None,
    "tts.edge.rate": None,
    "tts.edge.volume": None,
    "tts.edge.saveSubtitles": False,
    "tts.edge.proxy": None,
    "tts.edge.timeoutMs": None,
    "tts.prefsPath": None,
    "tts.maxTextLength": 4096,
    "tts.timeoutMs": 30000,
    "store": f"{HOME}/.local/share/voicecall",
    "responseModel": "openai/gpt-4o-mini",
    "responseSystemPrompt": None,
    "responseTimeoutMs": 30000,
    "grpc.bind": "127.0.0.1",
    "grpc.port": 50051,
    "grpc.authToken": None,
    "grpc.tls": None,
    "grpc.unixSocket": None,
    "mock.answerAfterMs": 300,
    "mock.outcome": "answered",
    "mock.callerReplies": [],
    "mock.replyAfterMs": 500,
    "mock.hangupAfterMs": 0,
    "openai.apiKey": None,
    "openai.baseUrl": None,
    "retention.endedCallDays": 30,
    "logging.level": "info",
    "logging.format": "text",
    "metrics.enabled": True,
    "metrics.authToken": None,
}


def leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.fixture(scope="module")
def default_leaves() -> dict[str, Any]:
    return leaves(redacted(config_from_mapping({}, ENV)))


def test_default_config_has_exactly_the_documented_keys(default_leaves: dict[str, Any]) -> None:
    assert sorted(default_leaves) == sorted(DEFAULTS)


@pytest.mark.parametrize(("path", "expected"), sorted(DEFAULTS.items()))
def test_default_value(default_leaves: dict[str, Any], path: str, expected: Any) -> None:
    assert default_leaves[path] == expected
    assert type(default_leaves[path]) is type(expected)


def test_default_config_attributes_are_snake_case_and_typed() -> None:
    config = config_from_mapping({}, ENV)
    assert isinstance(config, Config)
    assert config.store == Path(HOME, ".local/share/voicecall")
    assert config.warnings == ()
    assert config.webhook_security.trusted_proxy_ips == ()
    assert config.streaming.max_pending_connections_per_ip == 4
    assert config.tts.elevenlabs.voice_settings.similarity_boost == 0.75


def test_config_is_frozen() -> None:
    config = config_from_mapping({}, ENV)
    with pytest.raises(AttributeError):
        config.provider = "twilio"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.serve.port = 1  # type: ignore[misc]


def test_no_path_and_no_env_var_is_the_default_config() -> None:
    assert load_config(None, ENV) == config_from_mapping({}, ENV)


def test_empty_voicecall_config_var_counts_as_unset() -> None:
    assert load_config(None, {**ENV, "VOICECALL_CONFIG": ""}).provider == "mock"


def test_voicecall_config_var_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "vc.json5"
    file.write_text("{provider: 'mock', serve: {port: 4000}}")
    assert load_config(None, {**ENV, "VOICECALL_CONFIG": str(file)}).serve.port == 4000


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"VOICECALL_STORE": "/srv/vc"}, "/srv/vc"),
        ({"VOICECALL_STORE": "~/calls"}, f"{HOME}/calls"),
        ({"XDG_DATA_HOME": "/xdg"}, "/xdg/voicecall"),
        ({"XDG_DATA_HOME": "relative/ignored"}, f"{HOME}/.local/share/voicecall"),
        ({"VOICECALL_STORE": "", "XDG_DATA_HOME": "/xdg"}, "/xdg/voicecall"),
        ({"VOICECALL_STORE": "/srv/vc", "XDG_DATA_HOME": "/xdg"}, "/srv/vc"),
    ],
)
def test_store_default_from_env(env: dict[str, str], expected: str) -> None:
    assert config_from_mapping({}, {**ENV, **env}).store == Path(expected)


def test_store_from_config_expands_home_and_beats_env() -> None:
    config = config_from_mapping({"store": "~/vc-data"}, {**ENV, "VOICECALL_STORE": "/srv/vc"})
    assert config.store == Path(HOME, "vc-data")
