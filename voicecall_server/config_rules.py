"""From a parsed JSON5 value to the effective Config: file shape, quirks, env fallbacks, validation.

The decisions are documented in ``config.py``; this module applies them in order and collects every
error before failing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config_check import (
    ConfigError,
    Ctx,
    Invalid,
    PathPart,
    camel,
    describe,
    e164,
    expand_home,
    field_named,
    join_path,
    key_of,
    read_fields,
    read_object,
)
from .config_schema import Config, OpenAIConfig, StreamingConfig, TunnelConfig
from .config_tts import TtsConfig, deep_merge, merged_path_renderer

PLUGIN_PREFIX: tuple[PathPart, ...] = ("plugins", "entries", "voice-call", "config")
CORE_TTS_PREFIX: tuple[PathPart, ...] = ("messages", "tts")
LOOPBACK_BINDS = frozenset({"127.0.0.1", "::1", "localhost"})
MOCK_FROM_NUMBER = "+15550000000"
UNSAFE_SKIP_ENV = "VOICECALL_UNSAFE_ALLOW_SKIP_SIGNATURE_VERIFICATION"
_TRUTHY = frozenset({"1", "true", "yes", "on"})

# Keys of later reference releases that this sidecar does not implement: a clearer message than
# "unknown key" for users copying a newer OpenClaw config.
_LATER_KEYS = {k: "not supported by voicecall" for k in ("realtime", "numbers", "agentId", "sessionScope")}
_TOP_LEVEL_HINTS = {
    **_LATER_KEYS,
    "messages": "core TTS is read from messages.tts only in a whole OpenClaw file; here, use tts",
}

# Provider credentials: (section, attribute, env var). Applied only for the selected provider.
_PROVIDER_ENV: dict[str, tuple[tuple[str, str, str], ...]] = {
    "telnyx": (
        ("telnyx", "api_key", "TELNYX_API_KEY"),
        ("telnyx", "connection_id", "TELNYX_CONNECTION_ID"),
        ("telnyx", "public_key", "TELNYX_PUBLIC_KEY"),
    ),
    "twilio": (
        ("twilio", "account_sid", "TWILIO_ACCOUNT_SID"),
        ("twilio", "auth_token", "TWILIO_AUTH_TOKEN"),
    ),
    "plivo": (
        ("plivo", "auth_id", "PLIVO_AUTH_ID"),
        ("plivo", "auth_token", "PLIVO_AUTH_TOKEN"),
    ),
    "mock": (),
}


def env_value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value else None  # an empty variable counts as unset


class Builder:
    """One load: the error list, warnings, and the path renderer for the chosen file shape."""

    def __init__(self, env: Mapping[str, str], prefix: tuple[PathPart, ...]) -> None:
        self.env = env
        self.prefix = prefix
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.failed: set[tuple[PathPart, ...]] = set()
        self.ctx = Ctx(self.render, self.errors, self.failed)

    def render(self, path: tuple[PathPart, ...]) -> str:
        return join_path(self.prefix, path)

    def at(self, dotted: str) -> str:
        return self.render(tuple(dotted.split(".")))

    def path_failed(self, *dotted: str) -> bool:
        return any(tuple(d.split(".")) in self.failed for d in dotted)

    # -- env fallbacks ---------------------------------------------------------------------------
    def fill_from_env(self, obj: Any, section: str, name: str, env_name: str) -> Any:
        """``obj`` with ``name`` taken from ``env_name`` when the file left it unset."""
        if getattr(obj, name) is not None:
            return obj
        raw = env_value(self.env, env_name)
        if raw is None:
            return obj
        f = field_named(type(obj), name)
        key = key_of(f)
        path = (*section.split("."), key) if section else (key,)
        ctx = Ctx(self.render, self.errors, self.failed, path, f" (from {env_name})")
        try:
            value = f.metadata["check"](raw, ctx)
        except Invalid as err:
            ctx.error(str(err))
            return obj
        return dataclasses.replace(obj, **{name: value})


def build_config(raw: Any, env: Mapping[str, str]) -> Config:
    if not isinstance(raw, Mapping):
        raise ConfigError([f"the config must be an object, got {describe(raw)}"])
    if "plugins" in raw:
        b = Builder(env, PLUGIN_PREFIX)
        plugin, core_tts = _split_whole_file(raw, b)
    else:
        b = Builder(env, ())
        plugin, core_tts = raw, None
    plugin = dict(plugin)
    _apply_quirks(plugin, b)
    tts_override = plugin.pop("tts", None)
    kwargs = read_fields(Config, plugin, b.ctx, hints=_TOP_LEVEL_HINTS)
    kwargs["tts"] = _read_tts(core_tts, tts_override, b)
    _apply_env(kwargs, b)
    kwargs["store"] = _store_path(kwargs["store"], env)
    _check_required(kwargs, b)
    _check_skip_signature(kwargs, b)
    _derived(kwargs, b)
    if b.errors:
        raise ConfigError(b.errors)
    kwargs["warnings"] = tuple(b.warnings)
    return Config(**kwargs)


def _split_whole_file(raw: Mapping[str, Any], b: Builder) -> tuple[Mapping[str, Any], Any]:
    node: Any = raw
    for depth, part in enumerate(PLUGIN_PREFIX):
        where = join_path((), PLUGIN_PREFIX[:depth])
        if not isinstance(node, Mapping):
            raise ConfigError([f"{where}: expected an object, got {describe(node)}"])
        if part not in node or node[part] is None:
            if part == "config":
                node = {}  # a voice-call entry without a config: all defaults
                break
            missing = join_path((), PLUGIN_PREFIX[: depth + 1])
            raise ConfigError(
                [
                    f"{missing} is required (this file has a 'plugins' section, so it is read as a whole OpenClaw config)"
                ]
            )
        node = node[part]
    if not isinstance(node, Mapping):
        raise ConfigError([f"{join_path((), PLUGIN_PREFIX)}: expected an object, got {describe(node)}"])
    messages = raw.get("messages")
    core_tts = None
    if messages is not None:
        if not isinstance(messages, Mapping):
            b.errors.append(f"messages: expected an object, got {describe(messages)}")
        else:
            core_tts = messages.get("tts")
    return node, core_tts


def _apply_quirks(plugin: dict[str, Any], b: Builder) -> None:
    enabled = plugin.get("enabled")
    if not isinstance(enabled, bool):
        # Reference quirk: anything but a boolean means enabled.
        if enabled is not None:
            b.warnings.append(
                f"{b.at('enabled')}: expected true or false, got {describe(enabled)}; treated as true"
            )
        plugin["enabled"] = True
    provider = plugin.get("provider")
    if provider is None:
        plugin["provider"] = "mock"
    elif provider == "log":
        plugin["provider"] = "mock"
        b.warnings.append(f"{b.at('provider')}: 'log' is deprecated; use 'mock'")
    twilio = plugin.get("twilio")
    if isinstance(twilio, Mapping) and "from" in twilio:
        twilio = dict(twilio)
        legacy = twilio.pop("from")
        plugin["twilio"] = twilio
        b.warnings.append(f"{b.at('twilio.from')} is deprecated; use {b.at('fromNumber')}")
        ctx = b.ctx.child("twilio").child("from")
        try:
            number = e164()(legacy, ctx)
        except Invalid as err:
            ctx.error(str(err))
            return
        if plugin.get("fromNumber") is None:
            plugin["fromNumber"] = number


def _read_tts(core: Any, override: Any, b: Builder) -> TtsConfig:
    if core is not None and not isinstance(core, Mapping):
        b.errors.append(f"{join_path((), CORE_TTS_PREFIX)}: expected an object, got {describe(core)}")
        core = None
    if override is not None and not isinstance(override, Mapping):
        b.errors.append(f"{b.at('tts')}: expected an object, got {describe(override)}")
        override = None
    merged = deep_merge(core or {}, override or {})
    render = merged_path_renderer(
        override or {}, CORE_TTS_PREFIX, (*b.prefix, "tts"), lambda p: join_path((), p)
    )
    return read_object(TtsConfig, merged, Ctx(render, b.errors, set()))


def _apply_env(kw: dict[str, Any], b: Builder) -> None:
    provider = kw["provider"]
    for section, name, env_name in _PROVIDER_ENV.get(provider, ()):
        kw[section] = b.fill_from_env(kw[section], section, name, env_name)
    if provider == "twilio" and kw["from_number"] is None and not b.path_failed("twilio.from"):
        holder = b.fill_from_env(_FromNumber(None), "", "from_number", "TWILIO_FROM_NUMBER")
        kw["from_number"] = holder.from_number
    tunnel: TunnelConfig = kw["tunnel"]
    tunnel = b.fill_from_env(tunnel, "tunnel", "ngrok_auth_token", "NGROK_AUTHTOKEN")
    kw["tunnel"] = b.fill_from_env(tunnel, "tunnel", "ngrok_domain", "NGROK_DOMAIN")
    openai: OpenAIConfig = b.fill_from_env(kw["openai"], "openai", "api_key", "OPENAI_API_KEY")
    openai = b.fill_from_env(openai, "openai", "base_url", "OPENAI_BASE_URL")
    kw["openai"] = openai
    # The top-level openai section (itself backed by OPENAI_*) is the default for OpenAI STT/TTS.
    streaming: StreamingConfig = kw["streaming"]
    kw["streaming"] = dataclasses.replace(
        streaming,
        openai_api_key=streaming.openai_api_key or openai.api_key,
        openai_base_url=streaming.openai_base_url or openai.base_url,
    )
    tts: TtsConfig = kw["tts"]
    tts_openai = dataclasses.replace(
        tts.openai,
        api_key=tts.openai.api_key or openai.api_key,
        base_url=tts.openai.base_url or openai.base_url,
    )
    kw["tts"] = dataclasses.replace(tts, openai=tts_openai)


@dataclasses.dataclass(frozen=True, slots=True)
class _FromNumber:
    # Lets the env fallback for fromNumber reuse the same checked path as the sections.
    from_number: str | None = dataclasses.field(default=None, metadata={"check": e164(), "key": "fromNumber"})


def _store_path(text: str | None, env: Mapping[str, str]) -> Path:
    home = env_value(env, "HOME")
    if text is not None:
        return expand_home(text, home)
    explicit = env_value(env, "VOICECALL_STORE")
    if explicit is not None:
        return expand_home(explicit, home)
    xdg = env_value(env, "XDG_DATA_HOME")
    if xdg is not None and Path(xdg).is_absolute():  # the XDG spec says to ignore relative values
        return Path(xdg) / "voicecall"
    base = Path(home) if home else Path.home()
    return base / ".local" / "share" / "voicecall"


def _check_required(kw: dict[str, Any], b: Builder) -> None:
    if not kw["enabled"]:
        return
    provider = kw["provider"]
    if kw["from_number"] is None:
        if provider == "mock":
            kw["from_number"] = MOCK_FROM_NUMBER
        elif not b.path_failed("fromNumber", "twilio.from"):
            hint = " (or set TWILIO_FROM_NUMBER)" if provider == "twilio" else ""
            b.errors.append(f"{b.at('fromNumber')} is required{hint}")
    for section, name, env_name in _PROVIDER_ENV.get(provider, ()):
        if name == "public_key" and kw["skip_signature_verification"]:
            continue
        dotted = f"{section}.{camel(name)}"
        if getattr(kw[section], name) is None and not b.path_failed(dotted, section):
            b.errors.append(f"{b.at(dotted)} is required (or set {env_name})")


def _check_skip_signature(kw: dict[str, Any], b: Builder) -> None:
    if not kw["skip_signature_verification"]:
        return
    reasons = []
    if kw["serve"].bind not in LOOPBACK_BINDS:
        reasons.append(f"{b.at('serve.bind')} is {kw['serve'].bind!r}, not loopback")
    if kw["public_url"] is not None:
        reasons.append(f"{b.at('publicUrl')} is set")
    if kw["tunnel"].provider != "none":
        reasons.append(f"{b.at('tunnel.provider')} is {kw['tunnel'].provider!r}")
    if kw["tailscale"].mode != "off":
        reasons.append(f"{b.at('tailscale.mode')} is {kw['tailscale'].mode!r}")
    override = (b.env.get(UNSAFE_SKIP_ENV) or "").strip().lower() in _TRUTHY
    if reasons and not override:
        b.errors.append(
            f"{b.at('skipSignatureVerification')}: refused because {'; '.join(reasons)}. Skipping webhook "
            f"signature verification is only allowed on a loopback-only setup (set {UNSAFE_SKIP_ENV}=1 to "
            "override at your own risk)"
        )
        return
    exposed = (
        f" and the webhook is exposed ({'; '.join(reasons)}; allowed by {UNSAFE_SKIP_ENV})" if reasons else ""
    )
    b.warnings.append(
        "SECURITY WARNING: skipSignatureVerification is on: provider webhook signatures are NOT verified, "
        f"so anyone who can reach the webhook can forge call events{exposed}. Use this for local development only."
    )


def _derived(kw: dict[str, Any], b: Builder) -> None:
    streaming: StreamingConfig = kw["streaming"]
    if streaming.enabled and streaming.openai_api_key is None:
        b.warnings.append(
            f"{b.at('streaming.enabled')} is true but no OpenAI API key is set (streaming.openaiApiKey, "
            "openai.apiKey or OPENAI_API_KEY); media streaming is disabled"
        )
        kw["streaming"] = dataclasses.replace(streaming, enabled=False)
    if streaming.stream_path == kw["serve"].path and not b.path_failed("streaming.streamPath", "serve.path"):
        b.errors.append(
            f"{b.at('streaming.streamPath')}: must differ from {b.at('serve.path')} ({streaming.stream_path!r})"
        )
    tunnel: TunnelConfig = kw["tunnel"]
    if tunnel.allow_ngrok_free_tier_loopback_bypass and (
        tunnel.provider != "ngrok" or kw["serve"].bind not in LOOPBACK_BINDS
    ):
        b.warnings.append(
            f"{b.at('tunnel.allowNgrokFreeTierLoopbackBypass')} has no effect: it needs tunnel.provider 'ngrok' "
            "and a loopback serve.bind"
        )
    tts: TtsConfig = kw["tts"]
    if tts.provider is None:
        only_elevenlabs = tts.elevenlabs.api_key is not None and tts.openai.api_key is None
        tts = dataclasses.replace(tts, provider="elevenlabs" if only_elevenlabs else "openai")
        kw["tts"] = tts
    if tts.provider == "edge":
        b.warnings.append("edge TTS cannot produce telephony audio; calls use the provider's own voice")
