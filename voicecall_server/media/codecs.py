"""Adapters from each provider's stream message module to the media server's normalised codec.

Each provider module (``providers.<name>.media``) offers ``parse_frame``, one ``MediaFrameError``
and a ``StreamEncoder``; what differs is only how its frame types map onto ``Inbound``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .codec import Inbound, Kind, OutboundFrames, StreamCodecError


def _twilio(m: Any, frame: Any) -> Inbound:
    # The token travels as a <Parameter name="token">: Twilio strips query strings from <Stream> URLs.
    if isinstance(frame, m.Media):
        return Inbound(Kind.MEDIA, frame.stream_sid, payload=frame.payload)
    if isinstance(frame, m.Start):
        return Inbound(
            Kind.START, frame.stream_sid, frame.call_sid, token=frame.custom_parameters.get("token", "")
        )
    if isinstance(frame, m.Mark):
        return Inbound(Kind.MARK, frame.stream_sid, name=frame.name)
    if isinstance(frame, m.Dtmf):
        return Inbound(Kind.DTMF, frame.stream_sid, name=frame.digit)
    if isinstance(frame, m.Stop):
        return Inbound(Kind.STOP, frame.stream_sid, frame.call_sid)
    return Inbound(Kind.CONNECTED)


def _telnyx(m: Any, frame: Any) -> Inbound:
    # Telnyx keeps the stream URL's query: the token usually arrives as ?token= on the upgrade.
    if isinstance(frame, m.Media):
        return Inbound(Kind.MEDIA, frame.stream_id, payload=frame.payload)
    if isinstance(frame, m.Start):
        token = frame.custom_parameters.get("token", "")
        return Inbound(Kind.START, frame.stream_id, frame.call_control_id, token=token)
    if isinstance(frame, m.Mark):
        return Inbound(Kind.MARK, frame.stream_id, name=frame.name)
    if isinstance(frame, m.Dtmf):
        return Inbound(Kind.DTMF, frame.stream_id, name=frame.digit)
    if isinstance(frame, m.Stop):
        return Inbound(Kind.STOP, frame.stream_id, frame.call_control_id)
    return Inbound(Kind.OTHER)


def _plivo(m: Any, frame: Any) -> Inbound:
    # The token travels in extraHeaders; a checkpoint is our mark and playedStream its echo.
    if isinstance(frame, m.Media):
        return Inbound(Kind.MEDIA, frame.stream_id, payload=frame.payload)
    if isinstance(frame, m.Start):
        return Inbound(Kind.START, frame.stream_id, frame.call_id, token=frame.token)
    if isinstance(frame, m.Played):
        return Inbound(Kind.MARK, frame.stream_id, name=frame.name)
    if isinstance(frame, m.Dtmf):
        return Inbound(Kind.DTMF, frame.stream_id, name=frame.digit)
    if isinstance(frame, m.Stop):
        return Inbound(Kind.STOP, frame.stream_id)
    return Inbound(Kind.OTHER)


_TRANSLATE: dict[str, Callable[[Any, Any], Inbound]] = {"twilio": _twilio, "telnyx": _telnyx, "plivo": _plivo}


class ProviderCodec:
    """One provider's stream protocol, normalised."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        # Imported on use: each provider package pulls in its SDK, and only one is configured.
        self._m = importlib.import_module(f"providers.{provider}.media")
        self._translate = _TRANSLATE[provider]

    def parse(self, text: str) -> Inbound:
        try:
            frame = self._m.parse_frame(text)
        except self._m.MediaFrameError as err:
            raise StreamCodecError(str(err)) from None
        return self._translate(self._m, frame)

    def outbound(self, stream_id: str) -> OutboundFrames:
        encoder: OutboundFrames = self._m.StreamEncoder(stream_id)
        return encoder


def codec_for(provider: str) -> ProviderCodec | None:
    """The stream codec for a provider, or None when it has no media streams here (mock)."""
    return ProviderCodec(provider) if provider in _TRANSLATE else None
