"""The typed configuration: frozen dataclasses whose fields declare key, default and rule.

Attribute names are the snake_case of the camelCase keys (``key=`` where that is not mechanical);
secret fields are ``repr=False``. ``config.py`` documents the choices; this module only declares them.
"""

# ruff: noqa: RUF009  # val()/sub()/required() are dataclasses.field() wrappers carrying the key rules

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .config_check import (
    Check,
    Ctx,
    Invalid,
    boolean,
    describe,
    e164,
    enum,
    file_path,
    integer,
    internal,
    list_of,
    number,
    number_pattern,
    objects_of,
    opt_sub,
    port,
    required,
    string,
    sub,
    time_zone,
    url,
    url_path,
    val,
)
from .config_tts import TtsConfig

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ProviderName = Literal["telnyx", "twilio", "plivo", "mock"]
InboundPolicy = Literal["disabled", "allowlist", "pairing", "open"]

_secret = string(min_len=1, secret=True)


@dataclass(frozen=True, slots=True)
class TelnyxConfig:
    api_key: str | None = val(None, _secret, secret=True)
    connection_id: str | None = val(None, string(min_len=1))
    public_key: str | None = val(None, string(min_len=1))
    base_url: str | None = val(None, url())
    voice: str = val("female", string(min_len=1))
    language: str = val("en-US", string(min_len=1))


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    account_sid: str | None = val(None, string(min_len=1))
    auth_token: str | None = val(None, _secret, secret=True)
    region: Literal["us1", "ie1", "au1"] = val("us1", enum("us1", "ie1", "au1"))
    edge: str | None = val(None, string(min_len=1))
    base_url: str | None = val(None, url())


@dataclass(frozen=True, slots=True)
class PlivoConfig:
    auth_id: str | None = val(None, string(min_len=1))
    auth_token: str | None = val(None, _secret, secret=True)
    base_url: str | None = val(None, url())


def _day(value: Any, ctx: Ctx) -> str:
    if not isinstance(value, str) or value.lower() not in DAYS:
        raise Invalid(f"expected one of {', '.join(DAYS)}, got {describe(value)}")
    return value.lower()


def _hhmm(*, allow_24: bool) -> Check:
    pattern = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

    def check(value: Any, ctx: Ctx) -> str:
        if isinstance(value, str) and (pattern.match(value) or (allow_24 and value == "24:00")):
            return value
        limit = "24:00" if allow_24 else "23:59"
        raise Invalid(f"expected a time of day HH:MM (00:00..{limit}), got {describe(value)}")

    return check


@dataclass(frozen=True, slots=True)
class CallingWindowConfig:
    start: str = required(_hhmm(allow_24=False))
    end: str = required(_hhmm(allow_24=True))
    days: tuple[str, ...] = val(DAYS, list_of(_day))


@dataclass(frozen=True, slots=True)
class CallingHoursConfig:
    time_zone: str = required(time_zone())
    windows: tuple[CallingWindowConfig, ...] = required(objects_of(CallingWindowConfig, non_empty=True))


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    default_mode: Literal["notify", "conversation"] = val("notify", enum("notify", "conversation"))
    notify_hangup_delay_sec: int = val(3, integer(minimum=0))
    machine_detection: Literal["off", "detect", "leave-message"] = val(
        "off", enum("off", "detect", "leave-message")
    )
    allow_to: tuple[str, ...] = val((), list_of(number_pattern()))
    deny_to: tuple[str, ...] = val((), list_of(number_pattern()))
    calling_hours: CallingHoursConfig | None = opt_sub(CallingHoursConfig)
    max_calls_per_minute: int = val(0, integer(minimum=0))


@dataclass(frozen=True, slots=True)
class ServeConfig:
    port: int = val(3334, port())
    bind: str = val("127.0.0.1", string(min_len=1))
    path: str = val("/voice/webhook", url_path())


@dataclass(frozen=True, slots=True)
class TailscaleConfig:
    mode: Literal["off", "serve", "funnel"] = val("off", enum("off", "serve", "funnel"))
    path: str = val("/voice/webhook", url_path())


@dataclass(frozen=True, slots=True)
class TunnelConfig:
    provider: Literal["none", "ngrok", "tailscale-serve", "tailscale-funnel"] = val(
        "none", enum("none", "ngrok", "tailscale-serve", "tailscale-funnel")
    )
    ngrok_auth_token: str | None = val(None, _secret, secret=True)
    ngrok_domain: str | None = val(None, string(min_len=1))
    allow_ngrok_free_tier_loopback_bypass: bool = val(False, boolean())


@dataclass(frozen=True, slots=True)
class WebhookSecurityConfig:
    allowed_hosts: tuple[str, ...] = val((), list_of(string(min_len=1)))
    trust_forwarding_headers: bool = val(False, boolean())
    trusted_proxy_ips: tuple[str, ...] = val((), list_of(string(min_len=1)), key="trustedProxyIPs")


