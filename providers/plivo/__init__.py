"""The Plivo adapter: Voice API through the official SDK, XML transfers, GetInput speech, V3/V2
signatures and the audio-stream message codec."""

from __future__ import annotations

from .provider import PlivoProvider
from .settings import PlivoSettings

__all__ = ["PlivoProvider", "PlivoSettings"]
