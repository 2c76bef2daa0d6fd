"""Settings of the Twilio adapter (built by the server's provider factory from the config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class TwilioSettings:
    """How to reach Twilio and how to speak on its calls.

    ``base_url`` replaces the SDK's hosts for every REST request (scheme, host, port and an optional
    path prefix), for proxies, conformance mocks and tests; None keeps the SDK's own hosts, where
    ``region``/``edge`` pick Twilio's regional endpoints. ``tts_voice`` is an OpenAI voice name
    (mapped to Amazon Polly) or a ``Polly.*``/``Google.*`` voice used by ``<Say>``.
    """

    account_sid: str
    auth_token: str = field(repr=False)
    base_url: str | None = None
    region: str | None = None
    edge: str | None = None
    skip_signature_verification: bool = False
    request_timeout_s: float = 15.0
    tts_voice: str | None = None
    language: str = "en-US"

    def __post_init__(self) -> None:
        if not self.account_sid:
            raise ValueError("twilio.accountSid is required")
        if not self.auth_token:
            raise ValueError("twilio.authToken is required")
        if self.request_timeout_s <= 0:
            raise ValueError("the Twilio request timeout must be positive")
        if self.base_url is not None:
            parts = urlsplit(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise ValueError("the Twilio base URL must be an http(s) origin with an optional path")
