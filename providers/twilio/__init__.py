"""The Twilio adapter: REST through the official SDK, signed webhooks, TwiML, Media Streams."""

from __future__ import annotations

from .provider import TwilioProvider
from .settings import TwilioSettings

__all__ = ["TwilioProvider", "TwilioSettings"]
