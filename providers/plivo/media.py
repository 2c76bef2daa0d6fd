"""Plivo audio-stream WebSocket messages (the media-plane hot path of the WebSocket handler).

Formats, from Plivo's "Stream Event Protocol" / "Audio Streaming Protocol Reference"
(plivo.com/docs/voice/audio-streaming/audio-streaming, .../audio-streaming-reference) and its
AsyncAPI description (Plivo Audio Streaming WebSocket API 1.0.0):

- from Plivo: ``start`` {sequenceNumber, start: {callId, streamId, accountId, tracks,
  mediaFormat: {encoding, sampleRate}}, extra_headers}; ``media`` {sequenceNumber, streamId,
  media: {track, timestamp (ms, a string), chunk, payload (base64)}}; ``dtmf`` {streamId,
  dtmf: {track, digit, timestamp}}; ``playedStream`` {streamId, name} (a checkpoint was played);
  ``clearedAudio`` {streamId}. Plivo reports a stream's end by closing the socket (and on the
  Stream status callback); a ``stop`` message, which some clients document, is accepted too.
- to Plivo: ``playAudio`` {media: {contentType, sampleRate, payload}}, ``checkpoint``
  {streamId, name}, ``clearAudio`` {streamId}.

The per-call stream token travels in the ``<Stream extraHeaders>`` attribute (see
``stream_extra_headers``), which Plivo echoes as ``extra_headers`` on every message. Plivo only
allows letters and digits in those values, so the token is sent hex-encoded and decoded here.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..frames import MediaFrameError, media_audio
from ..frames import integer as _int
from ..frames import obj as _obj
from ..frames import string as _str

MULAW = "audio/x-mulaw"
SAMPLE_RATE = 8000
TOKEN_HEADER = "vctoken"  # noqa: S105 (the name of the header, not a secret)
_HEADER_PAIR = re.compile(r"[,;]")


@dataclass(frozen=True, slots=True)
class Start:
    stream_id: str
    call_id: str
    """Plivo's CallUUID (the provider call id)."""
    account_id: str = ""
    tracks: tuple[str, ...] = ()
    encoding: str = MULAW
    sample_rate: int = SAMPLE_RATE
    token: str = field(default="", repr=False)
    """The stream token decoded from ``extra_headers``; empty when absent or malformed."""
    extra_headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Media:
    stream_id: str
    payload: bytes
    track: str = "inbound"
    timestamp: int = 0
    """Unix time in milliseconds (Plivo sends it as a string)."""
    chunk: int = 0


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_id: str
    digit: str
    track: str = "inbound"


@dataclass(frozen=True, slots=True)
class Played:
    """``playedStream``: the audio queued before checkpoint ``name`` has been played to the caller."""

    stream_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Cleared:
    stream_id: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_id: str
    call_id: str = ""


Frame = Start | Media | Dtmf | Played | Cleared | Stop


def encode_token(token: str) -> str:
    return token.encode().hex()


def decode_token(value: str) -> str:
    try:
        return bytes.fromhex(value).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def stream_extra_headers(token: str) -> str:
    """The ``extraHeaders`` attribute value carrying ``token`` (letters and digits only)."""
    return f"{TOKEN_HEADER}={encode_token(token)}"


def parse_extra_headers(value: object) -> dict[str, str]:
    """``k=v`` pairs, separated by ``,`` (as written in the XML) or ``;`` (as Plivo echoes them).

    Keys are lower-cased and a SIP-style ``X-PH-`` prefix is dropped, so a relayed header still
    finds the token.
    """
    if isinstance(value, dict):
        items = [(str(k), str(v)) for k, v in value.items()]
    elif isinstance(value, str):
        items = []
        for part in _HEADER_PAIR.split(value):
            key, sep, val = part.partition("=")
            if sep:
                items.append((key, val))
    else:
        return {}
    out: dict[str, str] = {}
    for key, val in items:
        key = key.strip().lower()
        out[key.removeprefix("x-ph-")] = val.strip()
    return out


def _media(msg: Mapping[str, Any]) -> Media:
    media, audio, track = media_audio(msg)
    return Media(_str(msg, "streamId"), audio, track, _int(media, "timestamp"), _int(media, "chunk"))


def _start(msg: Mapping[str, Any]) -> Start:
    start = _obj(msg, "start")
    fmt = start.get("mediaFormat", {})
    if not isinstance(fmt, dict):
        raise MediaFrameError("start.mediaFormat must be an object")
    tracks = start.get("tracks", [])
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise MediaFrameError("start.tracks must be a list of strings")
    headers = parse_extra_headers(msg.get("extra_headers", start.get("extra_headers", "")))
    return Start(
        stream_id=_str(start, "streamId", required=False) or _str(msg, "streamId"),
        call_id=_str(start, "callId"),
        account_id=_str(start, "accountId", required=False),
        tracks=tuple(tracks),
        encoding=_str(fmt, "encoding", required=False) or MULAW,
        sample_rate=_int(fmt, "sampleRate") or SAMPLE_RATE,
        token=decode_token(headers.get(TOKEN_HEADER, "")),
        extra_headers=headers,
    )


def parse_frame(data: str | bytes) -> Frame:
    """One inbound Plivo audio-stream text frame, typed; MediaFrameError for anything malformed."""
    try:
        msg = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise MediaFrameError("frame is not JSON") from None
    if not isinstance(msg, dict):
        raise MediaFrameError("frame is not a JSON object")
    event = msg.get("event")
    if event == "media":
        return _media(msg)
    if event == "start":
        return _start(msg)
    if event == "dtmf":
        dtmf = _obj(msg, "dtmf")
        track = dtmf.get("track", "inbound")
        return Dtmf(_str(msg, "streamId"), _str(dtmf, "digit"), track if isinstance(track, str) else "")
    if event == "playedStream":
        return Played(_str(msg, "streamId"), _str(msg, "name", required=False))
    if event == "clearedAudio":
        return Cleared(_str(msg, "streamId"))
    if event == "stop":
        stop = msg.get("stop")
        call_id = stop.get("callId", "") if isinstance(stop, dict) else ""
        return Stop(_str(msg, "streamId", required=False), call_id if isinstance(call_id, str) else "")
    raise MediaFrameError(f"unknown frame event {event!r}")


class StreamEncoder:
    """Outbound messages for one stream, with the JSON around the payload built once."""

    __slots__ = ("_checkpoint_prefix", "_clear", "stream_id")
    _MEDIA_PREFIX = (
        '{"event":"playAudio","media":{"contentType":"' + MULAW + '","sampleRate":8000,"payload":"'
    )
    _MEDIA_SUFFIX = '"}}'

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        sid = json.dumps(stream_id)
        self._checkpoint_prefix = '{"event":"checkpoint","streamId":' + sid + ',"name":'
        self._clear = '{"event":"clearAudio","streamId":' + sid + "}"

    def media(self, audio: bytes) -> str:
        """A ``playAudio`` message carrying ``audio`` (8 kHz μ-law, typically one 160-byte frame)."""
        return (
            self._MEDIA_PREFIX
            + binascii.b2a_base64(audio, newline=False).decode("ascii")
            + self._MEDIA_SUFFIX
        )

    def mark(self, name: str) -> str:
        """A ``checkpoint``; Plivo answers ``playedStream`` with this name once the audio before it played."""
        return self._checkpoint_prefix + json.dumps(name) + "}"

    def clear(self) -> str:
        """A ``clearAudio``: Plivo drops audio it has buffered but not yet played (barge-in)."""
        return self._clear
