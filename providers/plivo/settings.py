"""Settings of the Plivo adapter (built by the server's provider factory from the config)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_AUTH_ID = re.compile(r"^[MS]A[A-Z0-9]{18}$")


@dataclass(frozen=True, slots=True)
class PlivoSettings:
    """How to reach Plivo and how to speak on its calls.

    ``base_url`` replaces ``https://api.plivo.com`` for every REST request (scheme, host, port and an
    optional path prefix; the SDK's ``/v1/Account/{auth_id}/...`` paths follow it), for proxies and
    tests. ``voice`` is a Plivo ``<Speak>`` voice: ``WOMAN``, ``MAN`` or ``Polly.*``.
    """

    auth_id: str
    auth_token: str = field(repr=False)
    base_url: str | None = None
    skip_signature_verification: bool = False
    request_timeout_s: float = 15.0
    language: str = "en-US"
    voice: str = "WOMAN"

    def __post_init__(self) -> None:
        # The SDK would read PLIVO_AUTH_ID from the environment for an empty id: refuse instead.
        if not _AUTH_ID.match(self.auth_id or ""):
            raise ValueError("plivo.authId must be a Plivo Auth ID (20 characters starting with MA or SA)")
        if not self.auth_token:
            raise ValueError("plivo.authToken is required")
        if self.request_timeout_s <= 0:
            raise ValueError("the Plivo request timeout must be positive")
        if self.base_url is not None:
            parts = urlsplit(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise ValueError("the Plivo base URL must be an http(s) origin with an optional path")

    @property
    def api_origin(self) -> str:
        return (self.base_url or "https://api.plivo.com").rstrip("/")
