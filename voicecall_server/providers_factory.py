"""Builds the configured provider adapter from the config (the only place config meets providers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.base import Provider
from providers.mock import MockProvider, MockSettings

if TYPE_CHECKING:
    from .config import Config


def build_provider(config: Config) -> Provider:
    name = config.provider
    if name == "mock":
        m = config.mock
        return MockProvider(
            MockSettings(
                answer_after_ms=m.answer_after_ms,
                outcome=m.outcome,
                caller_replies=tuple(m.caller_replies),
                reply_after_ms=m.reply_after_ms,
                hangup_after_ms=m.hangup_after_ms,
            )
        )
    if name == "twilio":
        from providers.twilio import TwilioProvider, TwilioSettings

        t = config.twilio
        return TwilioProvider(
            TwilioSettings(
                account_sid=t.account_sid or "",
                auth_token=t.auth_token or "",
                base_url=t.base_url,
                region=t.region if t.region != "us1" else None,
                edge=t.edge,
                skip_signature_verification=config.skip_signature_verification,
                tts_voice=config.tts.openai.voice if config.tts.openai else None,
            )
        )
    if name == "plivo":
        from providers.plivo import PlivoProvider, PlivoSettings

        pl = config.plivo
        return PlivoProvider(
            PlivoSettings(
                auth_id=pl.auth_id or "",
                auth_token=pl.auth_token or "",
                base_url=pl.base_url,
                skip_signature_verification=config.skip_signature_verification,
            )
        )
    if name == "telnyx":
        from providers.telnyx import TelnyxProvider, TelnyxSettings

        tx = config.telnyx
        return TelnyxProvider(
            TelnyxSettings(
                api_key=tx.api_key or "",
                connection_id=tx.connection_id or "",
                public_key=tx.public_key,
                base_url=tx.base_url,
                voice=tx.voice,
                language=tx.language,
                skip_signature_verification=config.skip_signature_verification,
            )
        )
    raise ValueError(f"unknown provider {name!r}; use mock, twilio, telnyx or plivo")