@dataclass(frozen=True, slots=True)
class StreamingConfig:
    enabled: bool = val(False, boolean())
    stt_provider: Literal["openai-realtime"] = val("openai-realtime", enum("openai-realtime"))
    openai_api_key: str | None = val(None, _secret, secret=True)
    openai_base_url: str | None = val(None, url())
    stt_model: str = val("gpt-4o-transcribe", string(min_len=1))
    silence_duration_ms: int = val(800, integer(minimum=1))
    vad_threshold: float = val(0.5, number(minimum=0, maximum=1))
    stream_path: str = val("/voice/stream", url_path())
    pre_start_timeout_ms: int = val(5000, integer(minimum=1))
    max_pending_connections: int = val(32, integer(minimum=1))
    max_pending_connections_per_ip: int = val(4, integer(minimum=1))
    max_connections: int = val(128, integer(minimum=1))
    max_frame_bytes: int = val(65536, integer(minimum=1))
    max_buffered_bytes: int = val(1048576, integer(minimum=1))


@dataclass(frozen=True, slots=True)
class SttConfig:
    provider: Literal["openai"] = val("openai", enum("openai"))
    model: str = val("whisper-1", string(min_len=1))


@dataclass(frozen=True, slots=True)
class GrpcTlsConfig:
    cert_file: Path = required(file_path(must_exist=True))
    key_file: Path = required(file_path(must_exist=True))
    client_ca_file: Path | None = val(None, file_path(must_exist=True))


@dataclass(frozen=True, slots=True)
class GrpcConfig:
    bind: str = val("127.0.0.1", string(min_len=1))
    port: int = val(50051, port())
    auth_token: str | None = val(None, _secret, secret=True)
    tls: GrpcTlsConfig | None = opt_sub(GrpcTlsConfig)
    unix_socket: str | None = val(None, string(min_len=1))


@dataclass(frozen=True, slots=True)
class MockConfig:
    answer_after_ms: int = val(300, integer(minimum=0))
    outcome: Literal["answered", "no-answer", "busy", "failed", "voicemail"] = val(
        "answered", enum("answered", "no-answer", "busy", "failed", "voicemail")
    )
    caller_replies: tuple[str, ...] = val((), list_of(string()))
    reply_after_ms: int = val(500, integer(minimum=0))
    hangup_after_ms: int = val(0, integer(minimum=0))


@dataclass(frozen=True, slots=True)
class OpenAIConfig:
    api_key: str | None = val(None, _secret, secret=True)
    base_url: str | None = val(None, url())


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    ended_call_days: int = val(30, integer(minimum=0))


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = val(
        "info", enum("debug", "info", "warning", "error")
    )
    format: Literal["text", "json"] = val("text", enum("text", "json"))


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = val(True, boolean())
    auth_token: str | None = val(None, _secret, secret=True)


def _response_model(value: Any, ctx: Ctx) -> str:
    if isinstance(value, str):
        provider, _, model = value.partition("/")
        if provider and model:
            return value
    raise Invalid(f"expected 'provider/model' (e.g. 'openai/gpt-4o-mini'), got {describe(value)}")


@dataclass(frozen=True, slots=True)
class Config:
    """The effective configuration. Build it with ``load_config`` / ``config_from_mapping``."""

    enabled: bool = val(True, boolean())
    provider: ProviderName = val("mock", enum("telnyx", "twilio", "plivo", "mock"))
    telnyx: TelnyxConfig = sub(TelnyxConfig)
    twilio: TwilioConfig = sub(TwilioConfig)
    plivo: PlivoConfig = sub(PlivoConfig)
    from_number: str | None = val(None, e164())
    to_number: str | None = val(None, e164())
    inbound_policy: InboundPolicy = val("disabled", enum("disabled", "allowlist", "pairing", "open"))
    allow_from: tuple[str, ...] = val((), list_of(e164()))
    inbound_greeting: str | None = val(None, string())
    outbound: OutboundConfig = sub(OutboundConfig)
    max_duration_seconds: int = val(300, integer(minimum=1))
    stale_call_reaper_seconds: int = val(120, integer(minimum=0))
    silence_timeout_ms: int = val(800, integer(minimum=1))
    transcript_timeout_ms: int = val(180000, integer(minimum=1))
    ring_timeout_ms: int = val(30000, integer(minimum=1))
    max_concurrent_calls: int = val(1, integer(minimum=1))
    serve: ServeConfig = sub(ServeConfig)
    tailscale: TailscaleConfig = sub(TailscaleConfig)
    tunnel: TunnelConfig = sub(TunnelConfig)
    webhook_security: WebhookSecurityConfig = sub(WebhookSecurityConfig)
    streaming: StreamingConfig = sub(StreamingConfig)
    public_url: str | None = val(None, url())
    skip_signature_verification: bool = val(False, boolean())
    stt: SttConfig = sub(SttConfig)
    tts: TtsConfig = sub(TtsConfig)
    # Read as text, then resolved to a Path by the loader (``~`` and the per-user default).
    store: Path = val(None, string(min_len=1))
    response_model: str = val("openai/gpt-4o-mini", _response_model)
    response_system_prompt: str | None = val(None, string())
    response_timeout_ms: int = val(30000, integer(minimum=1))
    grpc: GrpcConfig = sub(GrpcConfig)
    mock: MockConfig = sub(MockConfig)
    openai: OpenAIConfig = sub(OpenAIConfig)
    retention: RetentionConfig = sub(RetentionConfig)
    logging: LoggingConfig = sub(LoggingConfig)
    metrics: MetricsConfig = sub(MetricsConfig)
    warnings: tuple[str, ...] = internal(tuple)
