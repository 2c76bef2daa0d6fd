"""What the providers' media-stream parsers share: JSON field access with one error type, and the
base64 audio of a ``media`` message (Twilio, Telnyx and Plivo all send it the same way)."""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any


class MediaFrameError(ValueError):
    """A frame that is not a well-formed media-stream message of the provider's protocol."""


def obj(msg: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise MediaFrameError(f"{msg.get('event')} frame without a {key!r} object")
    return value


def string(o: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = o.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise MediaFrameError(f"frame field {key!r} must be a non-empty string")
    return value


def integer(o: Mapping[str, Any], key: str) -> int:
    value = o.get(key, 0)
    if isinstance(value, bool) or value is None:
        raise MediaFrameError(f"frame field {key!r} must be an integer")
    try:
        return int(value)  # the providers send some of these as decimal strings
    except (TypeError, ValueError):
        raise MediaFrameError(f"frame field {key!r} must be an integer") from None


def media_audio(msg: Mapping[str, Any]) -> tuple[Mapping[str, Any], bytes, str]:
    """The ``media`` object of a message, its decoded audio, and its track ("inbound" by default)."""
    media = obj(msg, "media")
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise MediaFrameError("media frame without a base64 payload")
    try:
        audio = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise MediaFrameError("media payload is not valid base64") from None
    track = media.get("track", "inbound")
    return media, audio, track if isinstance(track, str) else "inbound"
