"""`voicecall setup`: is this config ready for real phone calls? One check per thing a first-time user
gets wrong, each failure with a concrete fix.

Registered with the `voicecall` CLI through the ``voicecall.cli_commands`` entry-point group
(``setup = "voicecall_server.cli_setup:COMMAND"``), so the client package never imports the server.
It reads only the config file and the environment; it does not talk to a running sidecar.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from voicecall_client.cli_base import EXIT_FAILURE, EXIT_OK, Command, CommandContext

if TYPE_CHECKING:
    from voicecall_server.config import Config

PROVIDER_NAMES = {"twilio": "Twilio", "telnyx": "Telnyx", "plivo": "Plivo", "mock": "the mock provider"}
SIGNATURES = {
    "twilio": "HMAC-SHA1 with twilio.authToken",
    "telnyx": "Ed25519 with telnyx.publicKey",
    "plivo": "HMAC-SHA256 (V3) with plivo.authToken",
}
_TWILIO_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_REQUIRED = re.compile(r"^(?P<key>\S+) is required(?: \(or set (?P<env>\w+)\))?$")
_CREDENTIAL_KEYS = ("accountSid", "authToken", "apiKey", "connectionId", "publicKey", "authId")
_EXPOSURE_FIX = (
    "set publicUrl to the public https URL of your webhook (a proxy or tunnel forwarding to {local}), or let the "
    'sidecar expose itself with tunnel.provider "ngrok" or "tailscale-funnel"'
)


@dataclass(frozen=True)
class SetupCheck:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class SetupReport:
    config: str
    provider: str | None
    checks: tuple[SetupCheck, ...]
    warnings: tuple[str, ...] = ()
    loaded: bool = True

    @property
    def ok(self) -> bool:
        return self.loaded and all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "config": self.config,
            "provider": self.provider,
            "loaded": self.loaded,
            "checks": [asdict(c) for c in self.checks],
            "warnings": list(self.warnings),
        }


def run_setup(path: str | None = None, env: Mapping[str, str] | None = None) -> SetupReport:
    """Load the config the way the sidecar would and check it; never raises for a bad config."""
    # Imported here: every `voicecall` run loads this module for its command table, and most runs
    # never need the config machinery.
    from voicecall_server.config import ConfigError, load_config

    env = os.environ if env is None else env
    source = path or env.get("VOICECALL_CONFIG") or "(no config file: built-in defaults)"
    try:
        config = load_config(path, env)
    except ConfigError as err:
        return SetupReport(source, None, tuple(_load_error(e, source) for e in err.errors), loaded=False)
    return SetupReport(source, config.provider, tuple(check_config(config)), config.warnings)


def _load_error(message: str, source: str) -> SetupCheck:
    required = _REQUIRED.match(message)
    key = required.group("key") if required else ""
    if key.endswith("fromNumber"):
        return SetupCheck(
            "fromNumber",
            False,
            message,
            f"set {key} in {source} to a number you rent from your provider, in E.164 (e.g. +15551234567)",
        )
    if required and key.rsplit(".", 1)[-1] in _CREDENTIAL_KEYS:
        env_hint = f" or export {required.group('env')}" if required.group("env") else ""
        return SetupCheck(
            "provider credentials",
            False,
            message,
            f"add {key} to {source}{env_hint} (copy it from your provider's console)",
        )
    if "skipSignatureVerification" in message:
        return SetupCheck(
            "webhook signatures",
            False,
            message,
            "remove skipSignatureVerification: signatures must be verified whenever the webhook is exposed",
        )
    return SetupCheck("config file", False, message, f"correct this in {source}")


def check_config(config: Config) -> list[SetupCheck]:
    """Every check, in the order a first-time user should fix them."""
    return [
        _enabled(config),
        _credentials(config),
        _from_number(config),
        _public_url(config),
        _streaming(config),
        _tts(config),
        _audio_mode(config),
        _signatures(config),
    ]


def _enabled(config: Config) -> SetupCheck:
    if config.enabled:
        return SetupCheck("enabled", True, "the voice-call plugin is enabled")
    return SetupCheck(
        "enabled", False, "enabled is false: the sidecar will not place or take calls", "set enabled: true"
    )


def _credentials(config: Config) -> SetupCheck:
    name = "provider credentials"
    p = config.provider
    if p == "mock":
        return SetupCheck(
            name, True, "none needed: provider is mock (set provider to twilio, telnyx or plivo)"
        )
    if p == "twilio":
        sid = config.twilio.account_sid or ""
        if not _TWILIO_SID.match(sid):
            what = "an API key SID (SK...)" if sid.startswith("SK") else "not an Account SID"
            return SetupCheck(
                name,
                False,
                f"twilio.accountSid is {what}",
                "use the Account SID (AC followed by 32 hex digits) and its auth token from the Twilio console",
            )
        keys = "twilio.accountSid and twilio.authToken"
    elif p == "telnyx":
        keys = "telnyx.apiKey, telnyx.connectionId" + (
            "" if config.skip_signature_verification else " and telnyx.publicKey"
        )
    else:
        keys = "plivo.authId and plivo.authToken"
    return SetupCheck(name, True, f"{keys} set")


def _from_number(config: Config) -> SetupCheck:
    if config.provider == "mock":
        return SetupCheck("fromNumber", True, f"{config.from_number} (the mock provider accepts any number)")
    return SetupCheck(
        "fromNumber", True, f"{config.from_number} (it must be a number you own at {_label(config)})"
    )


def _label(config: Config) -> str:
    return PROVIDER_NAMES[config.provider]


def _local_webhook(config: Config) -> str:
    host = f"[{config.serve.bind}]" if ":" in config.serve.bind else config.serve.bind
    return f"http://{host}:{config.serve.port}{config.serve.path}"


def _public_url(config: Config) -> SetupCheck:
    from voicecall_server.exposure.runtime import exposure_kind
    from voicecall_server.webhook.public_url import is_public_host

    name = "public URL"
    label = _label(config)
    fix = _EXPOSURE_FIX.format(local=_local_webhook(config))
    if config.provider == "mock":
        return SetupCheck(name, True, "not needed: the mock provider sends no webhooks")
    kind = exposure_kind(config)
    if kind == "publicUrl":
        url = config.public_url or ""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if not is_public_host(host):
            return SetupCheck(
                name,
                False,
                f"publicUrl {url} points at {host!r}, a loopback, private or local address {label} cannot reach",
                fix,
            )
        if parts.path in ("", "/"):
            return SetupCheck(
                name,
                False,
                f"publicUrl {url} has no path, so {label} would post to / and get 404",
                f"make publicUrl the full webhook URL, ending in serve.path ({config.serve.path})",
            )
        note = "" if parts.scheme == "https" else " (prefer https: webhooks carry call details)"
        return SetupCheck(name, True, f"publicUrl {url}{note}")
    if kind == "tailscale-serve":
        return SetupCheck(
            name,
            False,
            f"Tailscale serve is reachable only inside your tailnet, not by {label}",
            'use tunnel.provider "tailscale-funnel" (or tailscale.mode "funnel") instead',
        )
    if kind in ("ngrok", "tailscale-funnel"):
        tool = "ngrok" if kind == "ngrok" else "tailscale"
        if shutil.which(tool) is None:
            hint = "https://ngrok.com/download" if tool == "ngrok" else "https://tailscale.com/download"
            return SetupCheck(
                name,
                False,
                f"{kind} is configured but `{tool}` is not on PATH",
                f"install it ({hint}) or {fix}",
            )
        return SetupCheck(name, True, f"from {kind}, started with the sidecar (`{tool}` found)")
    return SetupCheck(
        name, False, f"nothing exposes the webhook: {label} cannot reach {_local_webhook(config)}", fix
    )


def _streaming_key_missing(config: Config) -> bool:
    # The loader turns streaming off (with this warning) when no OpenAI key is found.
    return any("streaming.enabled" in w and "no OpenAI API key" in w for w in config.warnings)


def _streaming(config: Config) -> SetupCheck:
    name = "streaming"
    if _streaming_key_missing(config):
        return SetupCheck(
            name,
            False,
            "streaming.enabled is true but there is no OpenAI API key, so streaming is off",
            "set streaming.openaiApiKey (or openai.apiKey, or export OPENAI_API_KEY), or set streaming.enabled false",
        )
    st = config.streaming
    if not st.enabled:
        return SetupCheck(name, True, "off: the provider's own speech recognition hears the caller")
    if config.provider == "mock":
        return SetupCheck(name, True, "ignored: the mock provider has no media streams")
    return SetupCheck(
        name, True, f"on: {st.stream_path} with OpenAI Realtime transcription ({st.stt_model}), key set"
    )


def _tts(config: Config) -> SetupCheck:
    name = "TTS voice"
    tts = config.tts
    if config.provider == "mock":
        return SetupCheck(name, True, "not used: the mock provider plays no audio")
    if tts.provider == "edge":
        return SetupCheck(
            name,
            False,
            "tts.provider is edge, which cannot produce telephony audio",
            'set tts.provider to "openai" (key: tts.openai.apiKey or OPENAI_API_KEY) or "elevenlabs" '
            "(key: tts.elevenlabs.apiKey)",
        )
    if not config.streaming.enabled:
        return SetupCheck(name, True, f"{_label(config)}'s own voice (TTS is used only with streaming)")
    if tts.provider == "elevenlabs" and not tts.elevenlabs.api_key:
        return SetupCheck(
            name, False, "tts.provider is elevenlabs but no key is set", "set tts.elevenlabs.apiKey"
        )
    if tts.provider == "openai" and not tts.openai.api_key:
        return SetupCheck(
            name,
            False,
            "tts.provider is openai but no key is set",
            "set tts.openai.apiKey (or openai.apiKey, or export OPENAI_API_KEY)",
        )
    return SetupCheck(name, True, f"{tts.provider} on media streams, key set")


def _audio_mode(config: Config) -> SetupCheck:
    # Realtime voice-to-voice (the reference's other mode) is rejected by the loader, so the only
    # choice is streamed audio or the provider's own speech: never two at once.
    if config.streaming.enabled and config.provider != "mock":
        mode = "media streaming (our STT and TTS)"
    else:
        mode = "provider speech (the provider's recognition and voice)"
    return SetupCheck("audio mode", True, f"one mode on: {mode}")


def _signatures(config: Config) -> SetupCheck:
    name = "webhook signatures"
    if config.provider == "mock":
        state = "on" if config.skip_signature_verification else "off"
        return SetupCheck(name, True, f"not used by the mock provider (skipSignatureVerification {state})")
    if config.skip_signature_verification:
        return SetupCheck(
            name,
            False,
            "skipSignatureVerification is on: anyone who can reach the webhook can forge call events",
            "remove skipSignatureVerification (it is for local development only)",
        )
    return SetupCheck(name, True, f"verified: {SIGNATURES[config.provider]}")


# --- the command ------------------------------------------------------------------------------------


def _marks() -> tuple[str, str]:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "✓✗".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "[ok]", "[x]"
    return "✓", "✗"


def format_report(report: SetupReport) -> str:
    good, bad = _marks()
    provider = f" (provider {report.provider})" if report.provider else ""
    lines = [f"voicecall setup: {report.config}{provider}"]
    for check in report.checks:
        lines.append(f"{good if check.ok else bad} {check.name}: {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"    fix: {check.fix}")
    if not report.loaded:
        lines.append("the config does not load; the other checks run once these are fixed")
    lines.extend(f"warning: {w}" for w in report.warnings)
    failed = sum(not c.ok for c in report.checks)
    lines.append("ready for calls" if report.ok else f"{failed} check(s) failed")
    return "\n".join(lines)


def _setup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="the sidecar's JSON5 config (default: $VOICECALL_CONFIG, else the built-in defaults)",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")


async def _setup(ctx: CommandContext) -> int:
    report = run_setup(ctx.args.config)
    if ctx.args.json:
        ctx.out(report.to_json())
    else:
        print(format_report(report), flush=True)
    return EXIT_OK if report.ok else EXIT_FAILURE


COMMAND = Command(
    "setup",
    "check a config is ready for real calls",
    "voicecall setup --config ~/.config/voicecall/voicecall.json5",
    _setup_args,
    _setup,
    description="Loads the sidecar's config as the sidecar would and checks provider credentials, "
    "fromNumber, the public webhook URL, streaming and its OpenAI key, the TTS voice, the audio mode "
    "and webhook signature verification, printing a fix for each failure. Exits 1 if any check fails. "
    "Needs the voicecall server package; it does not contact a running sidecar.",
)
