"""`voicecall doctor`: what stands between this config and a provider reaching the sidecar.

Checks, without touching the network: the config loads; the selected provider's credentials are
present; the webhook has a public URL in a form a provider can reach (not loopback or private for
real providers); the media-stream path is exposed when streaming is on; the state of
``skipSignatureVerification``, forwarded-header trust and the gRPC port. Given a captured failing
webhook, it replays the signature check and names the header or setting that broke it
(see :mod:`voicecall_server.doctor_request`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from .config import Config, load_config
from .config_check import ConfigError
from .config_rules import UNSAFE_SKIP_ENV
from .doctor_request import CapturedRequest, RequestDiagnosis, diagnose_request
from .exposure.runtime import exposure_kind, tailscale_paths
from .grpc_security import is_loopback_bind
from .webhook.public_url import is_public_host

Level = Literal["ok", "info", "warning", "error"]
_REAL_PROVIDERS = frozenset({"twilio", "telnyx", "plivo"})
_STREAMING_PROVIDERS = frozenset({"twilio", "telnyx", "plivo"})
# (attribute path, config key, env var) per provider.
_CREDENTIALS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "twilio": (
        ("twilio", "account_sid", "twilio.accountSid", "TWILIO_ACCOUNT_SID"),
        ("twilio", "auth_token", "twilio.authToken", "TWILIO_AUTH_TOKEN"),
    ),
    "telnyx": (
        ("telnyx", "api_key", "telnyx.apiKey", "TELNYX_API_KEY"),
        ("telnyx", "connection_id", "telnyx.connectionId", "TELNYX_CONNECTION_ID"),
        ("telnyx", "public_key", "telnyx.publicKey", "TELNYX_PUBLIC_KEY"),
    ),
    "plivo": (
        ("plivo", "auth_id", "plivo.authId", "PLIVO_AUTH_ID"),
        ("plivo", "auth_token", "plivo.authToken", "PLIVO_AUTH_TOKEN"),
    ),
}


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    message: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"level": self.level, "check": self.check, "message": self.message}
        if self.fix:
            out["fix"] = self.fix
        return out


@dataclass
class DoctorReport:
    config_path: str | None
    findings: list[Finding] = field(default_factory=list)
    request: RequestDiagnosis | None = None

    @property
    def ok(self) -> bool:
        return all(f.level != "error" for f in self.findings)

    def add(self, level: Level, check: str, message: str, fix: str | None = None) -> None:
        self.findings.append(Finding(level, check, message, fix))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "config": self.config_path,
            "findings": [f.to_json() for f in self.findings],
            "request": self.request.to_json() if self.request is not None else None,
        }

    def render(self) -> str:
        marks = {"ok": "ok   ", "info": "info ", "warning": "WARN ", "error": "ERROR"}
        lines = [f"voicecall doctor: config {self.config_path or '(defaults)'}"]
        for f in self.findings:
            lines.append(f"  {marks[f.level]} {f.check}: {f.message}")
            if f.fix:
                lines.append(f"        fix: {f.fix}")
        if self.request is not None:
            r = self.request
            lines.append("  webhook request:")
            lines.append(f"    reconstructed URL: {r.url} (from {r.source})")
            lines.append(f"    forwarded headers trusted: {'yes' if r.trusted_forwarding else 'no'}")
            for variant in r.variants:
                lines.append(f"    also tried: {variant}")
            if r.verified:
                lines.append(f"    signature: valid (checked against {r.checked_url})")
            else:
                lines.append(f"    signature: INVALID ({r.reason or 'rejected'})")
                if r.signed_url:
                    lines.append(f"    the provider signed: {r.signed_url}")
                for cause in r.causes:
                    lines.append(f"    because: {cause}")
                if r.fix:
                    lines.append(f"    fix: {r.fix}")
        lines.append("result: " + ("OK" if self.ok else "problems found"))
        return "\n".join(lines)


def check_config(config: Config, env: Mapping[str, str], report: DoctorReport) -> None:
    for warning in config.warnings:
        report.add("warning", "config", warning)
    _check_credentials(config, report)
    _check_public_url(config, report)
    _check_streaming(config, report)
    _check_signatures(config, env, report)
    _check_grpc(config, report)


def _check_credentials(config: Config, report: DoctorReport) -> None:
    if config.provider == "mock":
        report.add("info", "credentials", "mock provider: no credentials needed (no real calls are placed)")
        return
    missing = []
    for section, attr, key, env_name in _CREDENTIALS.get(config.provider, ()):
        if attr == "public_key" and config.skip_signature_verification:
            continue
        if not getattr(getattr(config, section), attr):
            missing.append(f"{key} (or {env_name})")
    if missing:
        report.add("error", "credentials", f"{config.provider}: missing {', '.join(missing)}")
    else:
        report.add("ok", "credentials", f"{config.provider} credentials are set")
    if not config.from_number:
        report.add("error", "credentials", "fromNumber is not set: outbound calls need a caller id")


def _check_public_url(config: Config, report: DoctorReport) -> None:
    real = config.provider in _REAL_PROVIDERS
    kind = exposure_kind(config)
    if kind == "publicUrl" and config.public_url:
        _check_public_url_form(config, config.public_url, report)
        return
    if kind == "ngrok":
        if not config.tunnel.ngrok_auth_token:
            report.add(
                "warning",
                "publicUrl",
                "tunnel.provider is ngrok but no auth token is set; the agent must already be logged in",
                "set tunnel.ngrokAuthToken or NGROK_AUTHTOKEN",
            )
        else:
            report.add("ok", "publicUrl", "ngrok tunnel at start (URL known once the agent reports it)")
        return
    if kind.startswith("tailscale-"):
        note = "tailnet only: a provider on the internet cannot reach it" if kind.endswith("serve") else ""
        level: Level = "warning" if note and real else "ok"
        report.add(
            level,
            "publicUrl",
            f"Tailscale {kind.removeprefix('tailscale-')} at start{': ' + note if note else ''}",
            "use tailscale funnel (tunnel.provider tailscale-funnel) for a public provider" if note else None,
        )
        return
    if real:
        report.add(
            "error",
            "publicUrl",
            f"no public URL: {config.provider} cannot reach http://{config.serve.bind}:{config.serve.port}"
            f"{config.serve.path}",
            "set publicUrl, tunnel.provider (ngrok, tailscale-funnel) or tailscale.mode funnel",
        )
    else:
        report.add("info", "publicUrl", "no public URL (fine for the mock provider)")


def _check_public_url_form(config: Config, url: str, report: DoctorReport) -> None:
    real = config.provider in _REAL_PROVIDERS
    parts = urlsplit(url)
    host = parts.hostname or ""
    if "@" in parts.netloc:
        report.add(
            "error", "publicUrl", "publicUrl carries user:password@; providers sign the URL without it"
        )
    if not is_public_host(host):
        report.add(
            "error" if real else "info",
            "publicUrl",
            f"publicUrl host {host or '(none)'} is loopback, private or not a public DNS name: "
            f"{config.provider} cannot reach it",
            "set publicUrl to the public https URL of your tunnel or reverse proxy" if real else None,
        )
    elif parts.scheme != "https":
        report.add(
            "warning",
            "publicUrl",
            f"publicUrl is {parts.scheme}://, not https://: webhooks and their signatures travel in clear",
            "terminate TLS at the proxy and use https:// in publicUrl",
        )
    else:
        report.add("ok", "publicUrl", f"publicUrl {url} is public https")
    if (parts.path or "/") != config.serve.path:
        report.add(
            "warning",
            "publicUrl",
            f"publicUrl path {parts.path or '/'} differs from serve.path {config.serve.path}: the listener checks "
            "signatures against the path it receives, so a proxy that rewrites the path breaks them",
            f"make the public path {config.serve.path} (or change serve.path to match)",
        )


def _check_streaming(config: Config, report: DoctorReport) -> None:
    st = config.streaming
    if not st.enabled or config.provider not in _STREAMING_PROVIDERS:
        report.add("info", "streamPath", "media streaming is off")
        return
    kind = exposure_kind(config)
    if kind.startswith("tailscale-"):
        mounted = st.stream_path in tailscale_paths(config)
        report.add(
            "ok" if mounted else "error", "streamPath", f"{st.stream_path} is mounted with the webhook"
        )
    elif kind == "ngrok":
        report.add("ok", "streamPath", f"{st.stream_path} is reachable through the ngrok tunnel")
    elif kind == "publicUrl" and config.public_url:
        parts = urlsplit(config.public_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        report.add(
            "info",
            "streamPath",
            f"media streams connect to {scheme}://{parts.netloc}{st.stream_path}",
            "make sure the proxy forwards that path with WebSocket upgrades (Upgrade/Connection headers)",
        )
    else:
        report.add(
            "error",
            "streamPath",
            f"streaming is on but {st.stream_path} is not exposed",
            "set publicUrl or a tunnel so the provider can open the media WebSocket",
        )


def _check_signatures(config: Config, env: Mapping[str, str], report: DoctorReport) -> None:
    if config.skip_signature_verification:
        exposed = exposure_kind(config) != "none" or not is_loopback_bind(config.serve.bind)
        if exposed:
            report.add(
                "error",
                "signatures",
                f"skipSignatureVerification is on and the webhook is exposed (allowed only by {UNSAFE_SKIP_ENV}): "
                "anyone can forge call events",
                "turn skipSignatureVerification off",
            )
        else:
            report.add(
                "warning",
                "signatures",
                "skipSignatureVerification is on: webhook signatures are not checked (loopback only)",
                "turn it off before exposing the sidecar",
            )
    else:
        report.add("ok", "signatures", "webhook signatures are verified")
    ws = config.webhook_security
    if config.public_url:
        return
    if ws.trust_forwarding_headers and not ws.trusted_proxy_ips:
        report.add(
            "warning",
            "forwarding",
            "webhookSecurity.trustForwardingHeaders is on for every peer: any client can choose the URL "
            "the signature is checked against",
            "set webhookSecurity.trustedProxyIPs to your proxy's address, or set publicUrl",
        )


def _check_grpc(config: Config, report: DoctorReport) -> None:
    g = config.grpc
    if g.unix_socket:
        report.add("ok", "grpc", f"gRPC on the Unix socket {g.unix_socket}")
    elif is_loopback_bind(g.bind):
        report.add("ok", "grpc", f"gRPC on loopback {g.bind}:{g.port}")
    elif g.auth_token or g.tls is not None:
        how = " and ".join(x for x in ("a bearer token" if g.auth_token else "", "TLS" if g.tls else "") if x)
        report.add("ok", "grpc", f"gRPC on {g.bind}:{g.port} protected by {how}")
    else:
        report.add(
            "error",
            "grpc",
            f"gRPC binds {g.bind} with neither grpc.authToken nor grpc.tls: the sidecar refuses to start",
            "set grpc.authToken and/or grpc.tls, or bind to 127.0.0.1",
        )


async def run_doctor(
    config_path: str | None = None,
    request_path: str | None = None,
    env: Mapping[str, str] | None = None,
) -> DoctorReport:
    """Everything ``voicecall doctor`` prints; never raises for a bad config or request file."""
    env = os.environ if env is None else env
    shown = config_path or env.get("VOICECALL_CONFIG") or None
    report = DoctorReport(str(Path(shown)) if shown else None)
    try:
        config = load_config(config_path, env)
    except ConfigError as err:
        for line in err.errors:
            report.add("error", "config", line)
        return report
    report.add("ok", "config", f"loaded (provider {config.provider})")
    check_config(config, env, report)
    if request_path is not None:
        await _check_request(config, request_path, report)
    return report


async def _check_request(config: Config, request_path: str, report: DoctorReport) -> None:
    from .providers_factory import build_provider

    try:
        captured = CapturedRequest.load(request_path)
    except ValueError as err:
        report.add("error", "request", str(err))
        return
    provider = build_provider(config)
    try:
        report.request = diagnose_request(config, provider, captured)
    finally:
        await provider.aclose()
    r = report.request
    if r.verified:
        report.add("ok", "request", f"the captured request's signature verifies against {r.checked_url}")
    else:
        report.add("error", "request", "; ".join(r.causes) or "the signature does not verify", r.fix)


__all__ = ["DoctorReport", "Finding", "check_config", "run_doctor"]
