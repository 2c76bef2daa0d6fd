"""Replays a captured webhook through the configured verifier and says why its signature failed.

The captured request is JSON: ``{method, url, headers, body, remote}`` (``bodyBase64`` instead of
``body`` for binary bodies; optional ``publicUrl`` for the URL the sidecar was serving when the
request arrived, e.g. the ngrok URL, which the config alone does not know). ``url`` is the URL the
listener saw (scheme, host and port of the listener, the path and query the provider called).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from providers.base import Provider, Verification, WebhookRequest

from .webhook.public_url import ForwardingPolicy, ReconstructedUrl, clean_host, reconstruct

if TYPE_CHECKING:
    from .config import Config

# Headers that can decide the public URL, as a user would spell them.
FORWARDING_HEADERS = (
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "Forwarded",
    "X-Original-Host",
    "Ngrok-Forwarded-Host",
)


@dataclass(frozen=True)
class CapturedRequest:
    method: str
    url: str
    headers: dict[str, str] = field(repr=False)  # carries signatures
    body: bytes = field(repr=False)
    remote: str = ""
    public_url: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> CapturedRequest:
        if not isinstance(data, Mapping):
            raise ValueError("the request file must hold a JSON object {method, url, headers, body, remote}")
        url = data.get("url")
        if not isinstance(url, str) or not url:
            raise ValueError('the request file needs "url" (the URL the listener saw)')
        headers = data.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
            raise ValueError('"headers" must be an object of strings')
        if "bodyBase64" in data:
            try:
                body = base64.b64decode(str(data["bodyBase64"]), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError('"bodyBase64" is not base64') from None
        else:
            raw = data.get("body") or ""
            body = raw.encode() if isinstance(raw, str) else json.dumps(raw, separators=(",", ":")).encode()
        public = data.get("publicUrl")
        return cls(
            method=str(data.get("method") or "POST").upper(),
            url=url,
            headers={str(k): str(v) for k, v in headers.items()},
            body=body,
            remote=str(data.get("remote") or ""),
            public_url=public if isinstance(public, str) and public else None,
        )

    @classmethod
    def load(cls, path: str | Path) -> CapturedRequest:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ValueError(f"{path}: cannot read the request file: {err.strerror or err}") from None
        try:
            return cls.from_json(json.loads(text))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON: {err}") from None

    def lower_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}


@dataclass
class RequestDiagnosis:
    url: str
    source: str
    trusted_forwarding: bool
    variants: list[str]
    verified: bool
    reason: str
    checked_url: str
    causes: list[str]
    """Why the signature failed, in the user's terms (header or setting named)."""
    fix: str | None = None
    signed_url: str | None = None
    """The URL the signature does verify against, when one of the what-ifs found it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "source": self.source,
            "trustedForwarding": self.trusted_forwarding,
            "variants": self.variants,
            "verified": self.verified,
            "reason": self.reason,
            "checkedUrl": self.checked_url,
            "signedUrl": self.signed_url,
            "causes": self.causes,
            "fix": self.fix,
        }


def policy_for(config: Config) -> ForwardingPolicy:
    ws = config.webhook_security
    return ForwardingPolicy.from_settings(
        allowed_hosts=ws.allowed_hosts,
        trust_forwarding_headers=ws.trust_forwarding_headers,
        trusted_proxy_ips=ws.trusted_proxy_ips,
        allow_ngrok_free_tier_loopback_bypass=config.tunnel.allow_ngrok_free_tier_loopback_bypass,
        tunnel_provider=config.tunnel.provider,
        serve_bind=config.serve.bind,
    )


def _rebuild(captured: CapturedRequest, policy: ForwardingPolicy, public_url: str | None) -> ReconstructedUrl:
    parts = urlsplit(captured.url)
    headers = captured.lower_headers()
    path_qs = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return reconstruct(
        policy=policy,
        public_url=public_url,
        scheme=parts.scheme or "http",
        host_header=headers.get("host", parts.netloc or None),
        headers=headers,
        remote_ip=captured.remote,
        path_qs=path_qs,
        local_host=parts.netloc or "localhost",
    )


def _webhook_request(captured: CapturedRequest, recon: ReconstructedUrl) -> WebhookRequest:
    parts = urlsplit(captured.url)
    items = tuple(parse_qsl(parts.query, keep_blank_values=True))
    return WebhookRequest(
        method=captured.method,
        url=recon.url,
        path=parts.path or "/",
        query=dict(items),
        headers=captured.lower_headers(),
        body=captured.body,
        remote=captured.remote,
        url_variants=recon.variants,
        query_items=items,
    )


def _verify(provider: Provider, captured: CapturedRequest, recon: ReconstructedUrl) -> Verification:
    return provider.verify_webhook(_webhook_request(captured, recon))


def _present_forwarding(captured: CapturedRequest) -> list[str]:
    headers = captured.lower_headers()
    return [name for name in FORWARDING_HEADERS if name.lower() in headers]


def diagnose_request(config: Config, provider: Provider, captured: CapturedRequest) -> RequestDiagnosis:
    """Verify ``captured`` as the listener would, then try what-ifs to name what broke it."""
    policy = policy_for(config)
    public_url = captured.public_url or config.public_url
    recon = _rebuild(captured, policy, public_url)
    verification = _verify(provider, captured, recon)
    diagnosis = RequestDiagnosis(
        url=recon.url,
        source=recon.source,
        trusted_forwarding=recon.trusted_forwarding,
        variants=list(recon.variants),
        verified=verification.ok,
        reason=verification.reason,
        checked_url=verification.checked_url or recon.url,
        causes=[],
    )
    if verification.ok:
        return diagnosis
    lower = captured.lower_headers()
    required = provider.signature_headers
    if required and not any(h in lower for h in required):
        diagnosis.causes.append(
            f"the request carries none of {config.provider}'s signature headers ({', '.join(required)}); "
            "the listener refuses it before reading the body"
        )
        diagnosis.fix = "capture the request as the provider sent it, headers included"
        return diagnosis
    _explain(config, provider, captured, policy, public_url, diagnosis)
    return diagnosis


def _explain(
    config: Config,
    provider: Provider,
    captured: CapturedRequest,
    policy: ForwardingPolicy,
    public_url: str | None,
    diagnosis: RequestDiagnosis,
) -> None:
    forwarded = _present_forwarding(captured)
    ws = config.webhook_security
    # What if every forwarded header were trusted, from any peer, for any host?
    open_policy = ForwardingPolicy(trust_forwarding_headers=True)
    trusting = _rebuild(captured, open_policy, None)
    if forwarded and _verify(provider, captured, trusting).ok:
        diagnosis.signed_url = trusting.url
        names = ", ".join(forwarded)
        if public_url:
            where = "the request's publicUrl" if captured.public_url else "publicUrl"
            diagnosis.causes.append(
                f"{where} {public_url} decides the URL, but the provider signed {trusting.url} "
                f"(what {names} say)"
            )
            diagnosis.fix = f"set publicUrl to {trusting.url.split('?', 1)[0]}"
        elif not (ws.allowed_hosts or ws.trust_forwarding_headers or policy.ngrok_loopback_bypass):
            diagnosis.causes.append(
                f"{names} ignored: webhookSecurity.trustForwardingHeaders is false "
                "(and webhookSecurity.allowedHosts is empty)"
            )
            diagnosis.fix = (
                "set publicUrl to the URL the provider calls, or set webhookSecurity.trustForwardingHeaders "
                "(with webhookSecurity.trustedProxyIPs naming the proxy)"
            )
        elif not policy.peer_is_trusted_proxy(captured.remote):
            diagnosis.causes.append(
                f"{names} ignored: the peer {captured.remote or '(unknown)'} is not in "
                "webhookSecurity.trustedProxyIPs"
            )
            diagnosis.fix = (
                f"add the proxy's address to webhookSecurity.trustedProxyIPs (saw {captured.remote})"
            )
        else:
            host = clean_host(urlsplit(trusting.url).netloc)
            shown = host[0] if host else trusting.url
            diagnosis.causes.append(f"{names} ignored: host {shown} is not in webhookSecurity.allowedHosts")
            diagnosis.fix = f"add {shown} to webhookSecurity.allowedHosts"
        return
    if public_url:
        # What if the URL came from the request instead of publicUrl?
        without = _rebuild(captured, policy, None)
        if _verify(provider, captured, without).ok:
            diagnosis.signed_url = without.url
            diagnosis.causes.append(
                f"publicUrl {public_url} does not match the URL the provider signed ({without.url})"
            )
            diagnosis.fix = f"set publicUrl to {without.url.split('?', 1)[0]}"
            return
    if forwarded and diagnosis.trusted_forwarding:
        diagnosis.causes.append(
            f"{', '.join(forwarded)} were trusted, and the signature still does not match"
        )
    tried = [diagnosis.url, *diagnosis.variants]
    diagnosis.causes.append(
        f"the signature matches none of the URLs tried ({', '.join(tried)}): {diagnosis.reason or 'invalid'}"
    )
    diagnosis.fix = (
        f"check that the {config.provider} credentials in the config belong to the account that sent the "
        "request, and that the provider calls exactly the public URL (scheme, host, port, path)"
    )


__all__ = ["FORWARDING_HEADERS", "CapturedRequest", "RequestDiagnosis", "diagnose_request", "policy_for"]
