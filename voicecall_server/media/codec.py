"""What the media server needs from a provider's stream message format, normalised.

Each provider's wire format (Twilio Media Streams, Telnyx media streaming, Plivo audio streams)
is adapted to these few shapes so one server handles all three.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Kind(enum.Enum):
    CONNECTED = "connected"
    START = "start"
    MEDIA = "media"
    MARK = "mark"
    STOP = "stop"
    DTMF = "dtmf"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Inbound:
    kind: Kind
    stream_id: str = ""
    provider_call_id: str = ""
    token: str = ""
    payload: bytes = b""
    name: str = ""
    """The mark/checkpoint name, or the DTMF digit."""


class StreamCodecError(ValueError):
    """A frame that is not a valid message of the provider's stream protocol."""


class StreamCodec(Protocol):
    provider: str

    def parse(self, text: str) -> Inbound:
        """Parse one text frame; raise StreamCodecError for a malformed one."""

    def outbound(self, stream_id: str) -> OutboundFrames: ...


class OutboundFrames(Protocol):
    """Pre-built envelopes for one stream: no JSON encoding per audio frame."""

    def media(self, ulaw_frame: bytes) -> str: ...
    def mark(self, name: str) -> str: ...
    def clear(self) -> str: ...
