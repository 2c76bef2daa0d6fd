"""The Telnyx adapter: Call Control v2 through the SDK, Ed25519-signed webhooks, media streaming."""

from __future__ import annotations

from .provider import TelnyxProvider
from .settings import TelnyxSettings

__all__ = ["TelnyxProvider", "TelnyxSettings"]
