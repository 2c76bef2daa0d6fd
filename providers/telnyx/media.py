"""Telnyx media-streaming WebSocket messages (the media-plane hot path of the WebSocket handler).

Wire format (Telnyx "Stream call media over WebSocket" AsyncAPI page and the Call Control
``streaming_start`` page, developers.telnyx.com): Telnyx sends ``connected``, then ``start``
(top-level ``stream_id``; ``start.call_control_id``, ``client_state``, ``from``, ``to``,
``custom_parameters``, ``media_format{encoding, sample_rate, channels}``), ``media`` (``media.payload``
base64 RTP payload without headers, ``track``, ``chunk``, ``timestamp``), ``dtmf`` (``dtmf.digit``),
``mark`` echoes, ``error`` and ``stop``. With ``stream_bidirectional_mode: rtp`` we send ``media``
(PCMU payload), ``mark`` and ``clear`` back; those carry no stream id.

Inbound frames become small typed objects; anything malformed raises MediaFrameError and nothing
else. Outbound ``media`` frames are concatenated from a fixed prefix and suffix, so no JSON encoder
runs per 20 ms frame.
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

PCMU = "PCMU"


@dataclass(frozen=True, slots=True)
class MediaFormat:
    encoding: str = PCMU
    sample_rate: int = 8000
    channels: int = 1


@dataclass(frozen=True, slots=True)
class Connected:
    version: str = ""


@dataclass(frozen=True, slots=True)
class Start:
    stream_id: str
    call_control_id: str
    client_state: str = ""
    from_number: str = ""
    to_number: str = ""
    custom_parameters: Mapping[str, str] = field(default_factory=dict, repr=False)
    """May hold a stream token; kept out of reprs."""
    media_format: MediaFormat = field(default_factory=MediaFormat)


@dataclass(frozen=True, slots=True)
class Media:
    stream_id: str
    payload: bytes
    track: str = "inbound"
    timestamp: int = 0
    chunk: int = 0


@dataclass(frozen=True, slots=True)
class Mark:
    stream_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_id: str
    call_control_id: str = ""


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_id: str
    digit: str


@dataclass(frozen=True, slots=True)
class StreamError:
    stream_id: str
    code: str = ""
    title: str = ""


Frame = Connected | Start | Media | Mark | Stop | Dtmf | StreamError


def _media(msg: Mapping[str, Any], sid: str) -> Media:
    media, audio, track = media_audio(msg)
    return Media(sid, audio, track, _int(media, "timestamp"), _int(media, "chunk"))


def _start(msg: Mapping[str, Any]) -> Start:
    start = _obj(msg, "start")
    params = start.get("custom_parameters", {})
    params = {} if params is None else params
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise MediaFrameError("start.custom_parameters must map names to strings")
    fmt = start.get("media_format", {})
    fmt = {} if fmt is None else fmt
    if not isinstance(fmt, dict):
        raise MediaFrameError("start.media_format must be an object")
    return Start(
        stream_id=_str(msg, "stream_id"),
        call_control_id=_str(start, "call_control_id"),
        client_state=_str(start, "client_state", required=False),
        from_number=_str(start, "from", required=False),
        to_number=_str(start, "to", required=False),
        custom_parameters=dict(params),
        media_format=MediaFormat(
            _str(fmt, "encoding", required=False) or PCMU,
            _int(fmt, "sample_rate") or 8000,
            _int(fmt, "channels") or 1,
        ),
    )


def parse_frame(data: str | bytes) -> Frame:
    """One inbound Telnyx media-streaming text frame, typed."""
    try:
        msg = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise MediaFrameError("frame is not JSON") from None
    if not isinstance(msg, dict):
        raise MediaFrameError("frame is not a JSON object")
    event = msg.get("event")
    if event == "media":
        return _media(msg, _str(msg, "stream_id", required=False))
    if event == "connected":
        version = msg.get("version", "")
        return Connected(version if isinstance(version, str) else "")
    if event == "start":
        return _start(msg)
    sid = _str(msg, "stream_id", required=False)
    if event == "mark":
        return Mark(sid, _str(_obj(msg, "mark"), "name", required=False))
    if event == "stop":
        stop = msg.get("stop")
        ccid = stop.get("call_control_id", "") if isinstance(stop, dict) else ""
        return Stop(sid, ccid if isinstance(ccid, str) else "")
    if event == "dtmf":
        return Dtmf(sid, _str(_obj(msg, "dtmf"), "digit"))
    if event == "error":
        payload = msg.get("payload")
        body = payload if isinstance(payload, dict) else {}
        code, title = body.get("code", ""), body.get("title", "")
        return StreamError(
            sid, str(code) if isinstance(code, str | int) else "", title if isinstance(title, str) else ""
        )
    raise MediaFrameError(f"unknown frame event {event!r}")


class StreamEncoder:
    """Outbound messages for one stream (bidirectional RTP mode, PCMU payloads), pre-built."""

    __slots__ = ("stream_id",)
    _MEDIA_PREFIX = '{"event":"media","media":{"payload":"'
    _MEDIA_SUFFIX = '"}}'
    _MARK_PREFIX = '{"event":"mark","mark":{"name":'
    _CLEAR = '{"event":"clear"}'

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id

    def media(self, audio: bytes) -> str:
        """A ``media`` message carrying ``audio`` (8 kHz μ-law, typically one 160-byte frame)."""
        b64 = binascii.b2a_base64(audio, newline=False).decode("ascii")
        return self._MEDIA_PREFIX + b64 + self._MEDIA_SUFFIX

    def mark(self, name: str) -> str:
        """A ``mark`` Telnyx echoes back once the audio sent before it has played."""
        return self._MARK_PREFIX + json.dumps(name) + "}}"

    def clear(self) -> str:
        """A ``clear``: Telnyx drops queued audio and returns queued marks (barge-in)."""
        return self._CLEAR
