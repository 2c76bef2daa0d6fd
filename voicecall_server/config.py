"""Loading the voicecall configuration: one JSON5 file in the OpenClaw Voice Call plugin's shape.

Public API: :class:`ConfigError`, :func:`load_config`, :func:`config_from_mapping`, :func:`redacted`,
and the frozen dataclasses (:class:`Config` and its sections). Key names, defaults and env fallbacks
follow reference section 1; every object is strict (unknown keys are errors, with a "did you mean"),
and every problem is collected into one ConfigError whose messages name the full path as written
(``plugins.entries.voice-call.config.serve.port`` for a whole OpenClaw file, ``serve.port`` for a
bare plugin config). Secret values never appear in an error message, a repr or :func:`redacted`.

Decisions (beyond the reference):

- File shape: a top-level ``plugins`` key means a whole OpenClaw file: the plugin config is
  ``plugins.entries["voice-call"].config`` (an entry without ``config`` is all defaults; a missing
  entry is an error) and core TTS is ``messages.tts``; every other key of that file, including the
  entry's own ``enabled``, is ignored. Otherwise the file is the bare plugin config. JSON5 duplicate
  keys follow JSON5 (the last wins). No file at all (no path and no $VOICECALL_CONFIG) is the default
  config: enabled, mock provider, loopback binds, default store.
- Quirks kept from 1.1: a non-boolean ``enabled`` means true (a warning names the odd value); a missing
  ``provider`` is ``mock``; ``provider: "log"`` becomes ``mock`` with a warning; legacy ``twilio.from``
  fills ``fromNumber`` when that is absent, with a warning. The later legacy-key rewrites are not done.
- ``null`` is accepted for keys whose default is None (it means unset, so env fallbacks still apply);
  elsewhere it is a type error. Integers may be written as ``3.0``; booleans are never numbers.
- Env fallbacks (1.3), applied only when the key is unset; an empty variable counts as unset:
  TELNYX_API_KEY/CONNECTION_ID/PUBLIC_KEY, TWILIO_ACCOUNT_SID/AUTH_TOKEN, PLIVO_AUTH_ID/AUTH_TOKEN only
  for the selected provider; TWILIO_FROM_NUMBER for ``fromNumber`` only with provider twilio (after
  ``fromNumber`` and ``twilio.from``); NGROK_AUTHTOKEN/NGROK_DOMAIN always; OPENAI_API_KEY and
  OPENAI_BASE_URL for ``openai.apiKey``/``baseUrl``, and the resulting ``openai`` section is the default
  for ``streaming.openaiApiKey``/``openaiBaseUrl`` and ``tts.openai.apiKey``/``baseUrl``. An env value
  that breaks the key's rule is an error naming the variable. ElevenLabs has no env fallback (1.3 has none).
- Validation (1.4) runs only when enabled: ``fromNumber`` is required unless the provider is mock (mock
  then gets +15550000000); telnyx apiKey, connectionId and publicKey (not with skipSignatureVerification);
  twilio accountSid and authToken; plivo authId and authToken (its MA/SA prefix is not enforced).
  E.164 (``^\\+[1-9]\\d{1,14}$``) applies to fromNumber, toNumber, allowFrom entries and twilio.from.
- ``skipSignatureVerification`` (checked whether or not enabled) is refused unless serve.bind is
  loopback (127.0.0.1, ::1, localhost) and there is no publicUrl, no tunnel and tailscale.mode is off;
  VOICECALL_UNSAFE_ALLOW_SKIP_SIGNATURE_VERIFICATION in 1/true/yes/on permits it anyway. When it is on,
  ``warnings`` carries a "SECURITY WARNING: ..." line.
- Ports (``serve.port``, ``grpc.port``) are 0..65535, where 0 asks the OS for a free port (tests).
- Paths (``serve.path``, ``tailscale.path``, ``streaming.streamPath``) must start with '/'; a trailing
  slash is dropped. ``streaming.streamPath`` must differ from ``serve.path``.
- URLs (publicUrl, every ``baseUrl``, ``streaming.openaiBaseUrl``, ``tts.edge.proxy``) must be http(s)
  with a host. A base URL of None means the SDK's default endpoint.
- Streaming: ``streaming.enabled`` is allowed for every provider; with no OpenAI key anywhere it is
  turned off with a warning (as the reference does). ``maxFrameBytes`` 65536 and ``maxBufferedBytes``
  1048576 are added.
- ``staleCallReaperSeconds`` defaults to 120 (unanswered calls only, the later behaviour).
- ``store`` is a directory (``~`` expanded against $HOME of ``env``); default $VOICECALL_STORE, else
  $XDG_DATA_HOME/voicecall (absolute values only, per XDG), else ~/.local/share/voicecall.
- ``responseModel`` must be ``provider/model``; it defaults to ``openai/gpt-4o-mini``.
- TTS: core ``messages.tts`` deep-merged with the plugin ``tts`` (objects key by key, scalars and
  lists replace, ``__proto__``/``prototype``/``constructor`` dropped silently at every level), then
  read strictly; an error names the file location the value came from. An unset ``tts.provider`` is
  ``elevenlabs`` when only an ElevenLabs key is configured, else ``openai`` (core's edge default cannot
  speak on a phone line); an effective ``edge`` adds a warning.
- Sidecar sections: ``grpc`` {bind, port, authToken, tls {certFile, keyFile, clientCaFile} whose files
  must exist, unixSocket}; ``mock`` {answerAfterMs, outcome, callerReplies, replyAfterMs,
  hangupAfterMs (0 = the caller never hangs up)}; ``openai`` {apiKey, baseUrl}; ``retention``
  {endedCallDays, 0 = forever}; ``logging`` {level, format}; ``metrics`` {enabled, authToken};
  ``twilio.baseUrl``/``edge``/``region``, ``telnyx.baseUrl``/``voice``/``language``, ``plivo.baseUrl``;
  ``outbound`` {machineDetection, allowTo, denyTo (E.164 prefixes, optional trailing '*', or '*'),
  callingHours {timeZone (IANA), windows [{days (default all), start HH:MM, end HH:MM or 24:00}]},
  maxCallsPerMinute (0 = off)}.
- Keys of later reference releases (realtime, numbers, agentId, sessionScope) are rejected as not
  supported. ``tunnel.allowNgrokFreeTierLoopbackBypass`` set where it has no effect adds a warning.
- Secrets (``repr=False``, "<redacted>" in :func:`redacted`): twilio.authToken, telnyx.apiKey,
  plivo.authToken, tunnel.ngrokAuthToken, streaming.openaiApiKey, tts.openai.apiKey,
  tts.elevenlabs.apiKey, openai.apiKey, grpc.authToken, metrics.authToken.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import json5

from .config_check import ConfigError, config_fields, key_of
from .config_rules import build_config, env_value
from .config_schema import (
    CallingHoursConfig,
    CallingWindowConfig,
    Config,
    GrpcConfig,
    GrpcTlsConfig,
    LoggingConfig,
    MetricsConfig,
    MockConfig,
    OpenAIConfig,
    OutboundConfig,
    PlivoConfig,
    RetentionConfig,
    ServeConfig,
    StreamingConfig,
    SttConfig,
    TailscaleConfig,
    TelnyxConfig,
    TunnelConfig,
    TwilioConfig,
    WebhookSecurityConfig,
)
from .config_tts import (
    EdgeTtsConfig,
    ElevenLabsTtsConfig,
    ElevenLabsVoiceSettingsConfig,
    OpenAITtsConfig,
    TtsConfig,
    TtsModelOverridesConfig,
)

__all__ = [
    "CallingHoursConfig",
    "CallingWindowConfig",
    "Config",
    "ConfigError",
    "EdgeTtsConfig",
    "ElevenLabsTtsConfig",
    "ElevenLabsVoiceSettingsConfig",
    "GrpcConfig",
    "GrpcTlsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "MockConfig",
    "OpenAIConfig",
    "OpenAITtsConfig",
    "OutboundConfig",
    "PlivoConfig",
    "RetentionConfig",
    "ServeConfig",
    "StreamingConfig",
    "SttConfig",
    "TailscaleConfig",
    "TelnyxConfig",
    "TtsConfig",
    "TtsModelOverridesConfig",
    "TunnelConfig",
    "TwilioConfig",
    "WebhookSecurityConfig",
    "config_from_mapping",
    "load_config",
    "redacted",
]

REDACTED = "<redacted>"
_JSON5_LINE = re.compile(r"^<string>:(\d+) (.*)$", re.DOTALL)


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """The config from ``path`` (else $VOICECALL_CONFIG, else none: the defaults)."""
    if env is None:
        env = os.environ
    if path is None:
        from_env = env_value(env, "VOICECALL_CONFIG")
        if from_env is None:
            return config_from_mapping({}, env)
        path = from_env
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([f"{name}: cannot read the config file: {err.strerror or err}"]) from None
    except UnicodeDecodeError as err:
        raise ConfigError([f"{name}: the config file is not UTF-8 text ({err.reason})"]) from None
    try:
        raw = json5.loads(text)
    except ValueError as err:
        message = str(err)
        match = _JSON5_LINE.match(message)
        if match:
            raise ConfigError([f"{name}:{match.group(1)}: invalid JSON5: {match.group(2)}"]) from None
        raise ConfigError([f"{name}: invalid JSON5: {message}"]) from None
    if not isinstance(raw, Mapping):
        raise ConfigError([f"{name}: the config must be a JSON5 object, got {type(raw).__name__}"])
    return config_from_mapping(raw, env)


def config_from_mapping(raw: Mapping[str, Any], env: Mapping[str, str]) -> Config:
    """The effective config from an already-parsed file (whole OpenClaw file or bare plugin config)."""
    return build_config(raw, env)


def redacted(config: Config) -> dict[str, Any]:
    """The effective config as camelCase JSON-ready data, every secret replaced by "<redacted>"."""
    return _redact(config)


def _redact(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in config_fields(type(obj)):
        value = getattr(obj, f.name)
        if f.metadata.get("secret"):
            out[key_of(f)] = None if value is None else REDACTED
        else:
            out[key_of(f)] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _redact(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
