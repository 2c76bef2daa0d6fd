"""Twilio Media Streams messages (the media-plane hot path of the WebSocket handler).

Inbound text frames become small typed objects; anything malformed raises MediaFrameError and
nothing else. Outbound ``media`` frames are built by concatenating a per-stream JSON prefix, the
base64 payload and a fixed suffix, so no JSON encoder runs per 20 ms frame.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..frames import MediaFrameError, media_audio
from ..frames import integer as _int
from ..frames import obj as _obj
from ..frames import string as _str

MULAW = "audio/x-mulaw"


@dataclass(frozen=True, slots=True)
class MediaFormat:
    encoding: str = MULAW
    sample_rate: int = 8000
    channels: int = 1


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str = "Call"
    version: str = ""


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str = ""
    tracks: tuple[str, ...] = ()
    custom_parameters: Mapping[str, str] = field(default_factory=dict, repr=False)
    """May hold the stream token; kept out of reprs."""
    media_format: MediaFormat = field(default_factory=MediaFormat)


@dataclass(frozen=True, slots=True)
class Media:
    stream_sid: str
    payload: bytes
    track: str = "inbound"
    timestamp: int = 0
    """Milliseconds since the stream started."""
    chunk: int = 0


@dataclass(frozen=True, slots=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str
    call_sid: str = ""


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str
    track: str = "inbound_track"


Frame = Connected | Start | Media | Mark | Stop | Dtmf


def _media(msg: Mapping[str, Any], sid: str) -> Media:
    media, audio, track = media_audio(msg)
    return Media(sid, audio, track, _int(media, "timestamp"), _int(media, "chunk"))


def _start(msg: Mapping[str, Any], sid: str) -> Start:
    start = _obj(msg, "start")
    params = start.get("customParameters", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise MediaFrameError("start.customParameters must map names to strings")
    fmt = start.get("mediaFormat", {})
    if not isinstance(fmt, dict):
        raise MediaFrameError("start.mediaFormat must be an object")
    tracks = start.get("tracks", [])
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise MediaFrameError("start.tracks must be a list of strings")
    return Start(
        stream_sid=_str(start, "streamSid", required=False) or sid,
        call_sid=_str(start, "callSid"),
        account_sid=_str(start, "accountSid", required=False),
        tracks=tuple(tracks),
        custom_parameters=dict(params),
        media_format=MediaFormat(
            _str(fmt, "encoding", required=False) or MULAW,
            _int(fmt, "sampleRate") or 8000,
            _int(fmt, "channels") or 1,
        ),
    )


def parse_frame(data: str | bytes) -> Frame:
    """One inbound Twilio Media Streams text frame, typed."""
    try:
        msg = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise MediaFrameError("frame is not JSON") from None
    if not isinstance(msg, dict):
        raise MediaFrameError("frame is not a JSON object")
    event = msg.get("event")
    if event == "media":
        return _media(msg, _str(msg, "streamSid"))
    if event == "connected":
        return Connected(str(msg.get("protocol", "Call")), str(msg.get("version", "")))
    if event == "start":
        start = msg.get("start")
        sid = _str(msg, "streamSid", required=not (isinstance(start, dict) and start.get("streamSid")))
        return _start(msg, sid)
    if event == "mark":
        return Mark(_str(msg, "streamSid"), _str(_obj(msg, "mark"), "name", required=False))
    if event == "stop":
        stop = msg.get("stop")
        call_sid = stop.get("callSid", "") if isinstance(stop, dict) else ""
        return Stop(_str(msg, "streamSid"), call_sid if isinstance(call_sid, str) else "")
    if event == "dtmf":
        dtmf = _obj(msg, "dtmf")
        track = dtmf.get("track", "inbound_track")
        return Dtmf(_str(msg, "streamSid"), _str(dtmf, "digit"), track if isinstance(track, str) else "")
    raise MediaFrameError(f"unknown frame event {event!r}")


class StreamEncoder:
    """Outbound messages for one stream, with the JSON around the payload built once."""

    __slots__ = ("_clear", "_mark_prefix", "_media_prefix", "stream_sid")
    _MEDIA_SUFFIX = '"}}'

    def __init__(self, stream_sid: str) -> None:
        self.stream_sid = stream_sid
        sid = json.dumps(stream_sid)
        self._media_prefix = '{"event":"media","streamSid":' + sid + ',"media":{"payload":"'
        self._mark_prefix = '{"event":"mark","streamSid":' + sid + ',"mark":{"name":'
        self._clear = '{"event":"clear","streamSid":' + sid + "}"

    def media(self, audio: bytes) -> str:
        """A ``media`` message carrying ``audio`` (8 kHz μ-law, typically one 160-byte frame)."""
        b64 = binascii.b2a_base64(audio, newline=False).decode("ascii")
        return self._media_prefix + b64 + self._MEDIA_SUFFIX

    def mark(self, name: str) -> str:
        """A ``mark`` Twilio echoes back once the audio sent before it has played."""
        return self._mark_prefix + json.dumps(name) + "}}"

    def clear(self) -> str:
        """A ``clear``: Twilio drops audio it has buffered but not yet played (barge-in)."""
        return self._clear
