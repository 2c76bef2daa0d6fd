"""Settings of the Telnyx adapter (built by the server's provider factory from the config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class TelnyxSettings:
    """How to reach Telnyx Call Control v2 and how to speak on its calls.

    ``public_key`` is the account's Ed25519 webhook key (PEM, base64 raw 32 bytes, or base64 DER
    SPKI); without one every webhook fails verification unless ``skip_signature_verification``
    is set (checked per request, so a misconfiguration is visible in the webhook log). ``base_url`` replaces the SDK's ``https://api.telnyx.com/v2`` (include the version path),
    for proxies and tests. ``voice`` and ``language`` are Telnyx's own TTS (the ``speak`` fallback).
    """

    api_key: str = field(repr=False)
    connection_id: str
    public_key: str | None
    base_url: str | None = None
    voice: str = "female"
    language: str = "en-US"
    skip_signature_verification: bool = False
    request_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("telnyx.apiKey is required")
        if not self.connection_id:
            raise ValueError("telnyx.connectionId is required")
        if self.request_timeout_s <= 0:
            raise ValueError("the Telnyx request timeout must be positive")
        if self.base_url is not None:
            parts = urlsplit(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise ValueError("the Telnyx base URL must be an http(s) origin with an optional path")
