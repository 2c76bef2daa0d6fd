"""Adapters from each provider's stream message module to the media server's normalised codec."""

from __future__ import annotations

import importlib
from typing import Any

from .codec import Inbound, Kind, OutboundFrames, StreamCodecError


def _media_module(provider: str) -> Any:
    # Imported on use: each provider package pulls in its SDK, and only one provider is configured.
    return importlib.import_module(f"providers.{provider}.media")


class TwilioCodec:
    """Twilio Media Streams: the token travels as a ``<Parameter name="token">`` custom parameter,
    because Twilio strips query strings from ``<Stream>`` URLs."""

    provider = "twilio"

    def __init__(self) -> None:
        self.m = _media_module(self.provider)

    def parse(self, text: str) -> Inbound:
        twilio_media = self.m
        try:
            frame = twilio_media.parse_frame(text)
        except twilio_media.MediaFrameError as err:
            raise StreamCodecError(str(err)) from None
        if isinstance(frame, twilio_media.Media):
            return Inbound(Kind.MEDIA, frame.stream_sid, payload=frame.payload)
        if isinstance(frame, twilio_media.Start):
            token = frame.custom_parameters.get("token", "")
            return Inbound(Kind.START, frame.stream_sid, frame.call_sid, token=token)
        if isinstance(frame, twilio_media.Mark):
            return Inbound(Kind.MARK, frame.stream_sid, name=frame.name)
        if isinstance(frame, twilio_media.Dtmf):
            return Inbound(Kind.DTMF, frame.stream_sid, name=frame.digit)
        if isinstance(frame, twilio_media.Stop):
            return Inbound(Kind.STOP, frame.stream_sid, frame.call_sid)
        return Inbound(Kind.CONNECTED)

    def outbound(self, stream_id: str) -> OutboundFrames:
        encoder: OutboundFrames = self.m.StreamEncoder(stream_id)
        return encoder


class PlivoCodec:
    """Plivo audio streams: the token travels in ``extraHeaders`` (echoed as ``extra_headers``);
    a ``checkpoint`` is our mark and Plivo's ``playedStream`` its echo."""

    provider = "plivo"

    def __init__(self) -> None:
        self.m = _media_module(self.provider)

    def parse(self, text: str) -> Inbound:
        plivo_media = self.m
        try:
            frame = plivo_media.parse_frame(text)
        except plivo_media.MediaFrameError as err:
            raise StreamCodecError(str(err)) from None
        if isinstance(frame, plivo_media.Media):
            return Inbound(Kind.MEDIA, frame.stream_id, payload=frame.payload)
        if isinstance(frame, plivo_media.Start):
            return Inbound(Kind.START, frame.stream_id, frame.call_id, token=frame.token)
        if isinstance(frame, plivo_media.Played):
            return Inbound(Kind.MARK, frame.stream_id, name=frame.name)
        if isinstance(frame, plivo_media.Dtmf):
            return Inbound(Kind.DTMF, frame.stream_id, name=frame.digit)
        if isinstance(frame, plivo_media.Stop):
            return Inbound(Kind.STOP, frame.stream_id)
        return Inbound(Kind.OTHER)

    def outbound(self, stream_id: str) -> OutboundFrames:
        encoder: OutboundFrames = self.m.StreamEncoder(stream_id)
        return encoder


class TelnyxCodec:
    """Telnyx media streaming (bidirectional RTP, PCMU): Telnyx keeps the stream URL's query, so
    the token arrives as ``?token=`` on the upgrade request (the server's query fallback)."""

    provider = "telnyx"

    def __init__(self) -> None:
        self.m = _media_module(self.provider)

    def parse(self, text: str) -> Inbound:
        telnyx_media = self.m
        try:
            frame = telnyx_media.parse_frame(text)
        except telnyx_media.MediaFrameError as err:
            raise StreamCodecError(str(err)) from None
        if isinstance(frame, telnyx_media.Media):
            return Inbound(Kind.MEDIA, frame.stream_id, payload=frame.payload)
        if isinstance(frame, telnyx_media.Start):
            token = frame.custom_parameters.get("token", "")
            return Inbound(Kind.START, frame.stream_id, frame.call_control_id, token=token)
        if isinstance(frame, telnyx_media.Mark):
            return Inbound(Kind.MARK, frame.stream_id, name=frame.name)
        if isinstance(frame, telnyx_media.Dtmf):
            return Inbound(Kind.DTMF, frame.stream_id, name=frame.digit)
        if isinstance(frame, telnyx_media.Stop):
            return Inbound(Kind.STOP, frame.stream_id, frame.call_control_id)
        return Inbound(Kind.OTHER)

    def outbound(self, stream_id: str) -> OutboundFrames:
        encoder: OutboundFrames = self.m.StreamEncoder(stream_id)
        return encoder


Codec = TwilioCodec | PlivoCodec | TelnyxCodec


def codec_for(provider: str) -> Codec | None:
    """The stream codec for a provider, or None when it has no media streams here (mock)."""
    codecs: dict[str, type[Codec]] = {"twilio": TwilioCodec, "plivo": PlivoCodec, "telnyx": TelnyxCodec}
    factory = codecs.get(provider)
    return factory() if factory is not None else None
